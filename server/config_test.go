package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "regoauth.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	t.Setenv("TEST_STORE_URL", "bolt:///tmp/x.db")
	cfg, err := LoadConfig(writeConfig(t, `
issuer: regoauth
services: [registry.example.com, other.example.com]
token_ttl: 90s
listen: {addr: "127.0.0.1:5001"}
signing: {key_file: key.pem, cert_file: cert.pem, kid: libtrust}
store: {url: {env: TEST_STORE_URL}}
trusted_proxies: [10.0.0.0/8]
`))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(cfg.TokenTTL) != 90*time.Second || cfg.Signing.KID != "libtrust" || len(cfg.Services) != 2 {
		t.Fatalf("config = %+v", cfg)
	}
	if cfg.Limits.MaxScopes != 32 || cfg.Log.Format != "json" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	if u, err := cfg.Store.URL.Resolve(); err != nil || u != "bolt:///tmp/x.db" {
		t.Fatalf("store url = %q, %v", u, err)
	}
}

func TestConfigErrorsAreStrictAndComplete(t *testing.T) {
	_, err := LoadConfig(writeConfig(t, "issuer: x\nservicez: [a]\n"))
	if err == nil || !strings.Contains(err.Error(), "servicez") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = LoadConfig(writeConfig(t, `
issuer: ""
token_ttl: 30s
signing: {kid: sha1}
store: {url: "mysql://x"}
log: {format: xml}
trusted_proxies: [nonsense]
listen: {addr: ":1", tls: {cert_file: a}}
`))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"issuer", "services", "token_ttl", "signing.key_file", "signing.kid", "store.url", "log.format", "trusted_proxies[0]", "listen.tls"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	_, err = LoadConfig(writeConfig(t, "token_ttl: soon\n"))
	if err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Fatalf("bad duration: %v", err)
	}
	_, err = LoadConfig(writeConfig(t, "store: {url: {env: A, file: B}}\n"))
	if err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Fatalf("ambiguous secret: %v", err)
	}
}

func TestSecretSources(t *testing.T) {
	f := filepath.Join(t.TempDir(), "s")
	os.WriteFile(f, []byte("from-file\n"), 0o600)
	for s, want := range map[Secret]string{{Value: "v"}: "v", {File: f}: "from-file"} {
		if got, err := s.Resolve(); err != nil || got != want {
			t.Errorf("%+v: %q, %v", s, got, err)
		}
	}
	if _, err := (Secret{Env: "REGOAUTH_TEST_UNSET"}).Resolve(); err == nil {
		t.Error("unset variable resolved")
	}
}

func TestRedactHidesPasswords(t *testing.T) {
	if got := Redact("redis://user:hunter2@host:6379/0"); strings.Contains(got, "hunter2") {
		t.Fatalf("redact = %q", got)
	}
}

