package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	disttoken "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/tokens"

	"github.com/regoauth/regoauth/internal/testenv/logbuf"
)

const reloadService = "registry.example.com"

// fileSet is the file set a reloading server is given: a configuration file, one line per
// top-level key, and the keys, certificates and secrets it names, in one temporary folder.
type fileSet struct {
	t     *testing.T
	dir   string
	path  string
	lines map[string]string
	order []string
}

func newFileSet(t *testing.T) *fileSet {
	t.Helper()
	dir := t.TempDir()
	f := &fileSet{t: t, dir: dir, path: filepath.Join(dir, "regoauth.yaml"), lines: map[string]string{}}
	key, cert := f.signingKey(0)
	tlsCert, tlsKey, _ := tlsFiles(t)
	f.writeFile("store-url", "bolt://"+filepath.Join(dir, "store.db"))
	for _, kv := range [][2]string{
		{"issuer", "gen-0"},
		{"services", "[" + reloadService + "]"},
		{"token_ttl", "5m"},
		{"listen", fmt.Sprintf("{addr: %q, tls: {cert_file: %q, key_file: %q}}", "127.0.0.1:0", tlsCert, tlsKey)},
		{"signing", fmt.Sprintf("{key_file: %q, cert_file: %q}", key, cert)},
		{"refresh_tokens", fmt.Sprintf("{secrets: [{file: %q}]}", f.secret(0))},
		{"store", fmt.Sprintf("{url: {file: %q}}", filepath.Join(dir, "store-url"))},
		{"limits", "{max_scopes: 32, max_scope_length: 512, max_in_flight: 1024}"},
		{"shutdown", "{grace_period: 20s, drain_delay: 0s}"},
		{"reload", "{watch: false}"},
		{"log", "{format: json, level: info}"},
	} {
		f.order = append(f.order, kv[0])
		f.lines[kv[0]] = kv[1]
	}
	f.write()
	return f
}

// set replaces the line of a top-level key and writes the configuration file.
func (f *fileSet) set(key, value string) {
	f.t.Helper()
	if _, ok := f.lines[key]; !ok {
		f.order = append(f.order, key)
	}
	f.lines[key] = value
	f.write()
}

// write puts the configuration file in place by rename, as a deploy does.
func (f *fileSet) write() {
	f.t.Helper()
	var b strings.Builder
	for _, k := range f.order {
		fmt.Fprintf(&b, "%s: %s\n", k, f.lines[k])
	}
	f.writeFile(filepath.Base(f.path), b.String())
}

func (f *fileSet) writeFile(name, content string) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := secretfile.Write(p, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// signingKey makes (once) the signing key and certificate number i.
func (f *fileSet) signingKey(i int) (key, cert string) {
	f.t.Helper()
	key, cert = filepath.Join(f.dir, fmt.Sprintf("key-%d.pem", i)), filepath.Join(f.dir, fmt.Sprintf("cert-%d.pem", i))
	if _, err := secretfile.EnsureSigningKey(key, cert, jose.ES256, fmt.Sprintf("gen-%d", i), time.Now()); err != nil {
		f.t.Fatal(err)
	}
	return key, cert
}

// signingLine is the signing section for key i, publishing the keys of more.
func (f *fileSet) signingLine(i int, publish ...int) string {
	key, cert := f.signingKey(i)
	var pub []string
	for _, p := range publish {
		_, c := f.signingKey(p)
		pub = append(pub, fmt.Sprintf("%q", c))
	}
	return fmt.Sprintf("{key_file: %q, cert_file: %q, publish: [%s]}", key, cert, strings.Join(pub, ", "))
}

// secret writes refresh secret number i and returns its path.
func (f *fileSet) secret(i int) string {
	return f.writeFile(fmt.Sprintf("refresh-%d", i), strings.Repeat(fmt.Sprint(i), 40))
}

// start runs a server from the file set, as `regoauth serve --config` does.
func (f *fileSet) start() (*Server, http.Handler, *logbuf.Buffer) {
	f.t.Helper()
	cfg, err := LoadConfig(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	s, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), ConfigFile: f.path})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	h, err := s.Handler()
	if err != nil {
		f.t.Fatal(err)
	}
	return s, h, logs
}

// issued is a token answer, read without verifying.
type issued struct {
	status int
	raw    string
	token  string
	kid    string
	issuer string
	body   map[string]any
}

