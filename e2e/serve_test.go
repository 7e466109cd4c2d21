package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
)

// account is one account a test's store starts with.
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
		if err := store.PutGrant(ctx, g, keystore.Unguarded); err != nil {
			t.Fatal(err)
		}
	}
	for repo, owner := range owned {
		if err := store.Reserve(ctx, keystore.Ownership{Repository: repo, Owner: owner, Created: time.Now().UTC()}, 0); err != nil {
			t.Fatal(err)
		}
	}
	return keys, ids
}

// endsIn gives a grant an end d from now.
func endsIn(g keystore.Grant, d time.Duration) keystore.Grant {
	g.Expires = time.Now().Add(d).UTC()
	return g
}

func grantOf(subject, repo string, actions ...string) keystore.Grant {
	kind, name, _ := strings.Cut(subject, ":")
	return keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectKind(kind), Name: name}, Repository: repo, Actions: actions}
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

// loadRun is token requests sent without pause from several goroutines until stopped.
type loadRun struct {
	once sync.Once
	quit chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	all  []tokenResponse
}

// startLoad sends req from workers goroutines until stop (or the end of the test).
func startLoad(t *testing.T, s *server, workers int, req tokenRequest) *loadRun {
	l := &loadRun{quit: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			req := req
			req.client = &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-l.quit:
					return
				default:
				}
				r := s.token(req)
				l.mu.Lock()
				l.all = append(l.all, r)
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() { l.stop() })
	return l
}

// stop ends the load and returns every result.
func (l *loadRun) stop() []tokenResponse {
	l.once.Do(func() { close(l.quit) })
	l.wg.Wait()
	return l.all
}

// grants is a condition: the server's token for req carries exactly want.
func grants(s *server, req tokenRequest, want map[string][]string) func() bool {
	return func() bool { return fmt.Sprint(s.token(req).access) == fmt.Sprint(want) }
}

