package authz_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	disttoken "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/internal/testenv"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
	"github.com/regoauth/regoauth/tokens"
)

const service = "registry.example.com"

var ctx = context.Background()

// env is a token endpoint over the package-test fixture (an in-memory store and the built-in
// policy), with a real signer and refresh codec.
type env struct {
	*testenv.Env
	t       testing.TB
	key     *tokens.Key
	signer  *tokens.Signer
	refresh *tokens.RefreshCodec
	handler *authz.Handler
	keys    map[string]string // account -> plaintext API key
	now     time.Time
	logs    *bytes.Buffer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	priv, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	cert, _ := tokens.SelfSignedCertificate(priv, "test", time.Now().Add(-time.Hour), 24*time.Hour)
	key, err := tokens.NewKey(priv, []*x509.Certificate{cert}, tokens.KIDThumbprint)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{Env: testenv.New(t), t: t, key: key, keys: map[string]string{}, now: time.Now(), logs: &bytes.Buffer{}}
	if e.signer, err = tokens.NewSigner(key, tokens.SignerOptions{Issuer: "regoauth", TTL: 5 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	e.refresh, err = tokens.NewRefreshCodec([][]byte{[]byte("0123456789abcdef0123456789abcdef")}, 30*24*time.Hour, func() time.Time { return e.now })
	if err != nil {
		t.Fatal(err)
	}
	e.handler = e.newHandler(authz.Deps{Refresh: e.refresh}, authz.Options{
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil)),
		Now:    func() time.Time { return e.now },
	})
	// The story of the core issue: user1 may pull image and push/pull image2.
	e.account("user1")
	e.account("user2")
	e.Grant("user1", "image", "pull")
	e.Grant("user1", "image2", "push", "pull")
	return e
}

