package console_test

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/console"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
)

var ctx = context.Background()

// clock is the fixture's time, shared by the store, the admin operations and the console.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a console over a bolt store (principal cache on, as in production) and the
// built-in policy: accounts admin, alice (a seller owning shop/alice), mallory and buyer.
type fixture struct {
	t       *testing.T
	store   *boltstore.Store
	clock   *clock
	srv     *httptest.Server
	limiter *countingLimiter
	keys    map[string]string
}

func newFixture(t *testing.T, tls bool, configure ...func(*console.Options)) *fixture {
	t.Helper()
	return newFixtureWith(t, fixtureConfig{tls: tls, console: configure})
}

// fixtureConfig is what newFixtureWith may change of the fixture.
type fixtureConfig struct {
	tls bool
	// extension, when set, is a Rego module of package regoauth.extensions.test loaded beside
	// the library, as a bundle would be.
	extension string
	// deps adjusts what the admin operations are built on.
	deps    func(*admin.Deps)
	console []func(*console.Options)
	// store, when set, wraps the store the console signs in with.
	store func(console.Store) console.Store
}

func newFixtureWith(t *testing.T, cfg fixtureConfig) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, limiter: &countingLimiter{}, keys: map[string]string{}}
	store, err := boltstore.OpenWith(filepath.Join(t.TempDir(), "store.db"), boltstore.Options{CacheTTL: time.Minute, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f.store = store
	engine := policy.New(policy.Options{})
	if err := engine.LoadFS(ctx, policies.FS, policy.BuiltinBundle); err != nil {
		t.Fatal(err)
	}
	if cfg.extension != "" {
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, "test.rego"), []byte(cfg.extension), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, ".manifest"), []byte(`{"revision":"test","roots":["regoauth/extensions/test"]}`), 0o644))
		engine = policy.New(policy.Options{Source: policy.Source{Builtin: policies.FS, Dir: dir}})
		must(t, engine.Start(t.Context()))
		t.Cleanup(func() { engine.Stop(ctx) })
	}
	deps := admin.Deps{Store: store, Authorizer: engine, Explainer: engine}
	if cfg.deps != nil {
		cfg.deps(&deps)
	}
	ops, err := admin.New(deps, admin.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	opts := console.Options{Registry: "registry.test", Now: f.clock.Now, Limiter: f.limiter}
	for _, fn := range cfg.console {
		fn(&opts)
	}
	var signins console.Store = store
	if cfg.store != nil {
		signins = cfg.store(store)
	}
	c, err := console.New(signins, ops, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", c)
	if cfg.tls {
		f.srv = httptest.NewTLSServer(mux)
	} else {
		f.srv = httptest.NewServer(mux)
	}
	t.Cleanup(f.srv.Close)
	for _, a := range []keystore.Account{
		{Name: "admin", Roles: []string{"admin"}}, {Name: "alice", Groups: []string{"sellers"}}, {Name: "mallory"}, {Name: "buyer"},
	} {
		a.Created = f.clock.Now()
		must(t, store.CreateAccount(ctx, a))
		f.keys[a.Name] = f.newKey(a.Name, keystore.Restrictions{})
	}
	must(t, store.Reserve(ctx, keystore.Ownership{Repository: "shop/alice", Owner: "alice", Created: f.clock.Now()}, 0))
	must(t, store.PutGrant(ctx, keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}, Repository: "shop/alice", Actions: []string{"pull"}}, keystore.Unguarded))
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newKey stores a key for account and returns its plaintext.
func (f *fixture) newKey(account string, r keystore.Restrictions) string {
	f.t.Helper()
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	must(f.t, err)
	must(f.t, f.store.CreateKey(ctx, keystore.Key{ID: id, Account: account, Name: "seed", Hash: hash, Created: f.clock.Now(), Restrictions: r}))
	return plain
}

func keyID(plain string) string { id, _ := keystore.ParseAPIKey(plain); return id }

// browser is a cookie-keeping client that does not follow redirects, so tests see them.
type browser struct {
	f    *fixture
	c    *http.Client
	last string
}

func (f *fixture) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: f.srv.Client().Transport, Jar: jar}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{f: f, c: c}
}

