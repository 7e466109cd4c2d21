package admin_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/internal/testenv"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

var ctx = context.Background()

// fixture is the admin API over the package-test fixture (an in-memory store and the built-in
// policy), with an admin account and a client holding its key.
type fixture struct {
	*testenv.Env
	t      *testing.T
	server *httptest.Server
	admin  *admin.Client
}

// newFixture serves the admin API; withExplainer adds the engine as its explainer.
func newFixture(t *testing.T, withExplainer ...bool) *fixture {
	t.Helper()
	env := testenv.New(t)
	deps := admin.Deps{Store: env.Store, Authorizer: env.Engine}
	if len(withExplainer) > 0 && withExplainer[0] {
		deps.Explainer = env.Engine
	}
	return serveFixture(t, env, deps)
}

// serveFixture serves the admin API built from deps over env, with an admin account and a
// client holding its key.
func serveFixture(t *testing.T, env *testenv.Env, deps admin.Deps) *fixture {
	t.Helper()
	api, err := admin.New(deps, admin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	f := &fixture{Env: env, t: t, server: srv}
	f.Admin("admin")
	f.admin = f.client(f.Key("admin", nil))
	return f
}

func (f *fixture) client(key string) *admin.Client {
	c, err := admin.NewClient(f.server.URL, key, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// must returns v, failing the test (by panic, like template.Must) on an error.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != status {
		t.Fatalf("error = %v, want HTTP %d", err, status)
	}
}

func TestAdminManagesAccountsKeysAndGrants(t *testing.T) {
	f := newFixture(t)
	acct := must(f.admin.CreateAccount(ctx, admin.AccountRequest{Name: "user1", Groups: []string{"buyers"}}))
	if acct.Name != "user1" || acct.Created.IsZero() {
		t.Fatalf("account = %+v", acct)
	}
	_, err := f.admin.CreateAccount(ctx, admin.AccountRequest{Name: "user1"})
	wantStatus(t, err, http.StatusConflict)
	_, err = f.admin.CreateAccount(ctx, admin.AccountRequest{Name: "Not Valid"})
	wantStatus(t, err, http.StatusBadRequest)

	created := must(f.admin.CreateKey(ctx, admin.KeyRequest{Account: "user1", Name: "ci", ExpiresIn: "30d",
		Restrictions: keystore.Restrictions{Actions: []string{"pull"}}}))
	if _, ok := keystore.ParseAPIKey(created.Secret); !ok || created.ID == "" || created.Hash != nil {
		t.Fatalf("created key = %+v", created)
	}
	if d := created.Expires.Sub(created.Created); d != 30*24*time.Hour {
		t.Fatalf("expiry %v after creation, want 30 days", d)
	}
	keys := must(f.admin.ListKeys(ctx, "user1"))
	if len(keys) != 1 || keys[0].ID != created.ID || keys[0].Hash != nil {
		t.Fatalf("keys = %+v", keys)
	}

	g := must(f.admin.AddGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "image", Actions: []string{"pull"}}))
	g = must(f.admin.AddGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "image", Actions: []string{"push"}}))
	if !slices.Equal(g.Actions, []string{"pull", "push"}) {
		t.Fatalf("merged grant = %+v", g)
	}
	_, err = f.admin.AddGrant(ctx, admin.GrantRequest{Account: "nobody", Repository: "image", Actions: []string{"pull"}})
	wantStatus(t, err, http.StatusNotFound)
	_, err = f.admin.AddGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "image", Actions: []string{"fly"}})
	wantStatus(t, err, http.StatusBadRequest)
	_, err = f.admin.AddGrant(ctx, admin.GrantRequest{Account: "user1", Group: "g", Repository: "image", Actions: []string{"pull"}})
	wantStatus(t, err, http.StatusBadRequest)
	must(f.admin.AddGrant(ctx, admin.GrantRequest{Group: "buyers", Repository: "shop/*", Actions: []string{"pull"}}))

	grants := must(f.admin.ListGrants(ctx, admin.GrantRequest{Account: "user1"}))
	if len(grants) != 1 {
		t.Fatalf("grants of user1 = %+v", grants)
	}
	if err := f.admin.RemoveGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "image", Actions: []string{"push"}}); err != nil {
		t.Fatal(err)
	}
	grants = must(f.admin.ListGrants(ctx, admin.GrantRequest{Account: "user1"}))
	if len(grants) != 1 || !slices.Equal(grants[0].Actions, []string{"pull"}) {
		t.Fatalf("after removing push = %+v", grants)
	}
	wantStatus(t, f.admin.RemoveGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "nothing"}), http.StatusNotFound)

	revoked := must(f.admin.RevokeKey(ctx, created.ID))
	if !revoked.Revoked {
		t.Fatal("key not revoked")
	}
	_, err = f.admin.RevokeKey(ctx, "aaaaaaaaaaaaaaaa")
	wantStatus(t, err, http.StatusNotFound)

	disabled := true
	acct = must(f.admin.UpdateAccount(ctx, "user1", admin.AccountUpdate{Disabled: &disabled}))
	if !acct.Disabled || !slices.Equal(acct.Groups, []string{"buyers"}) {
		t.Fatalf("updated account = %+v", acct)
	}
}