// newHandler is a token endpoint over the env's store, engine and signer, where deps and opts
// leave them out.
func (e *env) newHandler(deps authz.Deps, opts authz.Options) *authz.Handler {
	e.t.Helper()
	if deps.Directory == nil {
		deps.Directory = e.Store
	}
	if deps.Decider == nil {
		deps.Decider = e.Engine
	}
	if deps.Issuer == nil {
		deps.Issuer = e.signer
	}
	if opts.Services == nil {
		opts.Services = []string{service, "other.example.com"}
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	h, err := authz.New(deps, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// account creates an account with one API key, kept in e.keys.
func (e *env) account(name string, groups ...string) {
	e.t.Helper()
	e.Account(name, groups...)
	e.keys[name] = e.Key(name, nil)
}

type result struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) do(r *http.Request) result {
	e.t.Helper()
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, r)
	res := result{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("Content-Type = %q, body %q", ct, res.raw)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &res.body); err != nil {
		e.t.Fatalf("body is not JSON: %q", res.raw)
	}
	return res
}

func (e *env) get(query string, user, pass string) result {
	e.t.Helper()
	r := httptest.NewRequest("GET", "/token?"+query, nil)
	if user != "" || pass != "" {
		r.SetBasicAuth(user, pass)
	}
	return e.do(r)
}

func (e *env) post(form url.Values) result {
	e.t.Helper()
	r := httptest.NewRequest("POST", "/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(r)
}

// access verifies the token with distribution's own verifier and returns its access claim.
func (e *env) access(res result) []tokens.Access {
	e.t.Helper()
	if res.status != http.StatusOK {
		e.t.Fatalf("status %d: %s", res.status, res.raw)
	}
	raw, _ := res.body["token"].(string)
	if raw == "" || res.body["access_token"] != raw {
		e.t.Fatalf("token and access_token differ or are empty: %s", res.raw)
	}
	tk, err := disttoken.NewToken(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		e.t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.key.Chain[0])
	claims, err := tk.Verify(disttoken.VerifyOptions{TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{service}, Roots: roots})
	if err != nil {
		e.t.Fatalf("distribution rejected the token: %v", err)
	}
	out := []tokens.Access{}
	for _, a := range claims.Access {
		out = append(out, tokens.Access{Type: a.Type, Class: a.Class, Name: a.Name, Actions: a.Actions})
	}
	return out
}

func access(name string, actions ...string) tokens.Access {
	if actions == nil {
		actions = []string{}
	}
	return tokens.Access{Type: "repository", Name: name, Actions: actions}
}

func q(scopes ...string) string {
	v := url.Values{"service": {service}}
	for _, s := range scopes {
		v.Add("scope", s)
	}
	return v.Encode()
}

func wantAccess(t *testing.T, got []tokens.Access, want ...tokens.Access) {
	t.Helper()
	if want == nil {
		want = []tokens.Access{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("access\n got %+v\nwant %+v", got, want)
	}
}

func TestStoryIntersection(t *testing.T) {
	e := newEnv(t)
	res := e.get(q("repository:image:push,pull"), "user1", e.keys["user1"])
	wantAccess(t, e.access(res), access("image", "pull"))
	wantAccess(t, e.access(e.get(q("repository:image2:push,pull"), "user1", e.keys["user1"])), access("image2", "pull", "push"))
	wantAccess(t, e.access(e.get(q("repository:image2:pull"), "user2", e.keys["user2"])), access("image2"))

	// The purchase: a new grant takes effect on the next request.
	e.Grant("user2", "image2", "pull")
	wantAccess(t, e.access(e.get(q("repository:image2:pull"), "user2", e.keys["user2"])), access("image2", "pull"))
}

func TestResponseShape(t *testing.T) {
	e := newEnv(t)
	res := e.get(q("repository:image:pull"), "user1", e.keys["user1"])
	e.access(res)
	if res.body["expires_in"] != float64(300) {
		t.Fatalf("expires_in = %v", res.body["expires_in"])
	}
	issued, err := time.Parse(time.RFC3339, res.body["issued_at"].(string))
	if err != nil || issued.Location() != time.UTC || time.Since(issued) > time.Minute {
		t.Fatalf("issued_at = %v (%v)", res.body["issued_at"], err)
	}
	if _, ok := res.body["refresh_token"]; ok {
		t.Fatal("refresh_token sent without being asked for")
	}
	if res.header.Get("Cache-Control") != "no-store" || res.header.Get("Regoauth-Decision-Id") == "" {
		t.Fatalf("headers = %v", res.header)
	}
	if len(res.raw) > 64<<10 {
		t.Fatalf("body is %d bytes", len(res.raw))
	}
}

func TestLoginProbeWithoutScope(t *testing.T) {
	e := newEnv(t)
	res := e.get("account=user1&client_id=docker&offline_token=false&service="+service, "user1", e.keys["user1"])
	wantAccess(t, e.access(res))
}

func TestAnonymous(t *testing.T) {
	e := newEnv(t)
	wantAccess(t, e.access(e.get(q("repository:image:pull"), "", "")), access("image"))
}

func TestBadCredentials(t *testing.T) {
	e := newEnv(t)
	revoked := e.Key("user1", nil)
	id, _ := keystore.ParseAPIKey(revoked)
	if err := e.Store.RevokeKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	expired := e.Key("user1", func(k *keystore.Key) { k.Expires = e.now.Add(-time.Second) })
	if err := e.Store.CreateAccount(ctx, keystore.Account{Name: "gone", Disabled: true}); err != nil {
		t.Fatal(err)
	}
	disabled := e.Key("gone", nil)
	other, _, _, _ := keystore.NewAPIKey(rand.Reader)

	tests := []struct {
		name       string
		user, pass string
		header     string
	}{
		{name: "wrong key", user: "user1", pass: other},
		{name: "password that is not a key", user: "user1", pass: "hunter2"},
		{name: "empty password", user: "user1", header: "Basic " + b64("user1:")},
		{name: "empty user", header: "Basic " + b64(":"+e.keys["user1"])},
		{name: "another account's key", user: "user2", pass: e.keys["user1"]},
		{name: "revoked key", user: "user1", pass: revoked},
		{name: "expired key", user: "user1", pass: expired},
		{name: "disabled account", user: "gone", pass: disabled},
		{name: "bearer instead of basic", header: "Bearer " + e.keys["user1"]},
		{name: "garbage basic", header: "Basic !!!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/token?"+q("repository:image:pull"), nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			} else {
				r.SetBasicAuth(tt.user, tt.pass)
			}
			res := e.do(r)
			if res.status != http.StatusUnauthorized {
				t.Fatalf("status = %d, body %s", res.status, res.raw)
			}
			if _, ok := res.body["token"]; ok {
				t.Fatal("a token came with a 401")
			}
			errs, _ := res.body["errors"].([]any)
			if len(errs) != 1 || errs[0].(map[string]any)["code"] != "UNAUTHORIZED" || res.body["details"] == "" {
				t.Fatalf("body = %s", res.raw)
			}
		})
	}
	if strings.Contains(e.logs.String(), e.keys["user1"]) || strings.Contains(e.logs.String(), other) || strings.Contains(e.logs.String(), "hunter2") {
		t.Fatal("a secret reached the log")
	}
}

func b64(s string) string {
	r := httptest.NewRequest("GET", "/", nil)
	r.SetBasicAuth(strings.Split(s, ":")[0], strings.SplitN(s, ":", 2)[1])
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestScopeForms(t *testing.T) {
	e := newEnv(t)
	e.Grant("user1", "localhost:5000/a/b", "pull")
	user, key := "user1", e.keys["user1"]

	// Repeated and space-separated scopes, a cross-repository mount (the denied source does not
	// reduce the target), merged duplicates, host:port names and an unknown type.
	got := e.access(e.get(q("repository:image2:push,pull repository:nope:pull", "repository:image2:pull,push", "tenant:x:pull",
		"repository:localhost:5000/a/b:pull"), user, key))
	wantAccess(t, got, access("image2", "pull", "push"), access("nope"), access("localhost:5000/a/b", "pull"))

	// Plugin class.
	got = e.access(e.get(q("repository(plugin):image:pull"), user, key))
	wantAccess(t, got, tokens.Access{Type: "repository", Class: "plugin", Name: "image", Actions: []string{"pull"}})

	// A non-admin never gets the catalog, and "*" on a repository yields only what is held.
	got = e.access(e.get(q("registry:catalog:*", "repository:image2:*"), user, key))
	wantAccess(t, got, tokens.Access{Type: "registry", Name: "catalog", Actions: []string{}}, access("image2", "pull", "push"))
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	key := e.keys["user1"]
	tooMany := url.Values{"service": {service}, "scope": {strings.Repeat("repository:a:pull ", 33)}}
	for name, tt := range map[string]struct {
		r      *http.Request
		status int
	}{
		"too many scopes":         {httptest.NewRequest("GET", "/token?"+tooMany.Encode(), nil), 400},
		"unknown service":         {httptest.NewRequest("GET", "/token?service=evil.example.com&scope=repository:image:pull", nil), 400},
		"PUT":                     {httptest.NewRequest("PUT", "/token", nil), 405},
		"POST without grant_type": {formRequest(url.Values{"service": {service}}), 400},
		"POST unsupported grant":  {formRequest(url.Values{"grant_type": {"client_credentials"}, "service": {service}}), 400},
		"POST too large":          {formRequest(url.Values{"grant_type": {"password"}, "pad": {strings.Repeat("x", authz.MaxFormBytes)}}), 413},
		"POST bad form":           {httptest.NewRequest("POST", "/token", strings.NewReader("%zz")), 400},
	} {
		t.Run(name, func(t *testing.T) {
			tt.r.SetBasicAuth("user1", key)
			if tt.r.Method == "POST" && tt.r.Header.Get("Content-Type") == "" {
				tt.r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			res := e.do(tt.r)
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", res.status, tt.status, res.raw)
			}
			if _, ok := res.body["token"]; ok {
				t.Fatal("token issued")
			}
			if res.body["error"] == "" || res.body["errors"] == nil {
				t.Fatalf("error body = %s", res.raw)
			}
		})
	}
}

func formRequest(v url.Values) *http.Request {
	r := httptest.NewRequest("POST", "/token", strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func TestPOSTPasswordGrant(t *testing.T) {
	e := newEnv(t)
	res := e.post(url.Values{
		"grant_type": {"password"}, "username": {"user1"}, "password": {e.keys["user1"]},
		"service": {service}, "client_id": {"containerd-client"},
		"scope": {"repository:image:pull,push repository:image2:pull"},
	})
	wantAccess(t, e.access(res), access("image", "pull"), access("image2", "pull"))
	if res.body["scope"] != "repository:image:pull repository:image2:pull" {
		t.Fatalf("scope = %q", res.body["scope"])
	}
	res = e.post(url.Values{"grant_type": {"password"}, "username": {"user1"}, "password": {"nope"}, "service": {service}})
	if res.status != http.StatusUnauthorized {
		t.Fatalf("bad password: %d", res.status)
	}
}

func TestOtherServiceIsItsOwnAudience(t *testing.T) {
	e := newEnv(t)
	res := e.get("service=other.example.com&scope=repository:image:pull", "user1", e.keys["user1"])
	if res.status != 200 {
		t.Fatal(res.raw)
	}
	tk, _ := disttoken.NewToken(res.body["token"].(string), []jose.SignatureAlgorithm{jose.ES256})
	roots := x509.NewCertPool()
	roots.AddCert(e.key.Chain[0])
	if _, err := tk.Verify(disttoken.VerifyOptions{TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{service}, Roots: roots}); err == nil {
		t.Fatal("a token for other.example.com verified at registry.example.com")
	}
}

// A policy that tries to grant more than was asked still yields only the intersection.
func TestServerIntersectsGreedyPolicy(t *testing.T) {
	e := newEnv(t)
	greedy := `package regoauth.authz
decision := {"access": [
	{"type": "repository", "name": "image", "actions": ["pull", "push", "delete", "*"]},
	{"type": "repository", "name": "secret", "actions": ["pull"]},
]}`
	if err := e.Engine.LoadFS(ctx, fstest.MapFS{"p.rego": {Data: []byte(greedy)}}, "greedy"); err != nil {
		t.Fatal(err)
	}
	wantAccess(t, e.access(e.get(q("repository:image:pull"), "user2", e.keys["user2"])), access("image", "pull"))
}

type failingDirectory struct{}

func (failingDirectory) LoadPrincipal(context.Context, string) (keystore.Principal, error) {
	return keystore.Principal{}, fmt.Errorf("dial tcp: %w", keystore.ErrUnavailable)
}

type failingDecider struct{}

func (failingDecider) Decide(context.Context, *policy.Input) (policy.Decision, error) {
	return policy.Decision{}, errors.New("evaluation failed")
}

func TestFailClosed(t *testing.T) {
	e := newEnv(t)
	for name, h := range map[string]func() (*authz.Handler, error){
		"store down": func() (*authz.Handler, error) {
			return e.newHandler(authz.Deps{Directory: failingDirectory{}}, authz.Options{}), nil
		},
		"policy error": func() (*authz.Handler, error) {
			return e.newHandler(authz.Deps{Decider: failingDecider{}}, authz.Options{}), nil
		},
		"no policy ready": func() (*authz.Handler, error) {
			return e.newHandler(authz.Deps{Decider: policy.New(policy.Options{})}, authz.Options{}), nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			h, err := h()
			if err != nil {
				t.Fatal(err)
			}
			e.handler = h
			res := e.get(q("repository:image:pull"), "user1", e.keys["user1"])
			if res.status != http.StatusServiceUnavailable {
				t.Fatalf("status = %d: %s", res.status, res.raw)
			}
			if _, ok := res.body["token"]; ok {
				t.Fatal("token issued while failing")
			}
		})
	}
}

func TestAuditLogOnePerRequest(t *testing.T) {
	e := newEnv(t)
	e.get(q("repository:image:push,pull"), "user1", e.keys["user1"])
	lines := strings.Split(strings.TrimSpace(e.logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d log lines", len(lines))
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatal(err)
	}
	id, _ := keystore.ParseAPIKey(e.keys["user1"])
	if ev["account"] != "user1" || ev["key_id"] != id || ev["granted"] != "repository:image:pull" ||
		ev["requested"] != "repository:image:pull,push" || ev["decision_id"] == "" || ev["outcome"] != "issued" {
		t.Fatalf("audit event = %v", ev)
	}
}

func TestIntersect(t *testing.T) {
	repo := func(name string, actions ...string) policy.Scope {
		return policy.Scope{Type: "repository", Name: name, Actions: actions}
	}
	requested := []policy.Scope{repo("a", "pull", "push"), repo("b", "pull"), {Type: "registry", Name: "catalog", Actions: []string{"*"}}}
	d := policy.Decision{Access: []policy.Scope{
		repo("a", "pull", "delete", "*"), // delete and * were not requested
		repo("c", "pull"),                // c was not requested at all
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
	}}
	got := authz.Intersect(requested, d)
	want := []policy.Scope{repo("a", "pull"), repo("b"), {Type: "registry", Name: "catalog", Actions: []string{"*"}}}
	want[1].Actions = []string{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Intersect\n got %+v\nwant %+v", got, want)
	}
}

// TestHandlersShareMetrics: a handler built again on the same registry, as a server does when it
// reloads its configuration, counts on in the series of the one before instead of failing.
func TestHandlersShareMetrics(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	first := e.newHandler(authz.Deps{}, authz.Options{Registerer: reg})
	second := e.newHandler(authz.Deps{}, authz.Options{Registerer: reg})
	for _, h := range []*authz.Handler{first, second, second} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/token?"+q("repository:image:pull"), nil))
		if w.Code != http.StatusOK {
			t.Fatalf("anonymous request: %d %s", w.Code, w.Body)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var issued float64
	for _, f := range families {
		if f.GetName() != "regoauth_token_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			issued += m.GetCounter().GetValue()
		}
	}
	if issued != 3 {
		t.Fatalf("regoauth_token_requests_total = %v over two handlers, want 3", issued)
	}
}

// recordingDecider keeps the last input it was asked about.
type recordingDecider struct {
	inner authz.Decider
	last  *policy.Input
}

func (r *recordingDecider) Decide(ctx context.Context, in *policy.Input) (policy.Decision, error) {
	r.last = in
	return r.inner.Decide(ctx, in)
}

// A client chooses its client_id and User-Agent: both are cut to a bounded length before they
// reach the audit log, the policy input and with it the decision cache's key.
func TestClientFieldsAreBounded(t *testing.T) {
	e := newEnv(t)
	rec := &recordingDecider{inner: e.Engine}
	e.handler = e.newHandler(authz.Deps{Decider: rec}, authz.Options{Logger: slog.New(slog.NewJSONHandler(e.logs, nil))})
	long := strings.Repeat("x", 8000)
	const limit = 256 + len("…")
	for _, send := range []func() result{
		func() result {
			r := httptest.NewRequest("GET", "/token?"+q("repository:image:pull")+"&client_id="+long, nil)
			r.SetBasicAuth("user1", e.keys["user1"])
			r.Header.Set("User-Agent", long)
			return e.do(r)
		},
		func() result {
			return e.post(url.Values{"grant_type": {"password"}, "username": {"user1"}, "password": {e.keys["user1"]},
				"service": {service}, "scope": {"repository:image:pull"}, "client_id": {long}})
		},
	} {
		e.logs.Reset()
		if res := send(); res.status != http.StatusOK {
			t.Fatalf("status %d: %s", res.status, res.raw)
		}
		if n := len(rec.last.Client.ID); n > limit || n == 0 {
			t.Fatalf("client id of %d bytes reached the policy", n)
		}
		if n := len(rec.last.Client.UserAgent); n > limit {
			t.Fatalf("user agent of %d bytes reached the policy", n)
		}
		var ev map[string]any
		if err := json.Unmarshal(e.logs.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		if id, _ := ev["client_id"].(string); len(id) > limit || id == "" {
			t.Fatalf("client_id of %d bytes in the audit log", len(id))
		}
	}
}
