package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

func wantIn(t *testing.T, p page, what ...string) {
	t.Helper()
	for _, w := range what {
		if !strings.Contains(p.body, w) {
			t.Fatalf("page (HTTP %d) lacks %q:\n%s", p.status, w, p.body)
		}
	}
}

// TestSellerAndBuyer: a seller creates a key (shown once with its docker login command), sells
// pull on its listing until a date, sees who holds what until when, and revokes; the buyer sees
// the purchase, and sees it end when its time comes, as does the explanation.
func TestSellerAndBuyer(t *testing.T) {
	f := newFixture(t, false)
	alice := f.as("alice")

	alice.get("/console/keys")
	p := alice.post("/console/keys", url.Values{"csrf": {alice.csrf()}, "name": {"laptop"}, "expires": {"30d"}, "repos": {"shop/alice, previews/*"}})
	wantStatus(t, p, http.StatusOK, "create a key")
	wantIn(t, p, "shown only this once", "docker login registry.test --username alice --password-stdin", `data-copy="secret"`)
	keys, _ := f.store.ListKeys(ctx, "alice")
	var made keystore.Key
	for _, k := range keys {
		if k.Name == "laptop" {
			made = k
		}
	}
	if made.ID == "" || !made.Expires.Equal(f.clock.Now().Add(30*24*time.Hour)) || len(made.Restrictions.Repositories) != 2 {
		t.Fatalf("created key = %+v", made)
	}
	if p := alice.get("/console/keys"); !strings.Contains(p.body, made.ID) || strings.Contains(p.body, "rak_") {
		t.Fatal("the key list lacks the new key, or shows a secret")
	}

	p = alice.get("/console/repo?name=shop/alice")
	wantStatus(t, p, http.StatusOK, "listing page")
	wantIn(t, p, "account buyer", "no end", "Grant pull")
	for name, tt := range map[string]struct{ account, until, field string }{
		"unknown buyer":  {"nobody", "", "There is no account named"},
		"bad date":       {"mallory", "next week", "Enter a date and time"},
		"past date":      {"mallory", "2026-02-01T00:00", "must be in the future"},
		"bad name":       {"Mallory!", "", "Enter the buyer"},
		"past, instant":  {"mallory", "2026-03-01T11:59:59", "must be in the future"},
		"bad with space": {"mallory", "2026-03-02 12:00", "Enter a date and time"},
		"after 2200":     {"mallory", "2200-01-01T00:00:01", "no later than 2200-01-01 00:00 UTC"},
		"year 10000":     {"mallory", "9999-12-31T23:59:59-23:59", "no later than 2200-01-01 00:00 UTC"},
	} {
		t.Run(name, func(t *testing.T) {
			p := alice.post("/console/repo/sell", url.Values{"csrf": {alice.csrf()}, "repository": {"shop/alice"}, "account": {tt.account}, "until": {tt.until}})
			if p.status < 400 {
				t.Fatalf("HTTP %d", p.status)
			}
			wantIn(t, p, tt.field, `aria-invalid="true"`)
		})
	}
	p = alice.post("/console/repo/sell", url.Values{"csrf": {alice.csrf()}, "repository": {"shop/alice"}, "account": {"mallory"}, "until": {"2026-03-01T18:00"}})
	if p.status != http.StatusSeeOther || p.location != "/console/repo?name=shop%2Falice&done=sold" {
		t.Fatalf("sale: %d %s\n%s", p.status, p.location, p.body)
	}
	wantIn(t, alice.get(p.location), "Pull access is granted", "account mallory", "until 2026-03-01 18:00 UTC")

	mallory := f.as("mallory")
	wantIn(t, mallory.get("/console/access"), "shop/alice", "pull", "until 2026-03-01 18:00 UTC")
	p = alice.get("/console/explain?account=mallory&repository=shop/alice&action=pull")
	wantIn(t, p, "allowed", "account:mallory shop/alice: pull (until 2026-03-01T18:00:00Z)")

	f.clock.Add(7 * time.Hour) // past the end, within the sessions' 12 hours
	wantIn(t, mallory.get("/console/access"), "ended 2026-03-01 18:00 UTC")
	wantIn(t, alice.get("/console/repo?name=shop/alice"), "ended 2026-03-01 18:00 UTC")
	p = alice.get("/console/explain?account=mallory&repository=shop/alice&action=pull")
	wantIn(t, p, "refused")
	if strings.Contains(p.body, "account:mallory shop/alice") {
		t.Fatal("an ended grant reached the policy input")
	}

	p = alice.get("/console/repo/revoke?name=shop/alice&account=buyer")
	wantIn(t, p, "Revoke buyer’s pull on shop/alice?", "Cancel")
	p = alice.post("/console/repo/revoke", url.Values{"csrf": {alice.csrf()}, "repository": {"shop/alice"}, "account": {"buyer"}})
	wantStatus(t, p, http.StatusSeeOther, "revoke the buyer")
	if g, _ := f.store.ListGrants(ctx, keystore.GrantFilter{Subject: &keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}}); len(g) != 0 {
		t.Fatalf("buyer still holds %+v", g)
	}
}