func TestAccountsManageOnlyTheirOwnKeys(t *testing.T) {
	f := newFixture(t)
	must(f.admin.CreateAccount(ctx, admin.AccountRequest{Name: "user1"}))
	must(f.admin.CreateAccount(ctx, admin.AccountRequest{Name: "user2"}))
	user1 := f.client(f.Key("user1", nil))

	mine := must(user1.CreateKey(ctx, admin.KeyRequest{Name: "laptop"}))
	if mine.Account != "user1" {
		t.Fatalf("key created for %q", mine.Account)
	}
	must(user1.ListKeys(ctx, "user1"))
	must(user1.RevokeKey(ctx, mine.ID))

	theirs := must(f.admin.CreateKey(ctx, admin.KeyRequest{Account: "user2"}))
	for name, err := range map[string]error{
		"create for another": second(user1.CreateKey(ctx, admin.KeyRequest{Account: "user2"})),
		"list another's":     second(user1.ListKeys(ctx, "user2")),
		"list all":           second(user1.ListKeys(ctx, "")),
		"revoke another's":   second(user1.RevokeKey(ctx, theirs.ID)),
		"revoke unknown":     second(user1.RevokeKey(ctx, "aaaaaaaaaaaaaaaa")), // 403, not 404: ids cannot be probed
		"create account":     second(user1.CreateAccount(ctx, admin.AccountRequest{Name: "user3"})),
		"grant itself":       second(user1.AddGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "x", Actions: []string{"push"}})),
		"reserve":            second(user1.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "mine"})),
		"list accounts":      second(user1.ListAccounts(ctx)),
		"update own account": second(user1.UpdateAccount(ctx, "user1", admin.AccountUpdate{Roles: &[]string{"admin"}})),
	} {
		t.Run(name, func(t *testing.T) { wantStatus(t, err, http.StatusForbidden) })
	}
	var apiErr *admin.APIError
	_, err := user1.CreateAccount(ctx, admin.AccountRequest{Name: "user3"})
	if !errors.As(err, &apiErr) || len(apiErr.Reasons) == 0 {
		t.Fatalf("refusal without reasons: %v", err)
	}

	// A read-only key cannot mint a key without that restriction.
	ro := must(user1.CreateKey(ctx, admin.KeyRequest{Restrictions: keystore.Restrictions{Actions: []string{"pull"}}}))
	_, err = f.client(ro.Secret).CreateKey(ctx, admin.KeyRequest{})
	wantStatus(t, err, http.StatusForbidden)
}

func second[T any](_ T, err error) error { return err }

