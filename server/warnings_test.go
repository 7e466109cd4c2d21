package server

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/internal/testenv/logbuf"
)

// A listener without TLS warns unless it binds loopback alone; ":5001" binds every interface.
func TestListenerWarnings(t *testing.T) {
	tls := &TLS{CertFile: "missing-cert.pem", KeyFile: "missing-key.pem"}
	for _, tt := range []struct {
		name    string
		listen  Listener
		metrics *Listener
		want    []string // the fields warned about, in order
	}{
		{"every interface", Listener{Addr: ":5001"}, nil, []string{"listen.addr"}},
		{"every IPv4 interface", Listener{Addr: "0.0.0.0:5001"}, nil, []string{"listen.addr"}},
		{"every IPv6 interface", Listener{Addr: "[::]:5001"}, nil, []string{"listen.addr"}},
		{"a public address", Listener{Addr: "192.0.2.10:5001"}, nil, []string{"listen.addr"}},
		{"a host name", Listener{Addr: "auth.example.com:5001"}, nil, []string{"listen.addr"}},
		{"loopback", Listener{Addr: "127.0.0.1:5001"}, nil, nil},
		{"IPv6 loopback", Listener{Addr: "[::1]:5001"}, nil, nil},
		{"localhost", Listener{Addr: "localhost:5001"}, nil, nil},
		{"TLS on every interface", Listener{Addr: ":5001", TLS: tls}, nil, nil},
		{"metrics on every interface", Listener{Addr: "127.0.0.1:5001"}, &Listener{Addr: ":9090"}, []string{"metrics.addr"}},
		{"metrics on loopback", Listener{Addr: "127.0.0.1:5001"}, &Listener{Addr: "127.0.0.1:9090"}, nil},
		{"metrics over TLS", Listener{Addr: "127.0.0.1:5001"}, &Listener{Addr: ":9090", TLS: tls}, nil},
		{"both", Listener{Addr: ":5001"}, &Listener{Addr: ":9090"}, []string{"listen.addr", "metrics.addr"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			cfg.Listen, cfg.Metrics = tt.listen, tt.metrics
			got := cfg.Warnings("")
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want one about each of %q", got, tt.want)
			}
			for i, field := range tt.want {
				if !strings.HasPrefix(got[i], field+" ") || !strings.Contains(got[i], "in clear") || !strings.Contains(got[i], "proxy in front ends TLS") {
					t.Errorf("warning %q does not name %s and say what crosses the network in clear", got[i], field)
				}
			}
			if len(tt.want) > 0 && tt.want[0] == "listen.addr" && !strings.Contains(got[0], "API keys and tokens") {
				t.Errorf("warning %q does not say API keys and tokens are exposed", got[0])
			}
		})
	}
}

// A trusted proxy network holding public addresses warns: every host there can say who the
// client is. Private, shared, loopback and link-local networks do not, nor does a single host.
func TestTrustedProxyWarnings(t *testing.T) {
	for prefix, warned := range map[string]bool{
		"10.0.0.0/8":             false,
		"172.16.0.0/12":          false,
		"192.168.1.0/24":         false,
		"100.64.0.0/10":          false,
		"127.0.0.0/8":            false,
		"169.254.0.0/16":         false,
		"fd00::/8":               false,
		"fe80::/64":              false,
		"::ffff:10.0.0.0/104":    false,
		"192.0.2.7/32":           false,
		"2001:db8::1/128":        false,
		"203.0.113.0/24":         true,
		"35.191.0.0/16":          true,
		"0.0.0.0/1":              true,
		"10.0.0.0/7":             true,
		"2001:db8::/32":          true,
		"::ffff:203.0.113.0/120": true,
	} {
		cfg := Defaults()
		cfg.Listen.Addr = "127.0.0.1:5001"
		cfg.TrustedProxies = []string{"10.0.0.0/8", prefix}
		got := cfg.Warnings("")
		switch {
		case !warned && len(got) != 0:
			t.Errorf("trusted_proxies %s: warnings %q, want none", prefix, got)
		case warned && (len(got) != 1 || !strings.HasPrefix(got[0], `trusted_proxies[1] "`+prefix+`" holds public addresses`) || !strings.Contains(got[0], "X-Forwarded-For")):
			t.Errorf("trusted_proxies %s: warnings %q, want one saying trusted_proxies[1] holds public addresses", prefix, got)
		}
	}
}

// A server logs the warnings of its configuration once, at WARN, when it is made; a
// configuration with nothing to warn about logs no warning.
func TestNewLogsWarnings(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"nothing to warn about", func(*Config) {}, nil},
		{"every interface and a public proxy network", func(c *Config) {
			c.Listen.Addr = ":5001" // New binds nothing
			c.TrustedProxies = []string{"203.0.113.0/24"}
		}, []string{`listen.addr ":5001"`, `trusted_proxies[0] "203.0.113.0/24"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.edit(&cfg)
			logs := &logbuf.Buffer{}
			s, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			var warned []string
			for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
				var rec struct{ Level, Msg string }
				if line == "" {
					continue
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if rec.Level == "WARN" {
					warned = append(warned, rec.Msg)
				}
			}
			if len(warned) != len(tt.want) {
				t.Fatalf("warnings logged: %q, want one beginning with each of %q", warned, tt.want)
			}
			for i := range tt.want {
				if !strings.HasPrefix(warned[i], tt.want[i]) {
					t.Errorf("warning %q, want one beginning %q", warned[i], tt.want[i])
				}
			}
		})
	}
}
