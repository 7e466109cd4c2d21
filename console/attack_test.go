package console_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

// TestAnotherAccountsThingsAreOutOfReach: mallory, a legitimate account, tries every console
// endpoint on what belongs to alice, or to admins. Each is refused and nothing changes.
func TestAnotherAccountsThingsAreOutOfReach(t *testing.T) {
	f := newFixture(t, false)
	mallory := f.as("mallory")
	aliceKey := keyID(f.keys["alice"])

	if p := mallory.get("/console/keys"); strings.Contains(p.body, aliceKey) || !strings.Contains(p.body, keyID(f.keys["mallory"])) {
		t.Fatal("mallory's key list shows another account's key, or not her own")
	}
	for _, path := range []string{
		"/console/repo?name=shop/alice",                                    // who bought alice's listing
		"/console/explain?account=buyer&repository=shop/alice&action=pull", // why alice's buyer can pull
		"/console/explain?account=alice&repository=shop/alice&action=push",
		"/console/admin/accounts",
		"/console/admin/account?name=alice",
		"/console/admin/grants",
		"/console/admin/repos",
		"/console/admin/keys?id=" + aliceKey[:6],
		"/console/admin/status",
	} {
		p := mallory.get(path)
		if p.status != http.StatusForbidden || strings.Contains(p.body, aliceKey) || strings.Contains(p.body, "account:buyer") {
			t.Errorf("GET %s: HTTP %d, want 403 without alice's records", path, p.status)
		}
	}
	mallory.get("/console/keys")
	token := mallory.csrf()
	for name, tt := range map[string]struct {
		path string
		form url.Values
	}{
		"revoke alice's key":          {"/console/keys/revoke", url.Values{"id": {aliceKey}}},
		"sell alice's listing":        {"/console/repo/sell", url.Values{"repository": {"shop/alice"}, "account": {"mallory"}}},
		"revoke alice's buyer":        {"/console/repo/revoke", url.Values{"repository": {"shop/alice"}, "account": {"buyer"}}},
		"release alice's listing":     {"/console/repos/release", url.Values{"name": {"shop/alice"}}},
		"reserve a name":              {"/console/repos/reserve", url.Values{"repository": {"shop/mallory"}}},
		"create an account":           {"/console/admin/accounts", url.Values{"name": {"sock"}, "roles": {"admin"}}},
		"make herself admin":          {"/console/admin/account", url.Values{"name": {"mallory"}, "roles": {"admin"}}},
		"disable alice":               {"/console/admin/account", url.Values{"name": {"alice"}, "disabled": {"1"}}},
		"sell to herself via a glob":  {"/console/repo/sell", url.Values{"repository": {"shop/*"}, "account": {"mallory"}}},
		"revoke via a key id pattern": {"/console/keys/revoke", url.Values{"id": {"*"}}},
	} {
		t.Run(name, func(t *testing.T) {
			tt.form.Set("csrf", token)
			p := mallory.post(tt.path, tt.form)
			if p.status < 400 {
				t.Fatalf("POST %s: HTTP %d %s\n%s", tt.path, p.status, p.location, p.body)
			}
		})
	}
	// A key form naming another account makes a key for the caller: the console never takes
	// the account from the form.
	p := mallory.post("/console/keys", url.Values{"csrf": {token}, "name": {"x"}, "account": {"alice"}})
	if p.status != http.StatusOK || !strings.Contains(p.body, "--username mallory") {
		t.Fatalf("key form with account=alice: HTTP %d\n%s", p.status, p.body)
	}
	// Nothing of alice's changed.
	if k, _ := f.store.GetKey(ctx, aliceKey); k.Revoked {
		t.Fatal("alice's key was revoked")
	}
	if keys, _ := f.store.ListKeys(ctx, "alice"); len(keys) != 1 {
		t.Fatalf("alice has %d keys", len(keys))
	}
	grants, _ := f.store.ListGrants(ctx, keystore.GrantFilter{})
	if len(grants) != 1 || grants[0].Subject.Name != "buyer" {
		t.Fatalf("grants changed: %+v", grants)
	}
	if o, err := f.store.GetOwnership(ctx, "shop/alice"); err != nil || o.Owner != "alice" {
		t.Fatalf("alice's listing: %+v %v", o, err)
	}
	for _, name := range []string{"alice", "mallory"} {
		a, _ := f.store.GetAccount(ctx, name)
		if a.Disabled || len(a.Roles) > 0 {
			t.Fatalf("account %s changed: %+v", name, a)
		}
	}
	if _, err := f.store.GetAccount(ctx, "sock"); err == nil {
		t.Fatal("mallory created an account")
	}
}