func TestOwnerSellsPull(t *testing.T) {
	f := newFixture(t)
	must(f.admin.CreateAccount(ctx, admin.AccountRequest{Name: "seller"}))
	must(f.admin.CreateAccount(ctx, admin.AccountRequest{Name: "buyer"}))
	must(f.admin.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/app", Owner: "seller"}))
	_, err := f.admin.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/app", Owner: "buyer"})
	wantStatus(t, err, http.StatusConflict)
	seller := f.client(f.Key("seller", nil))

	must(seller.AddGrant(ctx, admin.GrantRequest{Account: "buyer", Repository: "shop/app", Actions: []string{"pull"}}))
	_, err = seller.AddGrant(ctx, admin.GrantRequest{Account: "buyer", Repository: "shop/app", Actions: []string{"push"}})
	wantStatus(t, err, http.StatusForbidden)
	_, err = seller.AddGrant(ctx, admin.GrantRequest{Account: "buyer", Repository: "shop/other", Actions: []string{"pull"}})
	wantStatus(t, err, http.StatusForbidden)
	if list := must(seller.ListGrants(ctx, admin.GrantRequest{Repository: "shop/app"})); len(list) != 1 {
		t.Fatalf("grants on shop/app = %+v", list)
	}
	if list := must(seller.ListRepositories(ctx, "seller")); len(list) != 1 {
		t.Fatalf("seller's repositories = %+v", list)
	}
	if err := seller.RemoveGrant(ctx, admin.GrantRequest{Account: "buyer", Repository: "shop/app"}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, seller.ReleaseRepository(ctx, "shop/app"), http.StatusForbidden)
	if err := f.admin.ReleaseRepository(ctx, "shop/app"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, f.admin.ReleaseRepository(ctx, "shop/app"), http.StatusNotFound)
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t)
	other, _, _, _ := keystore.NewAPIKey(rand.Reader)
	_, err := f.client(other).Whoami(ctx)
	wantStatus(t, err, http.StatusUnauthorized)
	_, err = f.client("not-a-key").ListAccounts(ctx)
	wantStatus(t, err, http.StatusUnauthorized)

	for _, h := range []string{"", "Basic " + "OnNlY3JldA==", "Token abc"} {
		req, _ := http.NewRequest("GET", f.server.URL+admin.Prefix+"/accounts", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp := must(http.DefaultClient.Do(req))
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("Authorization %q: %d %s", h, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	w := must(f.admin.Whoami(ctx))
	if w.Account.Name != "admin" || w.Key.Hash != nil {
		t.Fatalf("whoami = %+v", w)
	}
}

func TestBadRequestsAreJSON4xx(t *testing.T) {
	f := newFixture(t)
	key := f.Key("admin", nil)
	for _, tt := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/accounts", `{"name": "x", "extra": 1}`, 400},
		{"POST", "/accounts", `{"name": `, 400},
		{"POST", "/accounts", `{"name": "a"} {"name": "b"}`, 400},
		{"POST", "/accounts", `{"name": "` + strings.Repeat("a", 70<<10) + `"}`, 400},
		{"POST", "/keys", `{"account": "admin", "expires_in": "soon"}`, 400},
		{"POST", "/keys", `{"account": "admin", "restrictions": {"cidrs": ["nope"]}}`, 400},
		// An IPv4 network written IPv4-mapped: the policy would admit IPv4 clients with it, the
		// console would admit nobody.
		{"POST", "/keys", `{"account": "admin", "restrictions": {"cidrs": ["::ffff:10.0.0.0/104"]}}`, 400},
		{"PUT", "/accounts", `{}`, 405},
		{"GET", "/nothing", ``, 404},
		{"GET", "/accounts/nobody", ``, 404},
	} {
		req, _ := http.NewRequest(tt.method, f.server.URL+admin.Prefix+tt.path, strings.NewReader(tt.body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp := must(http.DefaultClient.Do(req))
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s %.40q: %d %s, want %d JSON", tt.method, tt.path, tt.body, resp.StatusCode, resp.Header.Get("Content-Type"), tt.status)
		}
	}
}

// TestGrantEnds: a grant added with expires_in or expires ends then; bad ends are 400, a put
// that would change a row's end without naming its actions is 409, and the end reaches the
// policy as target.expires.
func TestGrantEnds(t *testing.T) {
	f := newFixture(t)
	now := time.Now().UTC()
	must(f.admin.CreateAccount(ctx, admin.AccountRequest{Name: "buyer"}))
	g := must(f.admin.AddGrant(ctx, admin.GrantRequest{Account: "buyer", Repository: "shop/app", Actions: []string{"pull"}, ExpiresIn: "30d"}))
	if d := g.Expires.Sub(now); d < 30*24*time.Hour-time.Minute || d > 30*24*time.Hour+time.Minute {
		t.Fatalf("grant ends %v from now, want 30 days", d)
	}
	until := now.Add(48 * time.Hour).Truncate(time.Second)
	g = must(f.admin.AddGrant(ctx, admin.GrantRequest{Account: "buyer", Repository: "shop/app", Actions: []string{"pull"}, Expires: until}))
	if !g.Expires.Equal(until) {
		t.Fatalf("renewed grant ends %v, want %v", g.Expires, until)
	}
	if list := must(f.admin.ListGrants(ctx, admin.GrantRequest{Account: "buyer"})); len(list) != 1 || !list[0].Expires.Equal(until) {
		t.Fatalf("listed = %+v", list)
	}
	for name, req := range map[string]admin.GrantRequest{
		"both":         {ExpiresIn: "1h", Expires: until},
		"in the past":  {Expires: now.Add(-time.Hour)},
		"bad duration": {ExpiresIn: "soon"},
	} {
		t.Run(name, func(t *testing.T) {
			req.Account, req.Repository, req.Actions = "buyer", "other", []string{"pull"}
			_, err := f.admin.AddGrant(ctx, req)
			wantStatus(t, err, http.StatusBadRequest)
		})
	}
	_, err := f.admin.AddGrant(ctx, admin.GrantRequest{Account: "buyer", Repository: "shop/app", Actions: []string{"push"}})
	wantStatus(t, err, http.StatusConflict)
	wantStatus(t, f.admin.RemoveGrant(ctx, admin.GrantRequest{Account: "buyer", Repository: "shop/app", ExpiresIn: "1h"}), http.StatusBadRequest)

	// The end is part of what the policy decides on.
	var seen []policy.AdminTarget
	recording, err := admin.New(admin.Deps{Store: f.Store, Authorizer: &recordingAuthorizer{seen: &seen}}, admin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(recording)
	defer srv.Close()
	c, _ := admin.NewClient(srv.URL, f.Key("admin", nil), nil)
	must(c.AddGrant(ctx, admin.GrantRequest{Account: "buyer", Repository: "tool", Actions: []string{"pull"}, Expires: until}))
	if len(seen) != 1 || seen[0].Expires != until.Format(time.RFC3339) {
		t.Fatalf("policy saw %+v, want expires %s", seen, until.Format(time.RFC3339))
	}
}

// recordingAuthorizer allows everything and records the targets it was asked about.
type recordingAuthorizer struct{ seen *[]policy.AdminTarget }

func (r *recordingAuthorizer) Authorize(_ context.Context, in *policy.AdminInput) (policy.AdminDecision, error) {
	*r.seen = append(*r.seen, in.Target)
	return policy.AdminDecision{Allow: true}, nil
}

// TestPagedListingsAreForAdmins: the paged listings of every grant and every reservation are
// "grants.list" and "repos.list" without a target, which only admins hold; bad pages are 400s.
func TestPagedListingsAreForAdmins(t *testing.T) {
	f := newFixture(t)
	api, err := admin.New(admin.Deps{Store: f.Store, Authorizer: f.Engine}, admin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	must(f.admin.CreateAccount(ctx, admin.AccountRequest{Name: "user1"}))
	load := func(account string) *admin.Caller {
		p, err := keystore.Authenticate(ctx, f.Store, account, f.Key(account, nil), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return &admin.Caller{Principal: p}
	}
	user, root := load("user1"), load("admin")
	var forbidden *admin.Forbidden
	if _, err := api.PageGrants(ctx, user, keystore.GrantQuery{Limit: 10}); !errors.As(err, &forbidden) {
		t.Fatalf("a non-admin paged every grant: %v", err)
	}
	if _, err := api.PageRepositories(ctx, user, keystore.OwnershipQuery{Limit: 10}); !errors.As(err, &forbidden) {
		t.Fatalf("a non-admin paged every reservation: %v", err)
	}
	if _, err := api.PageGrants(ctx, root, keystore.GrantQuery{Limit: 10}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []keystore.GrantQuery{{Limit: 0}, {Limit: 1001}, {Offset: -1, Limit: 5}} {
		if _, err := api.PageGrants(ctx, root, q); !errors.Is(err, keystore.ErrInvalid) {
			t.Fatalf("PageGrants(%+v) = %v, want ErrInvalid", q, err)
		}
	}
}

// allowAll is an admin policy that permits every operation: what the API itself enforces is
// what remains.
type allowAll struct{}

func (allowAll) Authorize(context.Context, *policy.AdminInput) (policy.AdminDecision, error) {
	return policy.AdminDecision{Allow: true}, nil
}

// A key's restrictions are ceilings on every key it creates, whatever the admin policy allows:
// a new key inherits each restriction it does not narrow, and may not widen one.
func TestKeyRestrictionsAreCeilingsOfTheKeysAKeyCreates(t *testing.T) {
	env := testenv.New(t)
	api, err := admin.New(admin.Deps{Store: env.Store, Authorizer: allowAll{}}, admin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	f := &fixture{Env: env, t: t, server: srv}
	f.Account("user1")
	ceiling := keystore.Restrictions{Actions: []string{"pull"}, Repositories: []string{"shop/*", "tools"}, CIDRs: []string{"127.0.0.0/8"}}
	parent := f.client(f.Key("user1", func(k *keystore.Key) { k.Restrictions = ceiling }))

	inherited := must(parent.CreateKey(ctx, admin.KeyRequest{}))
	if !reflect.DeepEqual(inherited.Restrictions, ceiling) {
		t.Fatalf("a key created without restrictions has %+v, want the creator's %+v", inherited.Restrictions, ceiling)
	}
	narrower := keystore.Restrictions{Actions: []string{"pull"}, Repositories: []string{"shop/app", "tools"}, CIDRs: []string{"127.0.0.1/32"}}
	got := must(parent.CreateKey(ctx, admin.KeyRequest{Restrictions: narrower}))
	if !reflect.DeepEqual(got.Restrictions, narrower) {
		t.Fatalf("a narrower key has %+v, want %+v", got.Restrictions, narrower)
	}
	for name, r := range map[string]keystore.Restrictions{
		"more actions":         {Actions: []string{"pull", "push"}},
		"another repository":   {Repositories: []string{"other"}},
		"a wider pattern":      {Repositories: []string{"shop/**"}},
		"a pattern within one": {Repositories: []string{"shop/a*"}},
		"a wider network":      {CIDRs: []string{"0.0.0.0/0"}},
		"another network":      {CIDRs: []string{"10.0.0.0/8"}},
	} {
		if _, err := parent.CreateKey(ctx, admin.KeyRequest{Restrictions: r}); err == nil {
			t.Errorf("a key with %s than its creator was created", name)
		} else {
			wantStatus(t, err, http.StatusBadRequest)
		}
	}
}