// TestAdminPages: accounts are created (a bad name is explained next to the field), edited and
// disabled; grants and reservations are filtered and paged; keys are found by id.
func TestAdminPages(t *testing.T) {
	f := newFixture(t, false)
	for i := range 120 {
		must(t, f.store.PutGrant(ctx, keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"},
			Repository: fmt.Sprintf("shop/item%03d", i), Actions: []string{"pull"}, Expires: f.clock.Now().Add(time.Duration(i-10) * time.Hour)}, keystore.Unguarded))
	}
	b := f.as("admin")
	b.get("/console/admin/accounts")
	p := b.post("/console/admin/accounts", url.Values{"csrf": {b.csrf()}, "name": {"Bad Name"}, "groups": {"sellers"}})
	wantStatus(t, p, http.StatusBadRequest, "bad account name")
	wantIn(t, p, `id="name-error"`, "An account name is", `value="sellers"`)
	p = b.post("/console/admin/accounts", url.Values{"csrf": {b.csrf()}, "name": {"carol"}, "groups": {"sellers, buyers"}})
	if p.status != http.StatusSeeOther || !strings.Contains(p.location, "/console/admin/account?name=carol") {
		t.Fatalf("create: %d %s\n%s", p.status, p.location, p.body)
	}
	wantIn(t, b.get(p.location), "The account is created", `value="sellers, buyers"`)
	p = b.post("/console/admin/account", url.Values{"csrf": {b.csrf()}, "name": {"carol"}, "groups": {"buyers"}, "roles": {""}, "disabled": {"1"}})
	wantStatus(t, p, http.StatusSeeOther, "update")
	if a, _ := f.store.GetAccount(ctx, "carol"); !a.Disabled || len(a.Groups) != 1 || a.Groups[0] != "buyers" {
		t.Fatalf("carol = %+v", a)
	}
	wantIn(t, b.get("/console/admin/accounts?q=carol"), "carol", "disabled")

	p = b.get("/console/admin/grants?subject=account:buyer")
	wantIn(t, p, "Rows 1–50 of 121", "page 1 of 3", "Next page")
	p = b.get("/console/admin/grants?subject=account:buyer&page=3")
	wantIn(t, p, "Rows 101–121 of 121", "Previous page", "shop/item119")
	p = b.get("/console/admin/grants?state=ended")
	wantIn(t, p, "11 rows", "shop/item000", "shop/item010", "ended")
	p = b.get("/console/admin/grants?repository=item05")
	wantIn(t, p, "10 rows", "shop/item050", "shop/item059")

	wantIn(t, b.get("/console/admin/repos?owner=ali"), "shop/alice", "1 row")
	wantIn(t, b.get("/console/admin/repos?owner=nobody&page=7"), "No reservation matches")
	wantIn(t, b.get("/console/admin/grants?subject=nobody"), "No grant matches")
	wantIn(t, b.get("/console/admin/grants?subject=account:buyer&page=99"), "Rows 101–121 of 121")
	id := keyID(f.keys["mallory"])
	wantIn(t, b.get("/console/admin/keys?id="+id[:5]), id, "mallory")
	wantIn(t, b.get("/console/admin/keys?id=ab"), "at least the first 4 characters")
	wantIn(t, b.get("/console/admin/status"), "This server does not report its status")
}

