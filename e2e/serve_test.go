package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/tokens"
)

const serveService = "registry.example.com"

// serveStack is a running `regoauth serve` over a bolt store the test filled beforehand.
type serveStack struct {
	Addr   string
	Dir    string
	Keys   map[string]string // account -> API key
	KeyIDs map[string]string
	stderr *syncBuffer
	proc   *process
}

// account is one account the stack's store starts with.
type account struct {
	name         string
	groups       []string
	roles        []string
	restrictions keystore.Restrictions
}

// seedStore writes accounts with one key each, grants and reservations into a new bolt store.
func seedStore(t *testing.T, path string, accounts []account, grants []keystore.Grant, owned map[string]string) (keys, ids map[string]string) {
	t.Helper()
	store, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	keys, ids = map[string]string{}, map[string]string{}
	for _, a := range accounts {
		if err := store.CreateAccount(ctx, keystore.Account{Name: a.name, Groups: a.groups, Roles: a.roles, Created: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
		plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k := keystore.Key{ID: id, Account: a.name, Name: "laptop", Hash: hash, Created: time.Now().UTC(), Restrictions: a.restrictions}
		if err := store.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		keys[a.name], ids[a.name] = plain, id
	}
	for _, g := range grants {
		if err := store.PutGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	for repo, owner := range owned {
		if err := store.Reserve(ctx, keystore.Ownership{Repository: repo, Owner: owner, Created: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	return keys, ids
}

func grantOf(subject, repo string, actions ...string) keystore.Grant {
	kind, name, _ := strings.Cut(subject, ":")
	return keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectKind(kind), Name: name}, Repository: repo, Actions: actions}
}

// startServe writes a configuration with policyYAML as its policy section and runs `regoauth
// serve`. When waitReady is false it only waits for the listener.
func startPolicyServe(t *testing.T, dir string, keys, ids map[string]string, policyYAML string, waitReady bool) *serveStack {
	t.Helper()
	keyPath, certPath := filepath.Join(dir, "signing-key.pem"), filepath.Join(dir, "signing-cert.pem")
	if _, err := secretfile.EnsureSigningKey(keyPath, certPath, jose.ES256, "regoauth-e2e", time.Now()); err != nil {
		t.Fatal(err)
	}
	s := &serveStack{Addr: freeAddr(t), Dir: dir, Keys: keys, KeyIDs: ids}
	cfg := fmt.Sprintf(`issuer: regoauth-e2e
services: [%s]
listen: {addr: %q}
signing: {key_file: %q, cert_file: %q}
store: {url: "bolt://%s"}
log: {format: json, level: info}
policy:
%s
`, serveService, s.Addr, keyPath, certPath, filepath.Join(dir, "store.db"), indent(policyYAML))
	cfgPath := filepath.Join(dir, "regoauth.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.proc = startProcess(t, "regoauth serve", binary, "serve", "--config", cfgPath)
	s.stderr = s.proc.out
	s.proc.waitFor(t, "readiness", func() bool {
		code := s.readyzCode()
		return code == http.StatusOK || (!waitReady && code != 0)
	})
	return s
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return strings.Join(lines, "\n")
}

func (s *serveStack) readyzCode() int {
	resp, err := http.Get("http://" + s.Addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// readyz returns /readyz's body.
func (s *serveStack) readyz(t *testing.T) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// bundleError is the error /readyz shows for bundle name ("" when its newest load succeeded).
func (s *serveStack) bundleStatus(t *testing.T, name string) (errText, lastAttempt string) {
	_, body := s.readyz(t)
	st, _ := body["policy_status"].(map[string]any)
	bundles, _ := st["bundles"].([]any)
	for _, b := range bundles {
		m, _ := b.(map[string]any)
		if m["name"] == name {
			e, _ := m["error"].(string)
			a, _ := m["last_attempt"].(string)
			return e, a
		}
	}
	t.Fatalf("/readyz has no bundle %s: %v", name, body)
	return "", ""
}

func (s *serveStack) metric(t *testing.T, line string) bool {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(raw), line)
}

// tokenResult is one token request's outcome.
type tokenResult struct {
	status     int
	access     map[string][]string
	decisionID string
	err        error
}

// token asks for a token with the client's headers and returns the access it carries.
func (s *serveStack) token(client *http.Client, user string, scopes ...string) tokenResult {
	q := url.Values{"service": {serveService}, "scope": scopes, "client_id": {"docker"}}
	req, _ := http.NewRequest("GET", "http://"+s.Addr+"/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, s.Keys[user])
	req.Header.Set("User-Agent", "docker/28.2.2 go/go1.24.3")
	resp, err := client.Do(req)
	if err != nil {
		return tokenResult{err: err}
	}
	defer resp.Body.Close()
	res := tokenResult{status: resp.StatusCode, decisionID: resp.Header.Get("Regoauth-Decision-Id")}
	var body struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK {
		return res
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		res.err = err
		return res
	}
	parts := strings.Split(body.Token, ".")
	if len(parts) != 3 {
		res.err = fmt.Errorf("token %q is not a JWS", body.Token)
		return res
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		res.err = err
		return res
	}
	var claims struct {
		Access []tokens.Access `json:"access"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		res.err = err
		return res
	}
	res.access = map[string][]string{}
	for _, a := range claims.Access {
		res.access[a.Type+":"+a.Name] = a.Actions
	}
	return res
}

// rsaSigningKey writes a private key for `opa build --signing-key` and its public key for
// regoauth's policy.signing.key_file.
func rsaSigningKey(t *testing.T, dir string) (priv, pub string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, "bundle-signing.pem"), filepath.Join(dir, "bundle-signing.pub.pem")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	return priv, pub
}

// configBundle builds, with opa, a bundle that configures the built-in library: data only,
// roots regoauth/config, revision rev.
func configBundle(t *testing.T, opa, dir, rev, config string, buildArgs ...string) string {
	t.Helper()
	return configBundleRoots(t, opa, dir, rev, `["regoauth/config"]`, config, buildArgs...)
}

func configBundleRoots(t *testing.T, opa, dir, rev, roots, config string, buildArgs ...string) string {
	t.Helper()
	src := filepath.Join(dir, "src-"+rev)
	files := map[string]string{
		".manifest": fmt.Sprintf(`{"revision": %q, "roots": %s}`, rev, roots),
		"data.json": fmt.Sprintf(`{"regoauth": {"config": %s}}`, config),
	}
	for name, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755)
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, rev+".tar.gz")
	args := append([]string{"build", "-b", src, "-o", out}, buildArgs...)
	if res := run(t, nil, opa, args...); res.code != 0 {
		t.Fatalf("opa build: %s", res.out)
	}
	return out
}

// installFile puts src at dst by rename, as a deploy should replace a bundle.
func installFile(t *testing.T, src, dst string) {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst+".tmp", raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		t.Fatal(err)
	}
}

// load runs token requests from workers goroutines until stop is closed and returns every
// result.
func load(s *serveStack, workers int, user string, scopes []string, stop <-chan struct{}) func() []tokenResult {
	var mu sync.Mutex
	var all []tokenResult
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := s.token(client, user, scopes...)
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
			}
		}()
	}
	return func() []tokenResult {
		wg.Wait()
		return all
	}
}

// checkLoad requires every result to be a token carrying one of the allowed accesses.
func checkLoad(t *testing.T, results []tokenResult, min int, allowed ...map[string][]string) {
	t.Helper()
	if len(results) < min {
		t.Fatalf("only %d token requests ran, want at least %d", len(results), min)
	}
	failed := 0
	seen := map[string]int{}
	for _, r := range results {
		if r.err != nil || r.status != http.StatusOK {
			failed++
			if failed <= 3 {
				t.Errorf("token request failed: HTTP %d %v", r.status, r.err)
			}
			continue
		}
		key := fmt.Sprint(r.access)
		seen[key]++
		ok := false
		for _, a := range allowed {
			ok = ok || fmt.Sprint(a) == key
		}
		if !ok {
			t.Errorf("a token carried %v, which no active revision grants", r.access)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d token requests failed during the swaps", failed, len(results))
	}
	t.Logf("%d token requests, 0 failures; tokens by access: %v", len(results), seen)
}

// TestServeHotReloadsSignedBundleUnderLoad: regoauth serve with a signed local bundle that
// configures the library. While token requests run without pause, the bundle file is replaced
// by new signed revisions (each takes effect), and by unsigned, tampered and broken ones (each
// is refused, shown in /readyz and the metrics, and the previous revision keeps deciding). Not
// one request fails.
func TestServeHotReloadsSignedBundleUnderLoad(t *testing.T) {
	opa := tool(t, "opa")
	dir := t.TempDir()
	priv, pub := rsaSigningKey(t, dir)
	otherPriv, _ := rsaSigningKey(t, t.TempDir())
	keys, ids := seedStore(t, filepath.Join(dir, "store.db"), []account{{name: "user1"}},
		[]keystore.Grant{grantOf("account:user1", "image", "pull", "push")}, nil)
	signed := []string{"--signing-key", priv, "--signing-alg", "RS256"}
	open := `{"deny": []}`
	closed := `{"deny": [{"repositories": ["image"], "actions": ["push"], "reason": "frozen"}]}`
	live := filepath.Join(dir, "policy.tar.gz")
	installFile(t, configBundle(t, opa, dir, "v1", open, signed...), live)
	s := startPolicyServe(t, dir, keys, ids, fmt.Sprintf("bundle: %s\nsigning: {key_file: %s, algorithm: RS256}\n", live, pub), true)

	pullPush := map[string][]string{"repository:image": {"pull", "push"}}
	pullOnly := map[string][]string{"repository:image": {"pull"}}
	client := &http.Client{Timeout: 10 * time.Second}
	if r := s.token(client, "user1", "repository:image:push,pull"); fmt.Sprint(r.access) != fmt.Sprint(pullPush) {
		t.Fatalf("before any change: %+v", r)
	}
	stop := make(chan struct{})
	results := load(s, 4, "user1", []string{"repository:image:push,pull"}, stop)

	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				results()
				t.Fatalf("%s did not happen within 15s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	grants := func(want map[string][]string) func() bool {
		return func() bool {
			return fmt.Sprint(s.token(client, "user1", "repository:image:push,pull").access) == fmt.Sprint(want)
		}
	}
	refused := func(file string) {
		t.Helper()
		_, before := s.bundleStatus(t, "policy")
		installFile(t, file, live)
		until("the refusal of "+filepath.Base(file), func() bool {
			errText, attempt := s.bundleStatus(t, "policy")
			return attempt != before && errText != ""
		})
	}

	installFile(t, configBundle(t, opa, dir, "v2", closed, signed...), live)
	until("revision v2 (push denied)", grants(pullOnly))

	refused(configBundle(t, opa, dir, "v3-unsigned", open))
	if !grants(pullOnly)() {
		t.Fatal("an unsigned bundle changed the decisions")
	}
	if !s.metric(t, `regoauth_policy_bundle_failing{bundle="policy"} 1`) {
		t.Error("/metrics does not show the failing bundle")
	}
	refused(configBundle(t, opa, dir, "v4-other-key", open, "--signing-key", otherPriv, "--signing-alg", "RS256"))
	// Well signed, but it claims the library's roots: activation fails beside the library.
	refused(configBundleRoots(t, opa, dir, "v5-overlapping", `["regoauth"]`, open, signed...))
	if !grants(pullOnly)() {
		t.Fatal("a refused bundle changed the decisions")
	}

	installFile(t, configBundle(t, opa, dir, "v6", open, signed...), live)
	until("revision v6 (push allowed again)", grants(pullPush))
	time.Sleep(300 * time.Millisecond)
	close(stop)
	checkLoad(t, results(), 50, pullPush, pullOnly)

	code, body := s.readyz(t)
	if errText, _ := s.bundleStatus(t, "policy"); code != http.StatusOK || body["policy"] != "builtin,policy@v6" || errText != "" {
		t.Fatalf("/readyz after recovery: %d %v", code, body)
	}
	if !s.metric(t, `regoauth_policy_bundle_failing{bundle="policy"} 0`) {
		t.Error("/metrics still shows the bundle failing")
	}
}

// TestServeFollowsBundleServer: the policy comes from a bundle server through OPA's own
// configuration (services, bundles with polling, keys, signing). /readyz is not ready and
// tokens are refused (503) until the first bundle is active; then the server's changes are
// followed under load, a bundle the key did not sign is refused, and no request fails.
func TestServeFollowsBundleServer(t *testing.T) {
	opa := tool(t, "opa")
	dir := t.TempDir()
	priv, pub := rsaSigningKey(t, dir)
	keys, ids := seedStore(t, filepath.Join(dir, "store.db"), []account{{name: "user1"}},
		[]keystore.Grant{grantOf("account:user1", "image", "pull", "push")}, nil)
	signed := []string{"--signing-key", priv, "--signing-alg", "RS256"}
	var served sync.Map
	srv := newBundleHTTPServer(t, &served)
	pubJSON, _ := json.Marshal(string(mustRead(t, pub)))
	opaConfig := filepath.Join(dir, "opa.yaml")
	os.WriteFile(opaConfig, []byte(fmt.Sprintf(`services:
  acme:
    url: %s
bundles:
  authz:
    service: acme
    resource: bundles/regoauth.tar.gz
    polling: {min_delay_seconds: 1, max_delay_seconds: 1}
    signing: {keyid: release}
keys:
  release:
    algorithm: RS256
    key: %s
`, srv, pubJSON)), 0o600)
	s := startPolicyServe(t, dir, keys, ids, "opa: "+opaConfig+"\n", false)

	code, body := s.readyz(t)
	if code != http.StatusServiceUnavailable || body["policy"] != "none active" {
		t.Fatalf("/readyz before the first bundle: %d %v", code, body)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if r := s.token(client, "user1", "repository:image:pull"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("a token request before any policy: HTTP %d", r.status)
	}

	served.Store("bundle", mustRead(t, configBundle(t, opa, dir, "r1", `{"deny": []}`, signed...)))
	eventuallyTrue(t, 15*time.Second, "readiness", func() bool { return s.readyzCode() == http.StatusOK })

	pullPush := map[string][]string{"repository:image": {"pull", "push"}}
	pullOnly := map[string][]string{"repository:image": {"pull"}}
	stop := make(chan struct{})
	results := load(s, 4, "user1", []string{"repository:image:push,pull"}, stop)
	grants := func(want map[string][]string) func() bool {
		return func() bool {
			return fmt.Sprint(s.token(client, "user1", "repository:image:push,pull").access) == fmt.Sprint(want)
		}
	}
	served.Store("bundle", mustRead(t, configBundle(t, opa, dir, "r2", `{"deny": [{"repositories": ["image"], "actions": ["push"]}]}`, signed...)))
	eventuallyTrue(t, 15*time.Second, "revision r2 from the server", grants(pullOnly))

	served.Store("bundle", mustRead(t, configBundle(t, opa, dir, "r3-unsigned", `{"deny": []}`)))
	eventuallyTrue(t, 15*time.Second, "the refusal of an unsigned bundle", func() bool {
		errText, _ := s.bundleStatus(t, "authz")
		return errText != ""
	})
	if !grants(pullOnly)() {
		t.Fatal("an unsigned bundle from the server changed the decisions")
	}
	served.Store("bundle", mustRead(t, configBundle(t, opa, dir, "r4", `{"deny": []}`, signed...)))
	eventuallyTrue(t, 15*time.Second, "revision r4 from the server", grants(pullPush))
	close(stop)
	checkLoad(t, results(), 50, pullPush, pullOnly)
	if _, body := s.readyz(t); body["policy"] != "authz@r4,builtin" {
		t.Fatalf("/readyz: %v", body)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func eventuallyTrue(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newBundleHTTPServer is a bundle server: it serves served["bundle"] at
// /bundles/regoauth.tar.gz, and 404 until there is one.
func newBundleHTTPServer(t *testing.T, served *sync.Map) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := served.Load("bundle")
		if !ok || r.URL.Path != "/bundles/regoauth.tar.gz" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(b.([]byte))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestServeDecisionLogsAndExplain: with OPA's console decision logs on, every token response's
// Regoauth-Decision-Id is the decision_id of a decision log event; the event's input has
// exactly the fields of policy/input.example.json, the documented input; and `regoauth policy
// explain` builds the same input from the store for the same request.
func TestServeDecisionLogsAndExplain(t *testing.T) {
	dir := t.TempDir()
	keys, ids := seedStore(t, filepath.Join(dir, "store.db"),
		[]account{
			{name: "admin", roles: []string{"admin"}},
			{name: "user1", groups: []string{"buyers"}, restrictions: keystore.Restrictions{
				Actions: []string{"pull"}, Repositories: []string{"shop/*", "tools/*"}, CIDRs: []string{"127.0.0.0/8", "::1/128"}}},
		},
		[]keystore.Grant{grantOf("account:user1", "image", "pull"), grantOf("group:buyers", "shop/*", "pull")},
		map[string]string{"shop/app": "user1"})
	s := startPolicyServe(t, dir, keys, ids, "opa: {decision_logs: {console: true}, labels: {region: test}}\n", true)
	client := &http.Client{Timeout: 10 * time.Second}
	scopes := []string{"repository:shop/app:push,pull", "repository(plugin):tools/lint:pull"}
	r := s.token(client, "user1", scopes...)
	if r.status != http.StatusOK || r.decisionID == "" {
		t.Fatalf("token: %+v", r)
	}
	if fmt.Sprint(r.access) != fmt.Sprint(map[string][]string{"repository:shop/app": {"pull"}, "repository:tools/lint": {}}) {
		t.Fatalf("access = %v", r.access)
	}
	var event map[string]any
	eventuallyTrue(t, 10*time.Second, "the decision log event", func() bool {
		for _, rec := range s.stderr.records("Decision Log") {
			if rec["decision_id"] == r.decisionID {
				event = rec
				return true
			}
		}
		return false
	})
	if event["path"] != "regoauth/authz/decision" || event["type"] != "openpolicyagent.org/decision_logs" {
		t.Fatalf("event = %v", event)
	}
	if labels, _ := event["labels"].(map[string]any); labels["region"] != "test" {
		t.Fatalf("labels = %v", event["labels"])
	}
	var example any
	if err := json.Unmarshal(mustRead(t, filepath.Join("..", "policy", "input.example.json")), &example); err != nil {
		t.Fatal(err)
	}
	if diff := shapeDiff("input", example, event["input"]); diff != "" {
		t.Fatalf("the server's input and policy/input.example.json differ: %s\nserver: %v", diff, event["input"])
	}

	// explain, as the admin, the same request with the same key.
	args := []string{"policy", "explain", "--account", "user1", "--key", ids["user1"], "--ip", "127.0.0.1", "--service", serveService, "-o", "json"}
	for _, sc := range scopes {
		args = append(args, "--scope", sc)
	}
	env := []string{"REGOAUTH_SERVER=http://" + s.Addr, "REGOAUTH_KEY=" + keys["admin"], "REGOAUTH_KEY_FILE="}
	out := must(t, env, binary, args...)
	var x struct {
		Input   map[string]any `json:"input"`
		Actions []struct {
			Name, Action string
			Allowed      bool
			Reason       string
		} `json:"actions"`
	}
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatalf("explain -o json: %v\n%s", err, out)
	}
	logged := event["input"].(map[string]any)
	for _, field := range []string{"principal", "grants", "owned", "scopes", "service"} {
		if fmt.Sprint(x.Input[field]) != fmt.Sprint(logged[field]) {
			t.Errorf("explain's input.%s = %v, the token path's = %v", field, x.Input[field], logged[field])
		}
	}
	if len(x.Actions) != 3 || x.Actions[1].Action != "push" || x.Actions[1].Allowed || x.Actions[1].Reason != "the API key's restrictions forbid it" {
		t.Fatalf("explain's verdicts: %+v", x.Actions)
	}
	table := must(t, env, binary, "policy", "explain", "--account", "user1", "--scope", "repository:image:push,pull")
	for _, want := range []string{"principal      user1  groups=buyers", "repository:image  push    DENIED   no grant or rule permits it", "repository:image  pull    allowed  by grant"} {
		if !strings.Contains(table, want) {
			t.Errorf("explain's table lacks %q:\n%s", want, table)
		}
	}
	// An account explains itself, not others.
	self := []string{"REGOAUTH_SERVER=http://" + s.Addr, "REGOAUTH_KEY=" + keys["user1"], "REGOAUTH_KEY_FILE="}
	if res := run(t, self, binary, "policy", "explain", "--account", "admin", "--scope", "repository:x:pull"); res.code == 0 || !strings.Contains(res.out, "forbidden") {
		t.Fatalf("user1 explained admin's requests: %s", res.out)
	}
}

// shapeDiff compares two JSON documents by shape: the same object keys at every level and the
// same types; arrays by the shape of their elements. Values may differ.
func shapeDiff(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %T, want an object", path, got)
		}
		for k := range w {
			if _, ok := g[k]; !ok {
				return fmt.Sprintf("%s.%s: missing from the server's input", path, k)
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return fmt.Sprintf("%s.%s: sent by the server, not in the example", path, k)
			}
			if d := shapeDiff(path+"."+k, w[k], g[k]); d != "" {
				return d
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Sprintf("%s: %T, want an array", path, got)
		}
		if len(w) == 0 || len(g) == 0 {
			return ""
		}
		// Every element of either side must have the shape of some element of the other
		// (scopes with and without a class).
		for i, ge := range g {
			if !anyShape(w, ge) {
				return fmt.Sprintf("%s[%d]: no element of the example has its shape", path, i)
			}
		}
		for i, we := range w {
			if !anyShape(g, we) {
				return fmt.Sprintf("%s[%d] of the example: the server sent no element of its shape", path, i)
			}
		}
	default:
		if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
			return fmt.Sprintf("%s: %T, want %T", path, got, want)
		}
	}
	return ""
}

func anyShape(list []any, v any) bool {
	for _, x := range list {
		if shapeDiff("", x, v) == "" {
			return true
		}
	}
	return false
}