// TestRestrictedKeysChangeNothing: a read-only key, or one limited to repositories, signs in to
// look; every change it attempts is refused by the admin policy. A key limited to networks does
// not sign in from outside them.
func TestRestrictedKeysChangeNothing(t *testing.T) {
	f := newFixture(t, false)
	for name, r := range map[string]keystore.Restrictions{
		"read-only":         {Actions: []string{"pull"}},
		"repositories only": {Repositories: []string{"shop/alice"}},
		"inside networks":   {CIDRs: []string{"127.0.0.0/8", "::1/128"}},
	} {
		t.Run(name, func(t *testing.T) {
			key := f.newKey("alice", r)
			b := f.browser()
			b.signin("alice", key)
			p := b.get("/console/keys")
			if !strings.Contains(p.body, "restricted key") || strings.Contains(p.body, "Create the key") {
				t.Fatalf("keys page for a restricted key:\n%s", p.body)
			}
			token := b.csrf()
			before, _ := f.store.ListKeys(ctx, "alice")
			for path, form := range map[string]url.Values{
				"/console/keys":          {"name": {"more"}},
				"/console/repo/sell":     {"repository": {"shop/alice"}, "account": {"mallory"}},
				"/console/repo/revoke":   {"repository": {"shop/alice"}, "account": {"buyer"}},
				"/console/keys/revoke":   {"id": {keyID(f.keys["alice"])}},
				"/console/repos/release": {"name": {"shop/alice"}},
			} {
				form.Set("csrf", token)
				if p := b.post(path, form); p.status != http.StatusForbidden {
					t.Errorf("POST %s with a %s key: HTTP %d, want 403", path, name, p.status)
				}
			}
			after, _ := f.store.ListKeys(ctx, "alice")
			grants, _ := f.store.ListGrants(ctx, keystore.GrantFilter{Repository: "shop/alice"})
			if len(after) != len(before) || slices.ContainsFunc(after, func(k keystore.Key) bool { return k.Revoked }) || len(grants) != 1 {
				t.Fatalf("a %s key changed something: keys %+v, grants %+v", name, after, grants)
			}
		})
	}
	outside := f.newKey("alice", keystore.Restrictions{CIDRs: []string{"10.0.0.0/8"}})
	if p := f.browser().trySignin("alice", outside); p.status != http.StatusUnauthorized {
		t.Fatalf("a key limited to 10.0.0.0/8 signed in from loopback: %d", p.status)
	}
}

// TestNoRedirectOutOfTheConsole: the "back" a form carries can only name a console page.
func TestNoRedirectOutOfTheConsole(t *testing.T) {
	f := newFixture(t, false)
	b := f.as("mallory")
	for _, back := range []string{"https://evil.example/", "//evil.example/console/", "/console/\\evil", "/elsewhere"} {
		id := keyID(f.newKey("mallory", keystore.Restrictions{}))
		b.get("/console/keys/revoke?id=" + id)
		p := b.post("/console/keys/revoke", url.Values{"csrf": {b.csrf()}, "id": {id}, "back": {back}})
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/console/keys") {
			t.Errorf("back %q: redirected to %q", back, p.location)
		}
	}
}

// TestUntrustedTextIsEscaped: what an account types (a key name) is shown as text, never as
// markup.
func TestUntrustedTextIsEscaped(t *testing.T) {
	f := newFixture(t, false)
	b := f.as("mallory")
	b.get("/console/keys")
	name := `<script>alert(1)</script>"><img src=x>`
	p := b.post("/console/keys", url.Values{"csrf": {b.csrf()}, "name": {name}})
	wantStatus(t, p, http.StatusOK, "create a key with markup in its name")
	for _, page := range []page{p, b.get("/console/keys")} {
		if strings.Contains(page.body, "<script>alert") || strings.Contains(page.body, "<img src=x>") {
			t.Fatal("a key name was rendered as markup")
		}
	}
}