// TestExplainPageWithholdsRulesAboutTheAccount: the seller asking why an account can or cannot
// pull its listing sees each verdict, and the rule or reason behind it only when it reads nothing
// of who the account is: not that the account is an admin, is in a group granted the listing,
// or is refused by an extension's rule for its group. Those read "a rule about the account".
// An admin sees every rule and reason.
func TestExplainPageWithholdsRulesAboutTheAccount(t *testing.T) {
	f := newFixtureWith(t, fixtureConfig{extension: `package regoauth.extensions.test

# METADATA
# title: the staff buy nothing
deny contains {"type": "repository", "name": scope.name, "action": "pull", "reason": "the staff buy nothing"} if {
	some scope in input.scopes
	"staff" in input.principal.groups
}
`})
	for _, a := range []keystore.Account{{Name: "vic", Groups: []string{"vip"}}, {Name: "sue", Groups: []string{"staff"}}} {
		a.Created = f.clock.Now()
		must(t, f.store.CreateAccount(ctx, a))
	}
	must(t, f.store.PutGrant(ctx, keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "vip"}, Repository: "shop/alice", Actions: []string{"pull"}}, keystore.Unguarded))
	must(t, f.store.PutGrant(ctx, keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "sue"}, Repository: "shop/alice", Actions: []string{"pull"}}, keystore.Unguarded))
	alice, admin := f.as("alice"), f.as("admin")
	for _, tt := range []struct {
		account string
		// seller is what the seller reads, hidden what it must not, admin what an admin reads.
		seller, hidden, admin []string
	}{
		{"admin", []string{"allowed", "by rule “a rule about the account”"}, []string{"“admin”"}, []string{"allowed", "by rule “admin”"}},
		{"vic", []string{"allowed", "by rule “a rule about the account”"}, []string{"vip", "“grant”"}, []string{"allowed", "by rule “grant”", "groups vip"}},
		{"sue", []string{"refused — refused by a rule about the account", "by rule “grant”", "by rule “a rule about the account”"}, []string{"staff"}, []string{"refused — the staff buy nothing", "by rule “the staff buy nothing”"}},
		{"buyer", []string{"allowed", "by rule “grant”"}, []string{"a rule about the account"}, []string{"allowed", "by rule “grant”"}},
	} {
		t.Run(tt.account, func(t *testing.T) {
			path := "/console/explain?account=" + tt.account + "&repository=shop/alice&action=pull"
			p := alice.get(path)
			wantStatus(t, p, http.StatusOK, "explain as the seller")
			for _, h := range tt.hidden {
				if strings.Contains(p.body, h) {
					t.Errorf("the seller reads %q", h)
				}
			}
			wantIn(t, p, tt.seller...)
			wantIn(t, admin.get(path), tt.admin...)
		})
	}
}

// An account page saved after another admin changed the account writes only what was changed
// on the page: the account another admin disabled meanwhile stays disabled when a page opened
// before is saved with new groups, and roles given meanwhile stay too.
func TestAStaleAccountPageUndoesNoChange(t *testing.T) {
	f := newFixture(t, false)
	b := f.as("admin")
	page := b.get("/console/admin/account?name=mallory")
	wantIn(t, page, `name="shown_disabled" value="0"`)
	form := url.Values{"csrf": {b.csrf()}, "name": {"mallory"}, "groups": {"buyers"}, "roles": {""}}
	for _, field := range []string{"shown_groups", "shown_roles", "shown_disabled"} {
		m := regexp.MustCompile(`name="` + field + `" value="([^"]*)"`).FindStringSubmatch(page.body)
		if m == nil {
			t.Fatalf("the account page has no %s", field)
		}
		form.Set(field, m[1])
	}
	// Meanwhile another admin disables mallory and gives it a role.
	disabled, roles := true, []string{"checkout"}
	must(t, f.store.UpdateAccount(ctx, keystore.Account{Name: "mallory", Roles: roles, Disabled: disabled}))

	wantStatus(t, b.post("/console/admin/account", form), http.StatusSeeOther, "saving the page opened before")
	a, err := f.store.GetAccount(ctx, "mallory")
	must(t, err)
	if !a.Disabled || !slices.Equal(a.Groups, []string{"buyers"}) || !slices.Equal(a.Roles, roles) {
		t.Fatalf("mallory after a stale page was saved: %+v; want disabled, groups [buyers], roles [checkout]", a)
	}
	// What the page changes is written: unchecking disabled enables it.
	page = b.get("/console/admin/account?name=mallory")
	wantIn(t, page, `name="shown_disabled" value="1"`, `value="buyers"`)
	form = url.Values{"csrf": {b.csrf()}, "name": {"mallory"}, "groups": {"buyers"}, "roles": {"checkout"},
		"shown_groups": {"buyers"}, "shown_roles": {"checkout"}, "shown_disabled": {"1"}}
	wantStatus(t, b.post("/console/admin/account", form), http.StatusSeeOther, "enabling mallory")
	if a, _ := f.store.GetAccount(ctx, "mallory"); a.Disabled {
		t.Fatalf("mallory still disabled: %+v", a)
	}
}