// checkLoad requires every result to be a token carrying one of the allowed accesses.
func checkLoad(t *testing.T, results []tokenResponse, min int, allowed ...map[string][]string) {
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

// bundleStatus is the error /readyz shows for bundle name ("" when its newest load succeeded)
// and its newest load attempt.
func bundleStatus(t *testing.T, s *server, name string) (errText, lastAttempt string) {
	t.Helper()
	_, body := s.readyz()
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

// TestServeHotReloadsSignedBundleUnderLoad: regoauth serve with a signed local bundle that
// configures the library. While token requests run without pause, the bundle file is replaced
// by new signed revisions (each takes effect), and by unsigned, tampered and broken ones (each
// is refused, shown in /readyz and the metrics, and the previous revision keeps deciding). Not
// one request fails.
func TestServeHotReloadsSignedBundleUnderLoad(t *testing.T) {
	t.Parallel()
	opa := tool(t, "opa")
	dir := t.TempDir()
	priv, pub := rsaSigningKey(t, dir)
	otherPriv, _ := rsaSigningKey(t, t.TempDir())
	keys, _ := seedStore(t, filepath.Join(dir, "store.db"), []account{{name: "user1"}},
		[]keystore.Grant{grantOf("account:user1", "image", "pull", "push")}, nil)
	signed := []string{"--signing-key", priv, "--signing-alg", "RS256"}
	open := `{"deny": []}`
	closed := `{"deny": [{"repositories": ["image"], "actions": ["push"], "reason": "frozen"}]}`
	live := filepath.Join(dir, "policy.tar.gz")
	installFile(t, configBundle(t, opa, dir, "v1", open, signed...), live)
	s := startServer(t, serveConfig{dir: dir, x5c: true, policy: fmt.Sprintf("bundle: %s\nsigning: {key_file: %s, algorithm: RS256}\n", live, pub)})

	pullPush := map[string][]string{"repository:image": {"pull", "push"}}
	pullOnly := map[string][]string{"repository:image": {"pull"}}
	req := tokenRequest{user: "user1", key: keys["user1"], scopes: []string{"repository:image:push,pull"}}
	if r := s.token(req); fmt.Sprint(r.access) != fmt.Sprint(pullPush) {
		t.Fatalf("before any change: %+v", r)
	}
	load := startLoad(t, s, 4, req)
	refused := func(file string) {
		t.Helper()
		_, before := bundleStatus(t, s, "policy")
		installFile(t, file, live)
		eventually(t, 15*time.Second, "the refusal of "+filepath.Base(file), func() bool {
			errText, attempt := bundleStatus(t, s, "policy")
			return attempt != before && errText != ""
		})
	}

	installFile(t, configBundle(t, opa, dir, "v2", closed, signed...), live)
	eventually(t, 15*time.Second, "revision v2 (push denied)", grants(s, req, pullOnly))

	refused(configBundle(t, opa, dir, "v3-unsigned", open))
	if !grants(s, req, pullOnly)() {
		t.Fatal("an unsigned bundle changed the decisions")
	}
	if v := s.metric(t, "regoauth_policy_bundle_failing", `bundle="policy"`); v != 1 {
		t.Errorf("regoauth_policy_bundle_failing{bundle=policy} = %v, want 1", v)
	}
	refused(configBundle(t, opa, dir, "v4-other-key", open, "--signing-key", otherPriv, "--signing-alg", "RS256"))
	// Well signed, but it claims the library's roots: activation fails beside the library.
	refused(configBundleRoots(t, opa, dir, "v5-overlapping", `["regoauth"]`, open, signed...))
	if !grants(s, req, pullOnly)() {
		t.Fatal("a refused bundle changed the decisions")
	}

	installFile(t, configBundle(t, opa, dir, "v6", open, signed...), live)
	eventually(t, 15*time.Second, "revision v6 (push allowed again)", grants(s, req, pullPush))
	time.Sleep(300 * time.Millisecond)
	checkLoad(t, load.stop(), 50, pullPush, pullOnly)

	code, body := s.readyz()
	if errText, _ := bundleStatus(t, s, "policy"); code != http.StatusOK || body["policy"] != "builtin,policy@v6" || errText != "" {
		t.Fatalf("/readyz after recovery: %d %v", code, body)
	}
	if v := s.metric(t, "regoauth_policy_bundle_failing", `bundle="policy"`); v != 0 {
		t.Errorf("regoauth_policy_bundle_failing{bundle=policy} = %v after recovery, want 0", v)
	}
}

// TestServeFollowsBundleServer: the policy comes from a bundle server through OPA's own
// configuration (services, bundles with polling, keys, signing). /readyz is not ready and
// tokens are refused (503) until the first bundle is active; then the server's changes are
// followed under load, a bundle the key did not sign is refused, and no request fails.
func TestServeFollowsBundleServer(t *testing.T) {
	t.Parallel()
	opa := tool(t, "opa")
	dir := t.TempDir()
	priv, pub := rsaSigningKey(t, dir)
	keys, _ := seedStore(t, filepath.Join(dir, "store.db"), []account{{name: "user1"}},
		[]keystore.Grant{grantOf("account:user1", "image", "pull", "push")}, nil)
	signed := []string{"--signing-key", priv, "--signing-alg", "RS256"}
	var served sync.Map
	srv := newBundleHTTPServer(t, &served)
	pubJSON, _ := json.Marshal(string(mustRead(t, pub)))
	opaConfig := writeFile(t, filepath.Join(dir, "opa.yaml"), fmt.Sprintf(`services:
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
`, srv, pubJSON), 0o600)
	s := startServer(t, serveConfig{dir: dir, x5c: true, policy: "opa: " + opaConfig + "\n", anyReadiness: true})

	code, body := s.readyz()
	if code != http.StatusServiceUnavailable || body["policy"] != "none active" {
		t.Fatalf("/readyz before the first bundle: %d %v", code, body)
	}
	req := tokenRequest{user: "user1", key: keys["user1"], scopes: []string{"repository:image:push,pull"}}
	if r := s.token(req); r.status != http.StatusServiceUnavailable {
		t.Fatalf("a token request before any policy: HTTP %d", r.status)
	}

	served.Store("bundle", mustRead(t, configBundle(t, opa, dir, "r1", `{"deny": []}`, signed...)))
	eventually(t, 15*time.Second, "readiness", func() bool { code, _ := s.readyz(); return code == http.StatusOK })

	pullPush := map[string][]string{"repository:image": {"pull", "push"}}
	pullOnly := map[string][]string{"repository:image": {"pull"}}
	load := startLoad(t, s, 4, req)
	served.Store("bundle", mustRead(t, configBundle(t, opa, dir, "r2", `{"deny": [{"repositories": ["image"], "actions": ["push"]}]}`, signed...)))
	eventually(t, 15*time.Second, "revision r2 from the server", grants(s, req, pullOnly))

	served.Store("bundle", mustRead(t, configBundle(t, opa, dir, "r3-unsigned", `{"deny": []}`)))
	eventually(t, 15*time.Second, "the refusal of an unsigned bundle", func() bool {
		errText, _ := bundleStatus(t, s, "authz")
		return errText != ""
	})
	if !grants(s, req, pullOnly)() {
		t.Fatal("an unsigned bundle from the server changed the decisions")
	}
	served.Store("bundle", mustRead(t, configBundle(t, opa, dir, "r4", `{"deny": []}`, signed...)))
	eventually(t, 15*time.Second, "revision r4 from the server", grants(s, req, pullPush))
	checkLoad(t, load.stop(), 50, pullPush, pullOnly)
	if _, body := s.readyz(); body["policy"] != "authz@r4,builtin" {
		t.Fatalf("/readyz: %v", body)
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
// exactly the shape of policy/input.example.json, the documented input, every array of it
// compared by its elements; and `regoauth policy explain` builds the same input from the store
// for the same request.
func TestServeDecisionLogsAndExplain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys, ids := seedStore(t, filepath.Join(dir, "store.db"),
		[]account{
			{name: "admin", roles: []string{"admin"}},
			{name: "user1", groups: []string{"buyers"}, roles: []string{"member"}, restrictions: keystore.Restrictions{
				Actions: []string{"pull"}, Repositories: []string{"shop/*", "tools/*"}, CIDRs: []string{"127.0.0.0/8", "::1/128"}}},
		},
		// Rows with and without an end reach the policy, as in the example, so the input carries
		// both shapes.
		[]keystore.Grant{grantOf("account:user1", "image", "pull"), grantOf("account:user1", "shop/app", "pull"),
			endsIn(grantOf("group:buyers", "shop/*", "pull"), 24*time.Hour)},
		map[string]string{"shop/app": "user1"})
	s := startServer(t, serveConfig{dir: dir, x5c: true, policy: "opa: {decision_logs: {console: true}, labels: {region: test}}\n"})
	scopes := []string{"repository:shop/app:push,pull", "repository(plugin):tools/lint:pull"}
	r := s.token(tokenRequest{user: "user1", key: keys["user1"], scopes: scopes})
	if r.status != http.StatusOK || r.err != nil || r.decisionID == "" {
		t.Fatalf("token: %+v", r)
	}
	if fmt.Sprint(r.access) != fmt.Sprint(map[string][]string{"repository:shop/app": {"pull"}, "repository:tools/lint": {}}) {
		t.Fatalf("access = %v", r.access)
	}
	var event logRecord
	eventually(t, 10*time.Second, "the decision log event", func() bool {
		for _, rec := range s.proc.out.records(0, "Decision Log") {
			if rec["decision_id"] == r.decisionID {
				event = rec
				return true
			}
		}
		return false
	})
	if event["path"] != "regoauth/authz/decision" || event["type"] != "openpolicyagent.org/decision_logs" || event["labels"] == "" {
		t.Fatalf("event = %v", event)
	}
	var labels map[string]any
	if json.Unmarshal([]byte(event["labels"]), &labels); labels["region"] != "test" {
		t.Fatalf("labels = %v", event["labels"])
	}
	var example, logged map[string]any
	if err := json.Unmarshal(mustRead(t, filepath.Join("..", "policy", "input.example.json")), &example); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(event["input"]), &logged); err != nil {
		t.Fatalf("the event's input: %v", err)
	}
	if diff := shapeDiff("input", example, logged); diff != "" {
		t.Fatalf("the server's input and policy/input.example.json differ: %s\nserver: %v", diff, logged)
	}

	// explain, as the admin, the same request with the same key.
	args := []string{"policy", "explain", "--account", "user1", "--key", ids["user1"], "--ip", "127.0.0.1", "--service", serveService, "-o", "json"}
	for _, sc := range scopes {
		args = append(args, "--scope", sc)
	}
	out := s.cli(t, keys["admin"], args...)
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
	for _, field := range []string{"principal", "grants", "owned", "scopes", "service"} {
		if fmt.Sprint(x.Input[field]) != fmt.Sprint(logged[field]) {
			t.Errorf("explain's input.%s = %v, the token path's = %v", field, x.Input[field], logged[field])
		}
	}
	if len(x.Actions) != 3 || x.Actions[1].Action != "push" || x.Actions[1].Allowed || x.Actions[1].Reason != "the API key's restrictions forbid it" {
		t.Fatalf("explain's verdicts: %+v", x.Actions)
	}
	// An account explains itself, not others.
	if res := run(t, s.cliEnv(keys["user1"]), binary, "policy", "explain", "--account", "admin", "--scope", "repository:x:pull"); res.code == 0 || !strings.Contains(res.out, "forbidden") {
		t.Fatalf("user1 explained admin's requests: %s", res.out)
	}
}

// TestExplainSampleInDocs runs the `regoauth policy explain` command shown in docs/policy.md
// on the state the walkthrough there describes, and requires the output shown to be the
// output of this run; REGOAUTH_UPDATE_DOCS=1 writes this run's output into the page.
func TestExplainSampleInDocs(t *testing.T) {
	t.Parallel()
	page := filepath.Join("..", "docs", "policy.md")
	doc := string(mustRead(t, page))
	const prompt = "$ regoauth policy explain "
	start := strings.Index(doc, prompt)
	if start < 0 {
		t.Fatalf("%s shows no %q", page, prompt)
	}
	cmdEnd := start + strings.Index(doc[start:], "\n") + 1
	end := cmdEnd + strings.Index(doc[cmdEnd:], "```")
	shown := doc[cmdEnd:end]

	dir := t.TempDir()
	seedStore(t, filepath.Join(dir, "store.db"), []account{{name: "user1", groups: []string{"buyers"}}},
		[]keystore.Grant{grantOf("account:user1", "image", "pull"), grantOf("group:buyers", "shop/*", "pull")}, nil)
	s := startServer(t, serveConfig{dir: dir})
	args := strings.Fields(strings.TrimPrefix(doc[start:cmdEnd], "$ regoauth "))
	out := s.admin(t, args...)
	if os.Getenv("REGOAUTH_UPDATE_DOCS") == "1" {
		writeFile(t, page, doc[:cmdEnd]+out+doc[end:], 0o644)
		return
	}
	if out != shown {
		t.Errorf("%s shows an output of `%s` that is not this run's; regenerate it with\n"+
			"  REGOAUTH_UPDATE_DOCS=1 go test ./e2e -run TestExplainSampleInDocs\nshown:\n%s\nthis run:\n%s", page, strings.TrimSpace(doc[start+2:cmdEnd]), shown, out)
	}
}

// shapeDiff compares two JSON documents by shape: the same object keys at every level and the
// same types; arrays by the shape of their elements, which both must have. Values may differ.
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
		// An empty array shows no element's shape: the example and the server's input must
		// both give one, or the check would pass on any element the server sends.
		if len(w) == 0 || len(g) == 0 {
			return fmt.Sprintf("%s: %d elements in the example, %d from the server; both need one to compare", path, len(w), len(g))
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