type page struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (b *browser) do(req *http.Request) page {
	b.f.t.Helper()
	resp, err := b.c.Do(req)
	must(b.f.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	p := page{status: resp.StatusCode, body: string(raw), location: resp.Header.Get("Location"), header: resp.Header}
	if strings.Contains(p.body, `name="csrf"`) {
		b.last = p.body
	}
	return p
}

func (b *browser) get(path string) page {
	b.f.t.Helper()
	req, _ := http.NewRequest("GET", b.f.srv.URL+path, nil)
	return b.do(req)
}

// post sends a form as a same-origin browser would (Sec-Fetch-Site: same-origin).
func (b *browser) post(path string, form url.Values) page {
	b.f.t.Helper()
	return b.postWith(path, form, "same-origin")
}

func (b *browser) postWith(path string, form url.Values, fetchSite string) page {
	b.f.t.Helper()
	req, _ := http.NewRequest("POST", b.f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if fetchSite != "" {
		req.Header.Set("Sec-Fetch-Site", fetchSite)
	}
	return b.do(req)
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the token of the last page with a form.
func (b *browser) csrf() string {
	b.f.t.Helper()
	m := csrfPattern.FindStringSubmatch(b.last)
	if m == nil {
		b.f.t.Fatal("no CSRF token on the last page with a form")
	}
	return m[1]
}

// signin signs in and checks it worked.
func (b *browser) signin(account, key string) {
	b.f.t.Helper()
	if p := b.trySignin(account, key); p.status != http.StatusSeeOther || p.location != "/console/keys" {
		b.f.t.Fatalf("sign-in as %s: %d %s\n%s", account, p.status, p.location, p.body)
	}
}

func (b *browser) trySignin(account, key string) page {
	b.f.t.Helper()
	b.get("/console/signin")
	return b.post("/console/signin", url.Values{"csrf": {b.csrf()}, "account": {account}, "key": {key}})
}

// as returns a browser signed in as account with its seed key.
func (f *fixture) as(account string) *browser {
	f.t.Helper()
	b := f.browser()
	b.signin(account, f.keys[account])
	return b
}

func wantStatus(t *testing.T, p page, status int, what string) {
	t.Helper()
	if p.status != status {
		t.Fatalf("%s: HTTP %d, want %d\n%s", what, p.status, status, p.body)
	}
}

// countingLimiter records failed sign-ins and refuses accounts it is told to.
type countingLimiter struct {
	mu      sync.Mutex
	failed  map[string]int
	blocked map[string]bool
	// budget, when set for an account, is the failure that is refused as one too many.
	budget map[string]int
	asked  int
	open   int
}

// throttled is a refusal that says how long to wait, as the token endpoint's limits give one.
type throttled struct{ wait time.Duration }

func (e throttled) Error() string          { return "too many failed authentication attempts" }
func (e throttled) RetryAfterSeconds() int { return int(e.wait / time.Second) }

// Admit refuses blocked accounts; the attempts it lets through are open until settled, and a
// failed one counts as Failed does.
func (l *countingLimiter) Admit(_ context.Context, _ netip.Addr, account string) (func(context.Context, bool) error, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked++
	if l.blocked[account] {
		return nil, throttled{90 * time.Second}
	}
	l.open++
	settled := false
	return func(ctx context.Context, failed bool) error {
		l.mu.Lock()
		if settled {
			l.mu.Unlock()
			return nil
		}
		settled = true
		l.open--
		l.mu.Unlock()
		if failed {
			return l.fail(account)
		}
		return nil
	}, nil
}

func (l *countingLimiter) fail(account string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		l.failed = map[string]int{}
	}
	l.failed[account]++
	if b := l.budget[account]; b > 0 && l.failed[account] >= b {
		return throttled{30 * time.Second}
	}
	return nil
}

// unsettled is how many attempts Admit let through are not settled.
func (l *countingLimiter) unsettled() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *countingLimiter) block(account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.blocked == nil {
		l.blocked = map[string]bool{}
	}
	l.blocked[account] = true
}

func (l *countingLimiter) failures(account string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed[account]
}