func requestToken(h http.Handler, service string, scopes ...string) issued {
	q := url.Values{"service": {service}, "scope": scopes}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/token?"+q.Encode(), nil))
	res := issued{status: w.Code, raw: w.Body.String()}
	json.Unmarshal(w.Body.Bytes(), &res.body)
	res.token, _ = res.body["token"].(string)
	if tk, err := disttoken.NewToken(res.token, []jose.SignatureAlgorithm{jose.ES256}); err == nil {
		var claims struct {
			Issuer string `json:"iss"`
		}
		tk.JWT.UnsafeClaimsWithoutVerification(&claims)
		res.kid, res.issuer = tk.JWT.Headers[0].KeyID, claims.Issuer
	}
	return res
}

// verifiedBy checks a token with distribution's verifier trusting only the certificate of
// signing key i and the issuer of generation i.
func (f *fileSet) verifiedBy(t *testing.T, token string, i int) error {
	t.Helper()
	return f.verifiedByIssuer(t, token, i, fmt.Sprintf("gen-%d", i))
}

func reloadCount(s *Server, result string) float64 {
	return testutil.ToFloat64(s.reloadMetrics.reloads.WithLabelValues(result))
}

// TestReloadIsOneSwapUnderLoad: while four clients request tokens without pause, the signing key
// and the issuer change together at every reload, five times. Every request succeeds, and every
// token is verified by distribution's verifier with the key and issuer of one generation: no
// request saw the key of one configuration with the issuer of another. Each generation's key is
// published before it signs (rotation done right), and the JWKS follows.
func TestReloadIsOneSwapUnderLoad(t *testing.T) {
	f := newFileSet(t)
	s, h, logs := f.start()
	const generations = 5
	for i := 1; i <= generations; i++ {
		f.signingKey(i)
	}

	var failed atomic.Int64
	var mu sync.Mutex
	var results []issued
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := requestToken(h, reloadService, "repository:a:pull")
				if r.status != http.StatusOK {
					failed.Add(1)
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	jwksKids := func() int {
		_, body, _ := get(t, h, "/.well-known/jwks.json")
		keys, _ := body["keys"].([]any)
		return len(keys)
	}
	for i := 1; i <= generations; i++ {
		time.Sleep(30 * time.Millisecond)
		// The next key is published first, under the running issuer and key...
		f.set("signing", f.signingLine(i-1, i))
		if err := s.Reload("test"); err != nil {
			t.Fatal(err)
		}
		if n := jwksKids(); n != 2 {
			t.Fatalf("generation %d: the JWKS has %d keys, want the signing key and the next", i, n)
		}
		time.Sleep(30 * time.Millisecond)
		// ...then it signs, with a new issuer, in the same file.
		f.lines["issuer"] = fmt.Sprintf("gen-%d", i)
		f.set("signing", f.signingLine(i, i-1))
		if err := s.Reload("test"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(30 * time.Millisecond)
	close(stop)
	wg.Wait()

	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d token requests failed during the reloads", n, len(results))
	}
	perGeneration := map[string]int{}
	for _, r := range results {
		var gen int
		if _, err := fmt.Sscanf(r.issuer, "gen-%d", &gen); err != nil {
			t.Fatalf("a token with issuer %q: %s", r.issuer, r.raw)
		}
		if err := f.verifiedBy(t, r.token, gen); err != nil {
			t.Fatalf("a token of issuer %s is not verified by key %d: %v", r.issuer, gen, err)
		}
		perGeneration[r.issuer]++
	}
	if len(perGeneration) != generations+1 {
		t.Fatalf("tokens came from %d generations, want %d: %v", len(perGeneration), generations+1, perGeneration)
	}
	if got := reloadCount(s, "success"); got != 2*generations {
		t.Fatalf("regoauth_config_reloads_total{result=success} = %v, want %d", got, 2*generations)
	}
	if recs := logs.Records("configuration reloaded"); len(recs) != 2*generations || recs[len(recs)-1]["trigger"] != "test" {
		t.Fatalf("%d reload log lines: %v", len(recs), recs)
	}
	t.Logf("%d token requests during %d reloads, 0 failures; tokens per generation: %v", len(results), 2*generations, perGeneration)
}

// TestReloadRefusesWhatCannotServe: a new configuration that does not load, names a file that
// does not parse or does not match, or changes what needs a restart, is refused with a log line
// naming the problem and counted; the running generation keeps serving; a good file afterwards
// reloads.
func TestReloadRefusesWhatCannotServe(t *testing.T) {
	f := newFileSet(t)
	s, h, logs := f.start()
	before := requestToken(h, reloadService, "repository:a:pull")
	if before.status != http.StatusOK || f.verifiedBy(t, before.token, 0) != nil {
		t.Fatalf("the first generation: %s", before.raw)
	}
	key0, cert0 := f.signingKey(0)
	otherKey, _ := f.signingKey(9)
	tlsCert, tlsKey, _ := tlsFiles(t)
	otherTLSCert, _, _ := tlsFiles(t)
	garbage := f.writeFile("garbage.pem", "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
	original := map[string]string{}
	for k, v := range f.lines {
		original[k] = v
	}

	for _, tt := range []struct {
		name  string
		edit  func()
		error string // in the error and the log line
	}{
		{"unparseable YAML", func() { f.set("services", "[registry.example.com") }, "regoauth.yaml"},
		{"an unknown key", func() { f.set("servicez", "[a]") }, "servicez"},
		{"an invalid value", func() { f.set("token_ttl", "10s") }, "token_ttl"},
		{"a signing key that does not parse", func() { f.set("signing", fmt.Sprintf("{key_file: %q}", garbage)) }, "signing key"},
		{"a missing signing key", func() { f.set("signing", fmt.Sprintf("{key_file: %q}", filepath.Join(f.dir, "nothing.pem"))) }, "signing key"},
		{"a certificate of another key", func() { f.set("signing", fmt.Sprintf("{key_file: %q, cert_file: %q}", otherKey, cert0)) }, "does not belong to the signing key"},
		{"a published key that does not parse", func() {
			f.set("signing", fmt.Sprintf("{key_file: %q, cert_file: %q, publish: [%q]}", key0, cert0, garbage))
		}, "signing.publish"},
		{"a short refresh secret", func() { f.set("refresh_tokens", "{secrets: [short]}") }, "refresh_tokens"},
		{"a missing refresh secret file", func() {
			f.set("refresh_tokens", fmt.Sprintf("{secrets: [{file: %q}]}", filepath.Join(f.dir, "nothing")))
		}, "refresh_tokens.secrets[0]"},
		{"a TLS certificate of another key", func() {
			f.set("listen", fmt.Sprintf("{addr: %q, tls: {cert_file: %q, key_file: %q}}", "127.0.0.1:0", otherTLSCert, tlsKey))
		}, "listen.tls"},
		{"a missing TLS key", func() {
			f.set("listen", fmt.Sprintf("{addr: %q, tls: {cert_file: %q, key_file: %q}}", "127.0.0.1:0", tlsCert, filepath.Join(f.dir, "nothing")))
		}, "listen.tls"},
		{"another listen address", func() {
			f.set("listen", strings.Replace(original["listen"], "127.0.0.1:0", "127.0.0.1:1", 1))
		}, "listen.addr"},
		{"TLS turned off", func() { f.set("listen", `{addr: "127.0.0.1:0"}`) }, "listen.tls (turned on or off)"},
		{"a metrics listener", func() { f.set("metrics", `{addr: "127.0.0.1:0"}`) }, "metrics.addr"},
		{"another store URL in the file", func() { f.writeFile("store-url", "bolt://"+filepath.Join(f.dir, "other.db")) }, "store.url"},
		{"another store cache", func() { f.set("store", original["store"][:len(original["store"])-1]+", cache: {ttl: 1s}}") }, "store"},
		{"a policy setting", func() { f.set("policy", "{decision_cache: 5MiB}") }, "policy"},
		{"the in-flight limit", func() { f.set("limits", "{max_in_flight: 5}") }, "limits.max_in_flight"},
		{"the log level", func() { f.set("log", "{format: json, level: debug}") }, "log"},
		{"file watching", func() { f.set("reload", "{watch: true}") }, "reload"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			failures := reloadCount(s, "failure")
			tt.edit()
			err := s.Reload("test")
			if err == nil || !strings.Contains(err.Error(), tt.error) {
				t.Fatalf("Reload: %v, want a refusal naming %q", err, tt.error)
			}
			if got := reloadCount(s, "failure"); got != failures+1 {
				t.Fatalf("regoauth_config_reloads_total{result=failure} = %v, want %v", got, failures+1)
			}
			if v := testutil.ToFloat64(s.reloadMetrics.successful); v != 0 {
				t.Fatalf("regoauth_config_last_reload_successful = %v after a refusal", v)
			}
			recs := logs.Records("configuration reload refused; the running configuration keeps serving")
			if last := recs[len(recs)-1]; !strings.Contains(fmt.Sprint(last["error"]), tt.error) || last["level"] != "ERROR" {
				t.Fatalf("log line: %v", last)
			}
			if r := requestToken(h, reloadService, "repository:a:pull"); r.status != http.StatusOK || f.verifiedBy(t, r.token, 0) != nil {
				t.Fatalf("after the refusal: %s", r.raw)
			}
			if s.gen.Load().number != 1 {
				t.Fatalf("generation %d serves", s.gen.Load().number)
			}
			// Back to the running files: a reload succeeds again.
			f.writeFile("store-url", "bolt://"+filepath.Join(f.dir, "store.db"))
			f.lines, f.order = map[string]string{}, slices.DeleteFunc(f.order, func(k string) bool { _, ok := original[k]; return !ok })
			for k, v := range original {
				f.lines[k] = v
			}
			f.write()
		})
	}
	if got := reloadCount(s, "success"); got != 0 {
		t.Fatalf("%v reloads succeeded", got)
	}
	if err := s.Reload("test"); err != nil {
		t.Fatalf("the original files again: %v", err)
	}
	if v := testutil.ToFloat64(s.reloadMetrics.successful); v != 1 || reloadCount(s, "success") != 1 {
		t.Fatalf("after a good reload: successful %v, successes %v", v, reloadCount(s, "success"))
	}
}

// TestReloadAppliesEveryReloadableKey changes each key of the configuration in turn: the keys
// docs/configuration.md marks "yes" take effect in the new generation, the others are refused.
// Every accepted key is in the table, so a new key must be classified here.
func TestReloadAppliesEveryReloadableKey(t *testing.T) {
	f := newFileSet(t)
	s, h, _ := f.start()
	key1, cert1 := f.signingKey(1)
	tlsCert, tlsKey, _ := tlsFiles(t)
	listen := func(cert, key string) string {
		return fmt.Sprintf("{addr: %q, tls: {cert_file: %q, key_file: %q}}", "127.0.0.1:0", cert, key)
	}
	type change struct {
		key, line, value string
		applied          func(g *generation) bool // nil: refused (restart)
	}
	changes := []change{
		{"issuer", "issuer", "gen-7", func(g *generation) bool {
			return requestToken(h, reloadService, "repository:a:pull").issuer == "gen-7"
		}},
		{"services", "services", "[" + reloadService + ", other.example.com]", func(g *generation) bool {
			return requestToken(h, "other.example.com").status == http.StatusOK
		}},
		{"token_ttl", "token_ttl", "90s", func(g *generation) bool {
			return requestToken(h, reloadService, "repository:a:pull").body["expires_in"] == float64(90)
		}},
		{"listen.tls.cert_file", "listen", listen(tlsCert, tlsKey), func(g *generation) bool {
			c, err := s.certificate("token")(nil)
			return err == nil && sameCert(t, tlsCert, c.Certificate[0])
		}},
		{"listen.tls.key_file", "", "", nil}, // changed with cert_file above
		{"signing.key_file", "signing", fmt.Sprintf("{key_file: %q}", key1), func(g *generation) bool {
			return requestToken(h, reloadService, "repository:a:pull").kid == g.keys.published[0] && g.keys.published[0] != ""
		}},
		{"signing.cert_file", "signing", fmt.Sprintf("{key_file: %q, cert_file: %q}", key1, cert1), func(g *generation) bool {
			return f.verifiedByIssuer(t, requestToken(h, reloadService, "repository:a:pull").token, 1, g.cfg.Issuer) == nil
		}},
		{"signing.kid", "signing", fmt.Sprintf("{key_file: %q, cert_file: %q, kid: libtrust}", key1, cert1), func(g *generation) bool {
			return strings.Count(requestToken(h, reloadService, "repository:a:pull").kid, ":") == 11 // libtrust: 12 groups
		}},
		{"signing.publish", "signing", f.signingLine(1, 0), func(g *generation) bool {
			_, body, _ := get(t, h, "/.well-known/jwks.json")
			keys, _ := body["keys"].([]any)
			return len(keys) == 2
		}},
		{"refresh_tokens.secrets", "refresh_tokens", fmt.Sprintf("{secrets: [{file: %q}, {file: %q}]}", f.secret(1), f.secret(0)), func(g *generation) bool {
			return g.keys.refresh != nil && len(g.cfg.RefreshTokens.Secrets) == 2
		}},
		{"refresh_tokens.ttl", "refresh_tokens", fmt.Sprintf("{secrets: [{file: %q}], ttl: 1h}", f.secret(1)), func(g *generation) bool {
			return time.Duration(g.cfg.RefreshTokens.TTL) == time.Hour
		}},
		{"limits.max_scopes", "limits", "{max_scopes: 1, max_scope_length: 512, max_in_flight: 1024}", func(g *generation) bool {
			return requestToken(h, reloadService, "repository:a:pull", "repository:b:pull").status == http.StatusBadRequest
		}},
		{"limits.max_scope_length", "limits", "{max_scopes: 1, max_scope_length: 64, max_in_flight: 1024}", func(g *generation) bool {
			return requestToken(h, reloadService, "repository:"+strings.Repeat("a", 70)+":pull").status == http.StatusBadRequest
		}},
		{"limits.decision_workers", "limits", "{max_scopes: 1, max_scope_length: 64, max_in_flight: 1024, decision_workers: 3}", func(g *generation) bool {
			return s.gen.Load().cfg.Limits.DecisionWorkers == 3 && requestToken(h, reloadService, "repository:a:pull").status == http.StatusOK
		}},
		{"shutdown.grace_period", "shutdown", "{grace_period: 7s}", func(g *generation) bool {
			return time.Duration(s.gen.Load().cfg.Shutdown.GracePeriod) == 7*time.Second
		}},
		{"shutdown.drain_delay", "shutdown", "{grace_period: 7s, drain_delay: 2s}", func(g *generation) bool {
			return time.Duration(s.gen.Load().cfg.Shutdown.DrainDelay) == 2*time.Second
		}},
		{"trusted_proxies", "trusted_proxies", "[10.0.0.0/8]", nil},
		{"listen.addr", "listen", `{addr: "127.0.0.1:1"}`, nil},
		{"metrics.addr", "metrics", `{addr: "127.0.0.1:0"}`, nil},
		{"metrics.tls.cert_file", "", "", nil}, // a metrics listener is itself restart-only
		{"metrics.tls.key_file", "", "", nil},
		{"store.url", "store", `{url: "bolt:///nowhere/store.db"}`, nil},
		{"store.cache.ttl", "store", fmt.Sprintf("{url: {file: %q}, cache: {ttl: 2s}}", filepath.Join(f.dir, "store-url")), nil},
		{"store.cache.size", "store", fmt.Sprintf("{url: {file: %q}, cache: {size: 5}}", filepath.Join(f.dir, "store-url")), nil},
		{"store.cache.negative_ttl", "store", fmt.Sprintf("{url: {file: %q}, cache: {negative_ttl: 2s}}", filepath.Join(f.dir, "store-url")), nil},
		{"policy.builtin", "policy", "{builtin: false, opa: {decision_logs: {console: false}}}", nil},
		{"policy.dir", "policy", fmt.Sprintf("{dir: %q}", f.dir), nil},
		{"policy.bundle", "policy", fmt.Sprintf("{bundle: %q}", f.path), nil},
		{"policy.signing.key_file", "", "", nil}, // needs a dir or bundle: refused with policy.dir
		{"policy.signing.algorithm", "", "", nil},
		{"policy.signing.scope", "", "", nil},
		{"policy.opa", "policy", "{opa: {decision_logs: {console: false}}}", nil},
		{"policy.decision", "policy", "{decision: data.x.y}", nil},
		{"policy.admin_decision", "policy", "{admin_decision: data.x.y}", nil},
		{"policy.dry_run", "policy", "{dry_run: {builtin: true}}", nil},
		{"policy.decision_cache", "policy", "{decision_cache: 3MiB}", nil},
		{"policy.native", "policy", "{native: false}", nil},
		{"limits.max_in_flight", "limits", "{max_scopes: 1, max_scope_length: 64, max_in_flight: 3}", nil},
		{"limits.auth_failures", "limits", "{max_scopes: 1, max_scope_length: 64, max_in_flight: 1024, auth_failures: {address: {burst: 5}}}", nil},
		{"limits.keys_per_account", "limits", "{max_scopes: 1, max_scope_length: 64, max_in_flight: 1024, keys_per_account: 7}", nil},
		{"reload.watch", "reload", "{watch: true}", nil},
		{"console.enabled", "console", "{enabled: true}", nil},
		{"console.path", "console", "{path: /ui}", nil},
		{"console.registry", "console", "{registry: other.example.com}", nil},
		{"console.session_ttl", "console", "{session_ttl: 1h}", nil},
		{"console.secure_cookies", "console", "{secure_cookies: true}", nil},
		{"console.sessions_per_account", "console", "{sessions_per_account: 5}", nil},
		{"log.format", "log", "{format: text}", nil},
		{"log.level", "log", "{format: json, level: warn}", nil},
	}
	var listed []string
	for _, c := range changes {
		listed = append(listed, c.key)
	}
	for _, key := range configKeys(reflect.TypeOf(Config{}), "") {
		if !slices.ContainsFunc(listed, func(l string) bool { return key == l || strings.HasPrefix(key, l+".") }) {
			t.Errorf("configuration key %q is not in this test: does a reload change it?", key)
		}
	}
	for _, c := range changes {
		if c.line == "" {
			continue
		}
		t.Run(c.key, func(t *testing.T) {
			before, existed := f.lines[c.line]
			f.set(c.line, c.value)
			err := s.Reload("test")
			if c.applied == nil {
				if !errors.Is(err, ErrRestartNeeded) {
					t.Fatalf("changing %s: %v, want a refusal until a restart", c.key, err)
				}
				if existed {
					f.lines[c.line] = before
				} else {
					delete(f.lines, c.line)
					f.order = slices.DeleteFunc(f.order, func(k string) bool { return k == c.line })
				}
				f.write()
				return
			}
			if err != nil {
				t.Fatalf("changing %s: %v", c.key, err)
			}
			if !c.applied(s.gen.Load()) {
				t.Fatalf("%s changed, but the new generation does not show it", c.key)
			}
		})
	}
}

// sameCert reports whether the first certificate of a PEM file is der.
func sameCert(t *testing.T, certFile string, der []byte) bool {
	t.Helper()
	raw, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := tokens.ParseCertificatesPEM(raw)
	return err == nil && bytes.Equal(certs[0].Raw, der)
}

// verifiedByIssuer is verifiedBy with another issuer than generation i's.
func (f *fileSet) verifiedByIssuer(t *testing.T, token string, i int, issuer string) error {
	t.Helper()
	_, certFile := f.signingKey(i)
	raw, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := tokens.ParseCertificatesPEM(raw)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[0])
	tk, err := disttoken.NewToken(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return err
	}
	_, err = tk.Verify(disttoken.VerifyOptions{TrustedIssuers: []string{issuer}, AcceptedAudiences: []string{reloadService}, Roots: roots})
	return err
}

// TestReloadWhenFilesChange: with reload.watch, a key and certificate replaced by rename, a
// Kubernetes-style symlink swap of a mounted Secret, and a changed refresh secret each reload
// once; a broken key is refused once, not at every later event, and the fixed one reloads; a
// file written beside them that the configuration does not name reloads nothing.
func TestReloadWhenFilesChange(t *testing.T) {
	f := newFileSet(t)
	// The TLS files live in a folder laid out as Kubernetes mounts a Secret: tls.crt and tls.key
	// are links into ..data, itself a link to a timestamped folder swapped at every update.
	mount := filepath.Join(f.dir, "tls")
	swap := func(version string) {
		t.Helper()
		cert, key, _ := tlsFiles(t)
		dir := filepath.Join(mount, "..v"+version)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for src, name := range map[string]string{cert: "tls.crt", key: "tls.key"} {
			raw, _ := os.ReadFile(src)
			os.WriteFile(filepath.Join(dir, name), raw, 0o600)
		}
		os.Remove(filepath.Join(mount, "..data_tmp"))
		if err := os.Symlink("..v"+version, filepath.Join(mount, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(mount, "..data_tmp"), filepath.Join(mount, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	swap("1")
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(mount, name)); err != nil {
			t.Fatal(err)
		}
	}
	f.lines["listen"] = fmt.Sprintf("{addr: %q, tls: {cert_file: %q, key_file: %q}}", "127.0.0.1:0", filepath.Join(mount, "tls.crt"), filepath.Join(mount, "tls.key"))
	f.lines["reload"] = "{watch: true}"
	f.write()
	s, h, logs := f.start()
	s.settle = 100 * time.Millisecond
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.watchFiles(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("watchFiles: %v", err)
		}
	})
	time.Sleep(50 * time.Millisecond) // the watch is in place

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s; reloads %v/%v\n%v", what, reloadCount(s, "success"), reloadCount(s, "failure"), logs.Records("configuration reload refused; the running configuration keeps serving"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	quiet := func(what string) {
		t.Helper()
		ok, failed := reloadCount(s, "success"), reloadCount(s, "failure")
		time.Sleep(5 * s.settle)
		if reloadCount(s, "success") != ok || reloadCount(s, "failure") != failed {
			t.Fatalf("%s reloaded: %v/%v, was %v/%v", what, reloadCount(s, "success"), reloadCount(s, "failure"), ok, failed)
		}
	}

	// The signing key and its certificate, both replaced by rename, in place: one reload.
	key0, cert0 := f.signingKey(0)
	key1, cert1 := f.signingKey(1)
	for src, dst := range map[string]string{key1: key0, cert1: cert0} {
		raw, _ := os.ReadFile(src)
		f.writeFile(filepath.Base(dst), string(raw))
	}
	waitFor("a reload after the key changed", func() bool { return reloadCount(s, "success") == 1 })
	if r := requestToken(h, reloadService); f.verifiedByIssuer(t, r.token, 1, "gen-0") != nil {
		t.Fatalf("after the key changed on disk, a token not signed by it: %s", r.raw)
	}
	quiet("nothing changing")

	// A file beside them that the configuration does not name: the bolt store, say.
	f.writeFile("store.db-journal", "x")
	f.writeFile("notes.txt", "x")
	quiet("an unrelated file")

	// The same content written again: events, but nothing to reload.
	raw, _ := os.ReadFile(cert0)
	f.writeFile(filepath.Base(cert0), string(raw))
	quiet("the same content")

	// A broken key: refused once, and not again while it stays as it is.
	f.writeFile(filepath.Base(key0), "not a key")
	waitFor("the broken key refused", func() bool { return reloadCount(s, "failure") == 1 })
	f.writeFile("notes.txt", "y")
	f.writeFile(filepath.Base(cert0), string(raw))
	quiet("the broken key, still broken")
	// Fixed with another key: the same key as before would be the serving state again, with
	// nothing to reload.
	key2, cert2 := f.signingKey(2)
	for src, dst := range map[string]string{key2: key0, cert2: cert0} {
		raw, _ := os.ReadFile(src)
		f.writeFile(filepath.Base(dst), string(raw))
	}
	waitFor("the fixed key reloaded", func() bool { return reloadCount(s, "success") == 2 })

	// The mounted Secret updated: ..data swapped to a new folder.
	before, _ := s.certificate("token")(nil)
	swap("2")
	waitFor("the swapped certificate reloaded", func() bool { return reloadCount(s, "success") == 3 })
	after, _ := s.certificate("token")(nil)
	if bytes.Equal(before.Certificate[0], after.Certificate[0]) || !sameCert(t, filepath.Join(mount, "tls.crt"), after.Certificate[0]) {
		t.Fatal("the listener does not hand out the certificate now in the mounted folder")
	}

	// The configuration file names a new refresh secret file, in a new folder: it reloads,
	// and that folder is watched from then on.
	other := t.TempDir()
	secret := filepath.Join(other, "refresh")
	os.WriteFile(secret, []byte(strings.Repeat("z", 40)), 0o600)
	f.set("refresh_tokens", fmt.Sprintf("{secrets: [{file: %q}]}", secret))
	waitFor("the new configuration reloaded", func() bool { return reloadCount(s, "success") == 4 })
	os.WriteFile(secret+".tmp", []byte(strings.Repeat("y", 40)), 0o600)
	os.Rename(secret+".tmp", secret)
	waitFor("the new secret file reloaded", func() bool { return reloadCount(s, "success") == 5 })
	for _, rec := range logs.Records("configuration reloaded") {
		if rec["trigger"] != "file change" {
			t.Fatalf("reload log line: %v", rec)
		}
	}
	if reloadCount(s, "failure") != 1 {
		t.Fatalf("%v refused reloads, want the one broken key", reloadCount(s, "failure"))
	}
}

func TestReloadWithoutConfigFile(t *testing.T) {
	s := newServer(t, testConfig(t))
	if err := s.Reload("test"); !errors.Is(err, ErrNoConfigFile) {
		t.Fatalf("Reload without a file: %v", err)
	}
}
