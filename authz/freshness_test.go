package authz_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/authz/input"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
	"github.com/regoauth/regoauth/tokens"
)

var freshnessSeed = flag.Uint64("freshness.seed", 0, "seed of TestCachedPathMatchesFreshEvaluation (0: from the clock)")

// TestCachedPathMatchesFreshEvaluation drives the token endpoint as `regoauth serve` wires it —
// the store's principal cache and the engine's decision cache on — through random changes of
// the store (accounts created, disabled, regrouped and given roles; keys created with and
// without restrictions and expiry, and revoked; grants to accounts and groups, with and without
// an end, added and removed; repositories reserved and released) and of the policy (the library
// alone, with the marketplace or teams bundle, with an extension of its own, each under random
// configuration), and after each change compares the token of random requests with a full
// evaluation made from scratch: the principal read again record by record (no cache), a policy
// engine with no decision cache, the server's intersection. On bolt, on Redis, and on Redis
// with a second replica (another store instance on the same redis-server) making every change,
// so that the invalidation between replicas is what is checked.
//
// Bolt empties its cache in the write, so its answers must match at once. Redis replicas
// evict on an invalidation message, which the store's contract lets arrive within a second: a
// different answer is asked again until it matches, and fails the test if it still differs
// after freshnessLag.
//
// It is bounded by steps and by time, and prints its seed: go test ./authz -run
// CachedPathMatchesFresh -freshness.seed=N repeats the sequence of changes and requests (key
// secrets and the instants that grants end are drawn anew).
func TestCachedPathMatchesFreshEvaluation(t *testing.T) {
	seed := *freshnessSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./authz -run CachedPathMatchesFresh -freshness.seed=%d)", seed, seed)
	budget := 4 * time.Second
	if testing.Short() {
		budget = time.Second
	}
	for i, backend := range []string{"bolt", "redis", "redis-second-replica"} {
		t.Run(backend, func(t *testing.T) {
			f := newFreshness(t, backend, seed+uint64(i))
			f.run(budget, 400)
		})
	}
}

// freshnessLag bounds how long a Redis replica may answer from what it held before a change
// (the store promises revocation on every replica within a second).
const freshnessLag = 2 * time.Second

type freshness struct {
	t       *testing.T
	rnd     *mrand.Rand
	backend string
	// served is the store behind the endpoint; writer makes the changes (served itself, or a
	// second replica); reader reads records for the full evaluation.
	served, writer keystore.Store
	engine         *policy.Engine // the endpoint's: native decisions for the library alone, a decision cache for the rest
	fresh          *policy.Engine // the full evaluation's: every decision evaluated, no cache
	server         *httptest.Server
	keys           []freshKey
	accounts       []string
	policyRev      int
	// counts of what the run did, for its log line.
	steps, requests, issued, granted, refused, waited, skipped int
}

type freshKey struct {
	plain, id, account string
}

const freshService = "registry.example.com"