func TestPolicyConfig(t *testing.T) {
	dir := t.TempDir()
	bundleFile := filepath.Join(dir, "policy.tar.gz")
	keyFile := filepath.Join(dir, "pub.pem")
	opaFile := filepath.Join(dir, "opa.yaml")
	for _, f := range []string{bundleFile, keyFile} {
		os.WriteFile(f, []byte("x"), 0o600)
	}
	os.WriteFile(opaFile, []byte("decision_logs: {console: true}\n"), 0o600)
	base := "issuer: x\nservices: [r]\nsigning: {key_file: k.pem}\nstore: {url: bolt:///tmp/x.db}\n"
	for _, tt := range []struct {
		name, policy string
		errs         []string // empty: valid
		check        func(t *testing.T, p PolicyConfig)
	}{
		{name: "default is the built-in library", policy: "", check: func(t *testing.T, p PolicyConfig) {
			src, err := p.source()
			if err != nil || src.Builtin == nil || src.Dir != "" || src.OPAConfig != nil {
				t.Fatalf("source = %+v, %v", src, err)
			}
			if p.evaluateAll() {
				t.Fatal("native decisions are off by default")
			}
		}},
		{name: "native decisions off", policy: "{native: false}", check: func(t *testing.T, p PolicyConfig) {
			if !p.evaluateAll() {
				t.Fatal("policy.native: false leaves native decisions on")
			}
		}},
		{name: "native decisions on", policy: "{native: true}", check: func(t *testing.T, p PolicyConfig) {
			if p.evaluateAll() {
				t.Fatal("policy.native: true turns native decisions off")
			}
		}},
		{name: "native is a bool", policy: "{native: sometimes}", errs: []string{"native"}},
		{name: "signed local bundle", policy: "{bundle: " + bundleFile + ", signing: {key_file: " + keyFile + ", algorithm: ES256}}", check: func(t *testing.T, p PolicyConfig) {
			src, err := p.source()
			if err != nil || src.Bundle != bundleFile || src.Signing == nil || src.Signing.Key != "x" || src.Signing.Algorithm != "ES256" {
				t.Fatalf("source = %+v, %v", src, err)
			}
		}},
		{name: "inline OPA configuration", policy: "{builtin: false, opa: {services: {s: {url: 'https://b.example.com'}}, bundles: {authz: {service: s}}}}", check: func(t *testing.T, p PolicyConfig) {
			src, err := p.source()
			if err != nil || src.Builtin != nil || !strings.Contains(string(src.OPAConfig), `"url":"https://b.example.com"`) {
				t.Fatalf("source = %+v (%s), %v", src, src.OPAConfig, err)
			}
		}},
		{name: "OPA configuration file", policy: "{opa: " + opaFile + "}", check: func(t *testing.T, p PolicyConfig) {
			src, err := p.source()
			if err != nil || !strings.Contains(string(src.OPAConfig), "console: true") {
				t.Fatalf("source = %+v, %v", src, err)
			}
		}},
		{name: "dry run", policy: "{dry_run: {dir: " + dir + "}}", check: func(t *testing.T, p PolicyConfig) {
			if p.DryRun == nil || p.DryRun.Dir != dir {
				t.Fatalf("dry_run = %+v", p.DryRun)
			}
		}},
		{name: "nothing at all", policy: "{builtin: false}", errs: []string{"policy: no policy"}},
		{name: "dir and bundle", policy: "{dir: " + dir + ", bundle: " + bundleFile + "}", errs: []string{"dir or bundle, not both"}},
		{name: "missing files", policy: "{dir: /nonexistent, signing: {key_file: /nonexistent.pem}, opa: /nonexistent.yaml}",
			errs: []string{"policy.dir", "policy.signing.key_file", "policy.opa"}},
		{name: "signing without a local bundle", policy: "{signing: {key_file: " + keyFile + "}}", errs: []string{"policy.signing: there is no dir or bundle"}},
		{name: "bad dry run", policy: "{dry_run: {builtin: false}}", errs: []string{"policy.dry_run: no policy"}},
		{name: "opa is neither", policy: "{opa: [a]}", errs: []string{"file name or a mapping"}},
		{name: "unknown key", policy: "{directory: /x}", errs: []string{"directory"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(writeConfig(t, base+"policy: "+tt.policy+"\n"))
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, cfg.Policy)
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tt.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not mention %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestAuthFailureLimits(t *testing.T) {
	base := "issuer: x\nservices: [r]\nsigning: {key_file: k}\nstore: {url: \"bolt:///tmp/x.db\"}\n"
	cfg, err := LoadConfig(writeConfig(t, base))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Limits.AuthFailures
	if !a.enabled() || a.Address.Burst != 200 || a.AccountAddress.Burst != 30 || a.Account.Burst != 600 || a.IPv6Prefix != 64 {
		t.Fatalf("the limits are not on by default: %+v", a)
	}
	// A budget given in part keeps the rest of its default.
	cfg, err = LoadConfig(writeConfig(t, base+"limits: {auth_failures: {address: {burst: 50}, exempt: [10.0.0.0/8], account: {burst: 0}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a = cfg.Limits.AuthFailures
	if a.Address.Burst != 50 || time.Duration(a.Address.Every) != 500*time.Millisecond || a.Account.Burst != 0 || len(a.Exempt) != 1 {
		t.Fatalf("partial override: %+v", a)
	}
	cfg, err = LoadConfig(writeConfig(t, base+"limits: {auth_failures: {enabled: false}}\n"))
	if err != nil || cfg.Limits.AuthFailures.enabled() {
		t.Fatalf("enabled: false: %v %+v", err, cfg.Limits.AuthFailures)
	}
	_, err = LoadConfig(writeConfig(t, base+"limits: {auth_failures: {address: {burst: -1}, account: {every: 0s}, exempt: [x], ipv6_prefix: 8, tracked: 5, per_ip: 3}}\n"))
	if err == nil || !strings.Contains(err.Error(), "per_ip") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = LoadConfig(writeConfig(t, base+"limits: {auth_failures: {address: {burst: -1}, account: {every: 0s}, exempt: [x], ipv6_prefix: 8, tracked: 5}}\n"))
	for _, want := range []string{"auth_failures.address", "auth_failures.account:", "exempt[0]", "ipv6_prefix", "tracked"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestNegativeCacheConfig(t *testing.T) {
	base := "issuer: x\nservices: [r]\nsigning: {key_file: k}\n"
	cfg, err := LoadConfig(writeConfig(t, base+"store: {url: \"bolt:///tmp/x.db\"}\n"))
	if err != nil || time.Duration(cfg.Store.Cache.NegativeTTL) != 10*time.Second {
		t.Fatalf("default negative_ttl: %v %v", cfg.Store.Cache.NegativeTTL, err)
	}
	_, err = LoadConfig(writeConfig(t, base+"store: {url: \"bolt:///tmp/x.db\", cache: {negative_ttl: 2m}}\n"))
	if err == nil || !strings.Contains(err.Error(), "store.cache.negative_ttl") {
		t.Fatalf("negative_ttl beyond a minute: %v", err)
	}
}

// policy.decision_cache is a size in memory: a bare number is refused rather than read as bytes
// (it once counted entries, and 10000 must not quietly become 10 KB).
func TestDecisionCacheSize(t *testing.T) {
	base := "issuer: regoauth\nservices: [r]\nlisten: {addr: \"127.0.0.1:5001\"}\nsigning: {key_file: k, cert_file: c}\nstore: {url: \"bolt:///tmp/x.db\"}\n"
	for _, tt := range []struct {
		value string
		want  int64
		err   string
	}{
		{"", defaultDecisionCache, ""},
		{"64MiB", 64 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"0", 0, ""},
		{"10000", 0, "not a size"},
		{"64MB", 0, "not a size"},
		{"-1MiB", 0, "not a size"},
		{"512KiB", 0, "too small"},
	} {
		t.Run(tt.value, func(t *testing.T) {
			body := base
			if tt.value != "" {
				body += "policy: {decision_cache: " + tt.value + "}\n"
			}
			cfg, err := LoadConfig(writeConfig(t, body))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil || cfg.Policy.decisionCache() != tt.want {
				t.Fatalf("decision cache = %d, %v; want %d", cfg.Policy.decisionCache(), err, tt.want)
			}
		})
	}
}

// limits.decision_workers is 0 (one per CPU) or a count no larger than max_in_flight.
func TestDecisionWorkersAreBounded(t *testing.T) {
	base := "issuer: x\nservices: [a]\nsigning: {key_file: k}\nstore: {url: \"bolt:///tmp/x.db\"}\n"
	for value, ok := range map[string]bool{"0": true, "4": true, "1024": true, "-1": false, "1025": false} {
		_, err := LoadConfig(writeConfig(t, base+"limits: {decision_workers: "+value+"}\n"))
		if ok && err != nil {
			t.Errorf("decision_workers: %s refused: %v", value, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "decision_workers")) {
			t.Errorf("decision_workers: %s: error %v, want one naming decision_workers", value, err)
		}
	}
}

// A trusted proxy's X-Forwarded-For names the client. Trusting every address would let any
// client name itself, past key network restrictions and per-address limits: such a prefix is
// refused, in any of its spellings; any narrower prefix is accepted.
func TestTrustedProxiesRefuseEveryAddress(t *testing.T) {
	base := "issuer: x\nservices: [a]\nsigning: {key_file: k}\nstore: {url: \"bolt:///tmp/x.db\"}\n"
	for prefix, refused := range map[string]bool{
		"0.0.0.0/0":         true,
		"::/0":              true,
		"10.1.2.3/0":        true,
		"::ffff:0:0/96":     true,
		"::ffff:0.0.0.0/96": true,
		"::/80":             true,
		"10.0.0.0/8":        false,
		"0.0.0.0/1":         false,
		"fd00::/8":          false,
		"2001:db8::/32":     false,
		"192.0.2.7/32":      false,
	} {
		_, err := LoadConfig(writeConfig(t, base+"trusted_proxies: [10.0.0.0/8, \""+prefix+"\"]\n"))
		switch {
		case refused && (err == nil || !strings.Contains(err.Error(), "trusted_proxies[1]") || !strings.Contains(err.Error(), "trusts every address")):
			t.Errorf("trusted_proxies %s: error %v, want one saying trusted_proxies[1] trusts every address", prefix, err)
		case refused && strings.Count(err.Error(), "\n") != 0:
			t.Errorf("trusted_proxies %s: the error is not one line: %q", prefix, err)
		case !refused && err != nil:
			t.Errorf("trusted_proxies %s refused: %v", prefix, err)
		}
	}
}

// TestMappedNetworksAreRefused: an IPv4 network written IPv4-mapped (::ffff:10.0.0.0/104)
// would match no client, whose addresses are compared unmapped; the configuration refuses it and
// says how to write it.
func TestMappedNetworksAreRefused(t *testing.T) {
	base := "issuer: x\nservices: [a]\nsigning: {key_file: k}\nstore: {url: \"bolt:///tmp/x.db\"}\n"
	for _, tc := range []struct{ yaml, field string }{
		{"trusted_proxies: [10.0.0.0/8, \"::ffff:10.1.0.0/112\"]\n", "trusted_proxies[1]"},
		{"limits: {auth_failures: {exempt: [10.0.0.0/8, \"::ffff:10.1.0.0/112\"]}}\n", "limits.auth_failures.exempt[1]"},
	} {
		_, err := LoadConfig(writeConfig(t, base+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "write 10.1.0.0/16") {
			t.Errorf("%s: error %v, want one naming %s and saying to write 10.1.0.0/16", tc.yaml, err, tc.field)
		}
	}
}

// TestFailureExemptionRefusesEveryAddress: exempting every address from the per-address
// failure budget is turning the budget off; the configuration must say that in so many words.
func TestFailureExemptionRefusesEveryAddress(t *testing.T) {
	base := "issuer: x\nservices: [a]\nsigning: {key_file: k}\nstore: {url: \"bolt:///tmp/x.db\"}\n"
	for prefix, refused := range map[string]bool{
		"0.0.0.0/0":     true,
		"::/0":          true,
		"::ffff:0:0/96": true,
		"10.0.0.0/8":    false,
		"2001:db8::/32": false,
	} {
		_, err := LoadConfig(writeConfig(t, base+"limits: {auth_failures: {exempt: [10.0.0.0/8, \""+prefix+"\"]}}\n"))
		switch {
		case refused && (err == nil || !strings.Contains(err.Error(), "limits.auth_failures.exempt[1]") || !strings.Contains(err.Error(), "address.burst: 0")):
			t.Errorf("exempt %s: error %v, want one naming exempt[1] and the way to turn the budget off", prefix, err)
		case !refused && err != nil:
			t.Errorf("exempt %s refused: %v", prefix, err)
		}
	}
}

// Networks that are each narrower than every address may still hold every address together
// (0.0.0.0/1 and 128.0.0.0/1): such a set is refused like 0.0.0.0/0, for trusted proxies and
// for exemptions from the per-address failure budget, and one short of it is accepted.
func TestNetworksTogetherHoldingEveryAddressAreRefused(t *testing.T) {
	base := "issuer: x\nservices: [a]\nsigning: {key_file: k}\nstore: {url: \"bolt:///tmp/x.db\"}\n"
	for _, tt := range []struct {
		networks string
		refused  bool
	}{
		{`[0.0.0.0/1, 128.0.0.0/1]`, true},
		{`[128.0.0.0/1, 10.0.0.0/8, 0.0.0.0/2, 64.0.0.0/2]`, true},
		{`[0.0.0.0/1, 192.168.0.0/16, 128.0.0.0/2, 192.0.0.0/2]`, true},
		{`[0.0.0.0/1, 128.0.0.0/1, "2001:db8::/32"]`, true},
		{`["::/1", "8000::/1"]`, true},
		{`["8000::/1", "4000::/2", "::/2"]`, true},
		{`[0.0.0.0/1]`, false},
		{`[0.0.0.0/1, 128.0.0.0/2]`, false},
		{`[0.0.0.0/1, 128.0.0.0/2, 192.0.0.0/3, 224.0.0.0/4, 240.0.0.0/5, 248.0.0.0/6, 252.0.0.0/7, 254.0.0.0/8, 255.0.0.0/9, 255.128.0.0/10, 255.192.0.0/11, 255.224.0.0/12, 255.240.0.0/13, 255.248.0.0/14, 255.252.0.0/15, 255.254.0.0/16, 255.255.0.0/17, 255.255.128.0/18, 255.255.192.0/19, 255.255.224.0/20, 255.255.240.0/21, 255.255.248.0/22, 255.255.252.0/23, 255.255.254.0/24, 255.255.255.0/25, 255.255.255.128/26, 255.255.255.192/27, 255.255.255.224/28, 255.255.255.240/29, 255.255.255.248/30, 255.255.255.252/31, 255.255.255.254/32]`, false},
		{`[0.0.0.0/1, "8000::/1"]`, false},
		{`["8000::/1", "4000::/2"]`, false},
	} {
		for _, f := range []struct{ yaml, field, says string }{
			{"trusted_proxies: ", "trusted_proxies", "every address"},
			{"limits: {auth_failures: {exempt: ", "limits.auth_failures.exempt", "address.burst: 0"},
		} {
			body := base + f.yaml + tt.networks
			if strings.HasPrefix(f.yaml, "limits") {
				body += "}}"
			}
			_, err := LoadConfig(writeConfig(t, body+"\n"))
			switch {
			case tt.refused && (err == nil || !strings.Contains(err.Error(), f.field) || !strings.Contains(err.Error(), f.says)):
				t.Errorf("%s %s: error %v, want one naming %s and saying %q", f.field, tt.networks, err, f.field, f.says)
			case tt.refused && strings.Count(err.Error(), "\n") != 0:
				t.Errorf("%s %s: the error is not one line: %q", f.field, tt.networks, err)
			case !tt.refused && err != nil:
				t.Errorf("%s %s refused: %v", f.field, tt.networks, err)
			}
		}
	}
}

// A mistake that would only show when the server starts (a port out of range, the metrics
// listener on the main listener's address) or never (settings in a second YAML document, a
// misspelt key of a secret) is a clear error when the configuration is loaded, as
// --check-config does.
func TestConfigMistakesAreNamedAtLoad(t *testing.T) {
	const base = "issuer: x\nservices: [r]\nsigning: {key_file: k.pem}\n"
	for _, tt := range []struct{ name, config, want string }{
		{"port out of range", base + "store: {url: 'bolt:///tmp/x.db'}\nlisten: {addr: ':99999'}\n", `listen.addr: ":99999": the port must be a number from 0 to 65535`},
		{"negative port", base + "store: {url: 'bolt:///tmp/x.db'}\nlisten: {addr: ':-1'}\n", `listen.addr: ":-1": the port must be a number`},
		{"no port", base + "store: {url: 'bolt:///tmp/x.db'}\nlisten: {addr: 'localhost'}\n", `listen.addr: "localhost": use [host]:port`},
		{"metrics port out of range", base + "store: {url: 'bolt:///tmp/x.db'}\nmetrics: {addr: ':70000'}\n", `metrics.addr: ":70000": the port must be a number`},
		{"metrics on the main listener", base + "store: {url: 'bolt:///tmp/x.db'}\nmetrics: {addr: ':5001'}\n", `metrics.addr: ":5001" is listen.addr too`},
		{"a second document", base + "store: {url: 'bolt:///tmp/x.db'}\n---\nlimits: {keys_per_account: 5}\n", "line 6: a second YAML document (after a line ---) would be ignored"},
		{"a misspelt key of a secret", base + "store: {url: {fiel: /run/secrets/store-url}}\n", `line 4: "fiel": a secret is a value, or a mapping of one of value, env, file`},
		{"an empty file", "", "the file is empty; a configuration sets at least services"},
		{"only comments", "# to do\n", "the file is empty"},
		{"a misspelt key beside a good one", base + "store: {url: {file: /run/secrets/store-url, valu: x}}\n", `"valu": a secret is`},
		{"too many scopes allowed", base + "store: {url: 'bolt:///tmp/x.db'}\nlimits: {max_scopes: 100000}\n", "max_scopes from 1 to 1024"},
		{"scopes too long allowed", base + "store: {url: 'bolt:///tmp/x.db'}\nlimits: {max_scope_length: 1000000}\n", "max_scope_length from 64 to 4096"},
		{"too many requests in flight allowed", base + "store: {url: 'bolt:///tmp/x.db'}\nlimits: {max_in_flight: 10000000}\n", "max_in_flight from 1 to 100000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tt.config))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
	// What stays accepted: a host, IPv6, a service name, a document marker before the only
	// document, empty documents after it.
	for _, ok := range []string{
		base + "store: {url: 'bolt:///tmp/x.db'}\nlisten: {addr: '127.0.0.1:5001'}\nmetrics: {addr: '[::1]:9090'}\n",
		base + "store: {url: 'bolt:///tmp/x.db'}\nlisten: {addr: ':https'}\n",
		"---\n" + base + "store: {url: 'bolt:///tmp/x.db'}\n---\n# nothing more\n",
		base + "store: {url: 'bolt:///tmp/x.db'}\nlimits: {max_scopes: 1024, max_scope_length: 4096, max_in_flight: 100000}\n",
	} {
		if _, err := LoadConfig(writeConfig(t, ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}
