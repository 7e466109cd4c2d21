package redisstore

import (
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	for _, tt := range []struct {
		url   string
		check func(t *testing.T, tg *Target)
	}{
		{"redis://localhost:6390/2", func(t *testing.T, tg *Target) {
			if tg.Mode != Standalone || tg.simple.Addr != "localhost:6390" || tg.simple.DB != 2 || tg.simple.TLSConfig != nil || tg.Prefix != DefaultPrefix {
				t.Fatalf("%+v", tg.simple)
			}
			if tg.simple.DialTimeout != defaultDialTimeout || tg.simple.MaxRetries != defaultMaxRetries || !tg.simple.ContextTimeoutEnabled {
				t.Fatalf("fail-closed defaults not applied: %+v", tg.simple)
			}
		}},
		{"rediss://:s3cret@cache.example.com/0?dial_timeout=5s&prefix=prod", func(t *testing.T, tg *Target) {
			if tg.simple.TLSConfig == nil || tg.simple.Password != "s3cret" || tg.simple.DialTimeout != 5*time.Second || tg.Prefix != "prod" {
				t.Fatalf("%+v prefix %q", tg.simple, tg.Prefix)
			}
		}},
		{"redis+sentinel://:pw@s1:26380,s2/mymaster/3?sentinel_password=sp", func(t *testing.T, tg *Target) {
			o := tg.failover
			if tg.Mode != Sentinel || o.MasterName != "mymaster" || o.DB != 3 || o.Password != "pw" || o.SentinelPassword != "sp" ||
				strings.Join(o.SentinelAddrs, ",") != "s1:26380,s2:26379" {
				t.Fatalf("%+v", o)
			}
		}},
		{"rediss+sentinel://h/m", func(t *testing.T, tg *Target) {
			if tg.failover.TLSConfig == nil || tg.failover.DB != 0 || tg.failover.Password != "" {
				t.Fatalf("%+v", tg.failover)
			}
		}},
		{"redis+cluster://app:pw@a:7000,b:7001,c?read_timeout=1s", func(t *testing.T, tg *Target) {
			o := tg.cluster
			if tg.Mode != Cluster || strings.Join(o.Addrs, ",") != "a:7000,b:7001,c:6379" || o.Username != "app" || o.Password != "pw" || o.ReadTimeout != time.Second {
				t.Fatalf("%+v", o)
			}
		}},
		{"redis://h/0?confirm_replicas=1", func(t *testing.T, tg *Target) {
			if tg.Confirm != (Confirm{Replicas: 1, Timeout: DefaultConfirmTimeout}) {
				t.Fatalf("%+v", tg.Confirm)
			}
		}},
		{"redis+sentinel://h/m?confirm_replicas=2&confirm_timeout=250ms&dial_timeout=3s", func(t *testing.T, tg *Target) {
			if tg.Confirm != (Confirm{Replicas: 2, Timeout: 250 * time.Millisecond}) || tg.failover.DialTimeout != 3*time.Second {
				t.Fatalf("%+v %+v", tg.Confirm, tg.failover)
			}
		}},
		{"redis+cluster://a,b?confirm_replicas=0", func(t *testing.T, tg *Target) {
			if tg.Confirm.on() {
				t.Fatalf("%+v", tg.Confirm)
			}
		}},
	} {
		t.Run(tt.url, func(t *testing.T) {
			tg, err := ParseURL(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, tg)
		})
	}
}

func TestParseURLErrorsNeverShowThePassword(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"mysql://u:hunter2@h", "use redis://"},
		{"redis://:hunter2@", "no host"},
		{"redis://:hunter2@a,b/0", "names one host"},
		{"redis+sentinel://:hunter2@h:26379", "monitored master"},
		{"redis+cluster://:hunter2@a,b/0", "no database"},
		{"redis://:hunter2@h/0?prefix=a{b}", "prefix"},
		{"redis://:hunter2@h/0?frobnicate=1", "frobnicate"},
		{"redis://:hunter2@h/zero", "database"},
		{"redis+sentinel://h/m?sentinel_password=hunter2&nope=1", "nope"},
		{"redis://:hunter2@h/0?confirm_replicas=one", `confirm_replicas: "one"`},
		{"redis://:hunter2@h/0?confirm_replicas=-1", "confirm_replicas: use 0 to 100"},
		{"redis://:hunter2@h/0?confirm_replicas=1&confirm_timeout=0s", "confirm_timeout: use 10ms to 10s"},
		{"redis://:hunter2@h/0?confirm_replicas=1&confirm_timeout=1m", "confirm_timeout: use 10ms to 10s"},
		{"redis://:hunter2@h/0?confirm_replicas=1&confirm_timeout=soon", `confirm_timeout: "soon"`},
		{"redis://:hunter2@h/0?confirm_timeout=1s", "set confirm_replicas too"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			_, err := ParseURL(tt.url)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error = %v, want one naming %q without the password", err, tt.want)
			}
		})
	}
}

func TestHasPassword(t *testing.T) {
	for in, want := range map[string]bool{
		"redis://user:hunter2@h:6379/0":                       true,
		"redis://:hunter2@h":                                  true,
		"rediss+cluster://:p%40ss@h1,h2":                      true,
		"redis+sentinel://h/m?sentinel_password=hunter2&db=1": true,
		"redis://user@h:6379/0":                               false,
		"redis://:@h":                                         false,
		"redis://h:6379/0?sentinel_password=":                 false,
		"redis://h:6379/0":                                    false,
	} {
		if got := HasPassword(in); got != want {
			t.Errorf("HasPassword(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://user:hunter2@h:6379/0":                       "redis://user:…@h:6379/0",
		"redis://:hunter2@h":                                  "redis://…@h",
		"redis+sentinel://h/m?sentinel_password=hunter2&db=1": "redis+sentinel://h/m?sentinel_password=…&db=1",
		"redis://h:6379/0":                                    "redis://h:6379/0",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