func newFreshness(t *testing.T, backend string, seed uint64) *freshness {
	f := &freshness{t: t, rnd: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), backend: backend}
	const cacheTTL = time.Minute // longer than the test: only invalidation keeps it right
	switch backend {
	case "bolt":
		s, err := boltstore.OpenWith(filepath.Join(t.TempDir(), "store.db"), boltstore.Options{CacheTTL: cacheTTL, NegativeTTL: cacheTTL})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f.served, f.writer = s, s
	default:
		srv := redistest.Start(t)
		open := func() keystore.Store {
			s, err := redisstore.Open(srv.URL(), redisstore.Options{CacheTTL: cacheTTL, NegativeTTL: cacheTTL})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		f.served = open()
		f.writer = f.served
		if backend == "redis-second-replica" {
			f.writer = open()
		}
		waitUntil(t, 5*time.Second, "redis answers", func() bool { return f.served.Ping(context.Background()) == nil })
	}
	f.engine = policy.New(policy.Options{DecisionCacheBytes: 4 << 20})
	f.fresh = policy.New(policy.Options{EvaluateAll: true})
	f.changePolicy()

	priv, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	cert, _ := tokens.SelfSignedCertificate(priv, "regoauth", time.Now().Add(-time.Hour), 24*time.Hour)
	key, err := tokens.NewKey(priv, []*x509.Certificate{cert}, tokens.KIDThumbprint)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tokens.NewSigner(key, tokens.SignerOptions{Issuer: "regoauth", TTL: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h, err := authz.New(authz.Deps{Directory: f.served, Decider: f.engine, Issuer: signer}, authz.Options{
		Services: []string{freshService},
		// The client's address comes from X-Forwarded-For: the key restrictions on networks
		// are decided on addresses other than loopback.
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:         slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Registerer:     prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.server = httptest.NewServer(h)
	t.Cleanup(f.server.Close)
	for range 4 {
		f.createAccount()
	}
	for range 6 {
		f.createKey()
	}
	return f
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

func (f *freshness) run(budget time.Duration, maxSteps int) {
	end := time.Now().Add(budget)
	for f.steps = 0; f.steps < maxSteps && time.Now().Before(end); f.steps++ {
		if f.rnd.IntN(25) == 0 {
			f.changePolicy()
		} else {
			f.changeStore()
		}
		for range 4 {
			f.request()
		}
	}
	if f.granted == 0 || f.issued == f.granted || f.refused == 0 {
		f.t.Fatalf("the run checked too little: %d tokens issued, %d of them granting something; %d requests refused", f.issued, f.granted, f.refused)
	}
	f.t.Logf("%s: %d changes, %d requests (%d issued, %d granting something, %d refused); %d answers converged after a replica's change; %d skipped across a grant's or key's end",
		f.backend, f.steps, f.requests, f.issued, f.granted, f.refused, f.waited, f.skipped)
}

// The names the changes and the requests draw from: accounts a0…, groups that the bundles give
// meaning to (sellers, acme.backend, acme.owners), repositories in personal namespaces, the
// marketplace's shop/ and previews/, the teams' acme/ and globex/, a public one, releases.
var (
	freshGroups  = []string{"g0", "g1", "sellers", "acme.backend", "acme.owners", "globex.dev"}
	freshRoles   = []string{"admin", "checkout", "reader"}
	freshRepos   = []string{"a0/app", "a1/app", "a1/lib/x", "team/app", "team/svc", "shop/one", "shop/two", "previews/one", "acme/api", "acme/base/img", "acme/backend-x", "globex/svc", "public/base", "x/releases/v1", "other"}
	freshPattern = []string{"team/*", "acme/**", "shop/*", "a0/*", "*/releases/**", "**"}
	freshActions = []string{"pull", "push", "delete"}
)

func (f *freshness) pick(list []string) string { return list[f.rnd.IntN(len(list))] }

func (f *freshness) subset(list []string) []string {
	var out []string
	for _, s := range list {
		if f.rnd.IntN(2) == 0 {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		out = append(out, f.pick(list))
	}
	return out
}

// soon is an instant from 0.2 to 2 s ahead: grants and keys that end while the test runs.
func (f *freshness) soon() time.Time {
	return time.Now().Add(200*time.Millisecond + time.Duration(f.rnd.IntN(1800))*time.Millisecond)
}

func (f *freshness) must(err error, what string) {
	f.t.Helper()
	if err != nil && !expectedRefusal(err) {
		f.t.Fatalf("%s: %v", what, err)
	}
}

// expectedRefusal is a store's refusal of a random change (a row that is not there, a name
// already reserved), which leaves the store as it was.
func expectedRefusal(err error) bool {
	for _, e := range []error{keystore.ErrNotFound, keystore.ErrExists, keystore.ErrInvalid, keystore.ErrConflict, keystore.ErrLimit} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (f *freshness) createAccount() {
	name := fmt.Sprintf("a%d", len(f.accounts))
	a := keystore.Account{Name: name, Created: time.Now()}
	if f.rnd.IntN(2) == 0 {
		a.Groups = f.subset(freshGroups)
	}
	f.must(f.writer.CreateAccount(context.Background(), a), "creating an account")
	f.accounts = append(f.accounts, name)
}

func (f *freshness) createKey() {
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		f.t.Fatal(err)
	}
	k := keystore.Key{ID: id, Account: f.pick(f.accounts), Hash: hash, Created: time.Now()}
	switch f.rnd.IntN(6) {
	case 0:
		k.Restrictions.Actions = []string{"pull"}
	case 1:
		k.Restrictions.Repositories = f.subset(append([]string{"team/*", "shop/*"}, freshRepos[:4]...))
	case 2:
		k.Restrictions.CIDRs = []string{f.pick([]string{"203.0.113.0/24", "10.0.0.0/8"})}
	case 3:
		k.Expires = f.soon()
	}
	f.must(f.writer.CreateKey(context.Background(), k), "creating a key")
	f.keys = append(f.keys, freshKey{plain: plain, id: id, account: k.Account})
}

func (f *freshness) changeStore() {
	ctx := context.Background()
	subject := keystore.Subject{Kind: keystore.SubjectAccount, Name: f.pick(f.accounts)}
	if f.rnd.IntN(3) == 0 {
		subject = keystore.Subject{Kind: keystore.SubjectGroup, Name: f.pick(freshGroups)}
	}
	repo := f.pick(freshRepos)
	if f.rnd.IntN(3) == 0 {
		repo = f.pick(freshPattern)
	}
	switch n := f.rnd.IntN(20); {
	case n < 1 && len(f.accounts) < 10:
		f.createAccount()
	case n < 3:
		f.createKey()
	case n < 4:
		f.must(f.writer.RevokeKey(ctx, f.keys[f.rnd.IntN(len(f.keys))].id), "revoking a key")
	case n < 7:
		a, err := f.writer.GetAccount(ctx, f.pick(f.accounts))
		f.must(err, "reading an account")
		switch f.rnd.IntN(3) {
		case 0:
			a.Disabled = !a.Disabled
		case 1:
			a.Groups = f.subset(freshGroups)
		case 2:
			a.Roles = nil
			if f.rnd.IntN(2) == 0 {
				a.Roles = []string{f.pick(freshRoles)}
			}
		}
		f.must(f.writer.UpdateAccount(ctx, a), "updating an account")
	case n < 12:
		g := keystore.Grant{Subject: subject, Repository: repo, Actions: f.subset(freshActions)}
		if f.rnd.IntN(3) == 0 {
			g.Expires = f.soon()
		}
		f.must(f.writer.PutGrant(ctx, g, keystore.Unguarded), "adding a grant")
	case n < 15:
		var actions []string
		if f.rnd.IntN(2) == 0 {
			actions = []string{f.pick(freshActions)}
		}
		f.must(f.writer.RemoveGrant(ctx, subject, repo, actions, keystore.Unguarded), "removing a grant")
	case n < 18:
		repo := f.pick(freshRepos)
		f.must(f.writer.Reserve(ctx, keystore.Ownership{Repository: repo, Owner: f.pick(f.accounts), Created: time.Now()}, 0), "reserving")
	default:
		f.must(f.writer.Release(ctx, f.pick(freshRepos), keystore.Unguarded), "releasing")
	}
}

// changePolicy activates a new revision in both engines: the library alone, or with the
// marketplace or teams bundle, or with an extension written here; under random configuration.
func (f *freshness) changePolicy() {
	f.policyRev++
	files := fstest.MapFS{}
	err := fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == ".manifest" {
			return err
		}
		data, err := fs.ReadFile(policies.FS, path)
		files[path] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	data := map[string]any{}
	if bundle := f.pick([]string{"", "marketplace", "teams", "own"}); bundle == "own" {
		files["own/own.rego"] = &fstest.MapFile{Data: []byte(ownExtension)}
	} else if bundle != "" {
		for _, name := range []string{bundle + ".rego", "data.json"} {
			raw, err := os.ReadFile(filepath.Join("..", "bundles", bundle, name))
			if err != nil {
				f.t.Fatal(err)
			}
			if name == "data.json" {
				if err := json.Unmarshal(raw, &data); err != nil {
					f.t.Fatal(err)
				}
				continue
			}
			files[bundle+"/"+name] = &fstest.MapFile{Data: raw}
		}
	}
	if f.rnd.IntN(3) > 0 { // otherwise the bundle's own configuration, or none
		config := map[string]any{
			"public_repositories": f.subset([]string{"public/*", "previews/*", "team/app"}),
			"personal_namespaces": f.rnd.IntN(2) == 0,
		}
		if f.rnd.IntN(2) == 0 {
			config["deny"] = []any{map[string]any{
				"repositories": []string{f.pick(freshPattern)},
				"actions":      f.subset(freshActions),
				"except":       []string{"role:admin"},
				"reason":       "random rule",
			}}
		}
		data["regoauth"] = map[string]any{"config": config}
	}
	raw, _ := json.Marshal(data)
	files["data.json"] = &fstest.MapFile{Data: raw}
	files[".manifest"] = &fstest.MapFile{Data: fmt.Appendf(nil, `{"revision": "r%d"}`, f.policyRev)}
	for _, e := range []*policy.Engine{f.engine, f.fresh} {
		if err := e.LoadFS(context.Background(), files, "policy"); err != nil {
			f.t.Fatalf("activating revision %d: %v", f.policyRev, err)
		}
	}
}

// ownExtension is an extension of the library's: it permits and denies by the principal's
// groups and roles, and reads the key's restrictions and the owned repositories.
const ownExtension = `package regoauth.extensions.own

import data.regoauth.authz

permit contains ["repository", scope.name, action] if {
	some scope in input.scopes
	"g1" in input.principal.groups
	startswith(scope.name, "team/")
	some action in scope.actions
	action != "delete"
}

deny contains {"type": "repository", "name": scope.name, "action": "push", "reason": "readers read"} if {
	some scope in input.scopes
	"reader" in input.principal.roles
}

deny contains {"type": "repository", "name": scope.name, "action": "delete", "reason": "owners only"} if {
	some scope in input.scopes
	scope.type == "repository"
	not authz.owned[scope.name]
	input.principal.key.restrictions
}
`

// request sends one random token request and compares the token with the full evaluation.
func (f *freshness) request() {
	f.t.Helper()
	f.requests++
	k := f.keys[f.rnd.IntN(len(f.keys))]
	username := k.account
	if f.rnd.IntN(20) == 0 {
		username = f.pick(f.accounts)
	}
	var scopes []string
	for range 1 + f.rnd.IntN(3) {
		if f.rnd.IntN(15) == 0 {
			scopes = append(scopes, "registry:catalog:*")
			continue
		}
		scopes = append(scopes, "repository:"+f.pick(freshRepos)+":"+strings.Join(f.subset(append(freshActions, "*")), ","))
	}
	ip := f.pick([]string{"203.0.113.7", "198.51.100.1"})
	ask := func() map[string][]string {
		q := url.Values{"service": {freshService}, "scope": scopes}
		r, _ := http.NewRequest("GET", f.server.URL+"/token?"+q.Encode(), nil)
		r.SetBasicAuth(username, k.plain)
		r.Header.Set("User-Agent", "freshness")
		r.Header.Set("X-Forwarded-For", ip)
		return f.token(r)
	}
	expect := func() map[string][]string { return f.full(username, k.plain, scopes, ip) }
	before := expect()
	got := ask()
	after := expect()
	if !equalAccess(before, after) {
		f.skipped++ // a grant or key ended between the two: either answer may be right
		return
	}
	switch {
	case got == nil:
		f.refused++
	case len(got) > 0:
		f.granted++
		fallthrough
	default:
		f.issued++
	}
	if equalAccess(got, before) {
		return
	}
	if f.backend == "bolt" {
		f.t.Fatalf("step %d: %s as %s asking %q from %s: got %s, a full evaluation gives %s", f.steps, k.id, username, scopes, ip, describe(got), describe(before))
	}
	// A Redis replica evicts on an invalidation message: ask again until it has arrived.
	deadline := time.Now().Add(freshnessLag)
	for time.Now().Before(deadline) {
		time.Sleep(25 * time.Millisecond)
		want := expect()
		if got = ask(); equalAccess(got, want) {
			f.waited++
			return
		}
	}
	f.t.Fatalf("step %d: %s as %s asking %q from %s: still %s after %s, a full evaluation gives %s", f.steps, k.id, username, scopes, ip, describe(got), freshnessLag, describe(expect()))
}

// token sends r to the endpoint and returns the access of the token it issued, nil for a 401.
func (f *freshness) token(r *http.Request) map[string][]string {
	f.t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nil
	case http.StatusOK:
	default:
		f.t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		f.t.Fatal(err)
	}
	parts := strings.Split(tok.Token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		f.t.Fatal(err)
	}
	var claims struct {
		Access []tokens.Access `json:"access"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		f.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, a := range claims.Access {
		if len(a.Actions) > 0 {
			out[a.Type+":"+a.Name] = slices.Sorted(slices.Values(a.Actions))
		}
	}
	return out
}

// full is the answer of a full evaluation: the key's records read one by one from the store
// (no principal cache), authenticated by the same rules, the policy evaluated by an engine
// without a decision cache, intersected with the request. nil means 401.
func (f *freshness) full(username, plain string, rawScopes []string, ip string) map[string][]string {
	f.t.Helper()
	ctx := context.Background()
	p, err := keystore.Authenticate(ctx, recordReader{f.served}, username, plain, time.Now())
	if err != nil {
		if !errors.Is(err, keystore.ErrBadCredentials) {
			f.t.Fatalf("full evaluation: %v", err)
		}
		return nil
	}
	scopes, err := input.ParseScopes(rawScopes, input.DefaultMaxScopes, input.DefaultMaxScopeLength)
	if err != nil {
		f.t.Fatal(err)
	}
	client := policy.Client{IP: ip, UserAgent: "freshness"}
	d, err := f.fresh.Decide(ctx, input.Token(freshService, client, &p, scopes))
	if err != nil {
		f.t.Fatalf("full evaluation: %v", err)
	}
	out := map[string][]string{}
	for _, s := range authz.Intersect(scopes, d) {
		if len(s.Actions) > 0 {
			out[s.Type+":"+s.Name] = slices.Sorted(slices.Values(s.Actions))
		}
	}
	return out
}

func describe(access map[string][]string) string {
	if access == nil {
		return "401"
	}
	return fmt.Sprintf("a token for %v", access)
}

func equalAccess(a, b map[string][]string) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// recordReader loads a principal record by record through the store's plain reads, none of
// which goes through the principal cache.
type recordReader struct{ s keystore.Store }

func (r recordReader) LoadPrincipal(ctx context.Context, keyID string) (keystore.Principal, error) {
	var p keystore.Principal
	var err error
	if p.Key, err = r.s.GetKey(ctx, keyID); err != nil {
		return p, err
	}
	if p.Account, err = r.s.GetAccount(ctx, p.Key.Account); err != nil {
		return p, err
	}
	subjects := []keystore.Subject{{Kind: keystore.SubjectAccount, Name: p.Account.Name}}
	for _, g := range p.Account.Groups {
		subjects = append(subjects, keystore.Subject{Kind: keystore.SubjectGroup, Name: g})
	}
	for _, s := range subjects {
		gs, err := r.s.ListGrants(ctx, keystore.GrantFilter{Subject: &s})
		if err != nil {
			return p, err
		}
		p.Grants = append(p.Grants, gs...)
	}
	owned, err := r.s.ListOwnership(ctx, p.Account.Name)
	if err != nil {
		return p, err
	}
	for _, o := range owned {
		p.Owned = append(p.Owned, o.Repository)
	}
	return p, nil
}
