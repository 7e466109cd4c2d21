package admin_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/internal/testenv"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// explainFixture is the admin API with an explainer, over a store where user1 (group buyers)
// holds pull on image, the buyers hold pull on shop/*, and user1 owns mine.
func explainFixture(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixture(t, true)
	f.Account("user1", "buyers")
	f.Account("user2")
	f.Grant("user1", "image", "pull")
	f.GrantTo(keystore.Subject{Kind: keystore.SubjectGroup, Name: "buyers"}, "shop/*", "pull")
	f.Grant("user2", "image", "push")
	f.Reserve("mine", "user1")
	return f, f.Key("user1", nil)
}

func verdicts(x policy.Explanation) map[string]bool {
	out := map[string]bool{}
	for _, v := range x.Actions {
		out[v.Type+":"+v.Name+":"+v.Action] = v.Allowed
	}
	return out
}

func TestExplainEndpoint(t *testing.T) {
	f, user1Key := explainFixture(t)
	x := must(f.admin.Explain(ctx, admin.ExplainRequest{Account: "user1", Scopes: []string{"repository:image:push,pull repository:shop/app:pull", "repository:mine:delete"}}))
	want := map[string]bool{
		"repository:image:pull": true, "repository:image:push": false,
		"repository:shop/app:pull": true, "repository:mine:delete": true,
	}
	if got := verdicts(x); len(got) != len(want) || func() bool {
		for k, v := range want {
			if got[k] != v {
				return true
			}
		}
		return false
	}() {
		t.Fatalf("verdicts = %v, want %v", got, want)
	}
	if x.Input == nil || x.Input.Principal.Account != "user1" || len(x.Input.Grants) != 2 || x.Input.Principal.Key != nil || len(x.Input.Owned) != 1 {
		t.Fatalf("input = %+v", x.Input)
	}
	if x.Revision == "" || len(x.Rules) == 0 {
		t.Fatalf("explanation = %+v", x)
	}

	// With a read-only key, the key's restriction is the reason.
	ro := must(f.admin.CreateKey(ctx, admin.KeyRequest{Account: "user1", Restrictions: keystore.Restrictions{Actions: []string{"pull"}}}))
	x = must(f.admin.Explain(ctx, admin.ExplainRequest{Account: "user1", KeyID: ro.ID, Scopes: []string{"repository:mine:push"}}))
	if len(x.Actions) != 1 || x.Actions[0].Allowed || x.Actions[0].Reason != "the API key's restrictions forbid it" {
		t.Fatalf("read-only key: %+v", x.Actions)
	}

	// An account explains itself, not others.
	self := f.client(user1Key)
	if _, err := self.Explain(ctx, admin.ExplainRequest{Account: "user1", Scopes: []string{"repository:image:pull"}}); err != nil {
		t.Fatal(err)
	}
	_, err := self.Explain(ctx, admin.ExplainRequest{Account: "user2", Scopes: []string{"repository:image:pull"}})
	wantStatus(t, err, http.StatusForbidden)

	cidrKey := must(f.admin.CreateKey(ctx, admin.KeyRequest{Account: "user1", Restrictions: keystore.Restrictions{CIDRs: []string{"10.0.0.0/8"}}}))
	for name, req := range map[string]admin.ExplainRequest{
		"network key without address": {Account: "user1", KeyID: cidrKey.ID},
		"bad address":                 {Account: "user1", ClientIP: "nowhere"},
		"bad account name":            {Account: "Not Valid"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.admin.Explain(ctx, req)
			wantStatus(t, err, http.StatusBadRequest)
		})
	}
	_, err = f.admin.Explain(ctx, admin.ExplainRequest{Account: "nobody"})
	wantStatus(t, err, http.StatusNotFound)
	// Another account's key is no key of the account (TestExplainProbesNoKeyIDs).
	_, err = f.admin.Explain(ctx, admin.ExplainRequest{Account: "user2", KeyID: ro.ID, Scopes: []string{"repository:image:pull"}})
	wantStatus(t, err, http.StatusNotFound)

	x = must(f.admin.Explain(ctx, admin.ExplainRequest{Account: "user1", KeyID: cidrKey.ID, ClientIP: "10.1.2.3", Scopes: []string{"repository:image:pull"}}))
	if !verdicts(x)["repository:image:pull"] {
		t.Fatalf("from inside the key's network: %+v", x.Actions)
	}
}

func TestExplainNeedsAnExplainer(t *testing.T) {
	f := newFixture(t)
	_, err := f.admin.Explain(ctx, admin.ExplainRequest{Account: "admin"})
	wantStatus(t, err, http.StatusNotFound)
}

// TestExplainForOwners: the owner of a repository asks why another account can or cannot pull
// it, and learns nothing of that account's other reservations; any other repository, or a
// request naming one beside it, stays refused.
func TestExplainForOwners(t *testing.T) {
	f, _ := explainFixture(t)
	f.Reserve("shop/app", "user2")
	owner := f.client(f.Key("user2", nil))
	x := must(owner.Explain(ctx, admin.ExplainRequest{Account: "user1", Scopes: []string{"repository:shop/app:pull"}}))
	if !verdicts(x)["repository:shop/app:pull"] {
		t.Fatalf("verdicts = %v", verdicts(x))
	}
	if len(x.Input.Owned) != 0 {
		t.Fatalf("the owner sees the buyer's reservations %v", x.Input.Owned)
	}
	// Nor what accounts.get refuses it: the buyer's groups, roles and key, and the rules that
	// fired on them. The verdict keeps the rule that decided it.
	if err := f.Store.UpdateAccount(ctx, keystore.Account{Name: "user1", Groups: []string{"buyers", "vip"}, Roles: []string{"checkout"}}); err != nil {
		t.Fatal(err)
	}
	buyerKey := f.Key("user1", func(k *keystore.Key) {
		k.Name = "laptop"
		k.Restrictions = keystore.Restrictions{Repositories: []string{"shop/*"}}
	})
	keyID, _ := keystore.ParseAPIKey(buyerKey)
	x = must(owner.Explain(ctx, admin.ExplainRequest{Account: "user1", Scopes: []string{"repository:shop/app:pull"}}))
	p := x.Input.Principal
	if !x.AccountWithheld || len(p.Groups)+len(p.Roles)+len(x.Rules) != 0 || p.Key != nil {
		t.Fatalf("the owner sees the buyer's groups %v, roles %v, key %+v, %d rules that fired", p.Groups, p.Roles, p.Key, len(x.Rules))
	}
	for _, g := range x.Input.Grants {
		if g.Subject != "account:user1" || g.Repository != "shop/app" {
			t.Fatalf("the owner sees the buyer's grant %+v, of a group or on a pattern", g)
		}
	}
	if v := x.Actions; len(v) != 1 || !v[0].Allowed || len(v[0].Rules) == 0 {
		t.Fatalf("the owner's verdict = %+v, want pull allowed by a rule it names", v)
	}
	// Nor does it name the buyer's key (TestExplainNamesKeysOnlyForThoseWhoMayListThem).
	_, err := owner.Explain(ctx, admin.ExplainRequest{Account: "user1", KeyID: keyID, Scopes: []string{"repository:shop/app:pull"}})
	wantStatus(t, err, http.StatusForbidden)
	// Those who may read the account see all of it.
	for who, c := range map[string]*admin.Client{"an admin": f.admin, "the account itself": f.client(f.Key("user1", nil))} {
		x = must(c.Explain(ctx, admin.ExplainRequest{Account: "user1", Scopes: []string{"repository:shop/app:pull"}}))
		if x.AccountWithheld || !slices.Equal(x.Input.Principal.Groups, []string{"buyers", "vip"}) || len(x.Input.Principal.Roles) != 1 || len(x.Rules) == 0 {
			t.Fatalf("%s sees groups %v, roles %v, %d rules", who, x.Input.Principal.Groups, x.Input.Principal.Roles, len(x.Rules))
		}
	}
	for name, scopes := range map[string][]string{
		"a repository it does not own": {"repository:image:pull"},
		"its own beside another":       {"repository:shop/app:pull", "repository:mine:pull"},
		"no repository":                {},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := owner.Explain(ctx, admin.ExplainRequest{Account: "user1", Scopes: scopes})
			wantStatus(t, err, http.StatusForbidden)
		})
	}
}

// blockingExplainer holds every explanation until released.
type blockingExplainer struct {
	started chan struct{}
	release chan struct{}
}

func (b blockingExplainer) Explain(context.Context, *policy.Input) (policy.Explanation, error) {
	b.started <- struct{}{}
	<-b.release
	return policy.Explanation{}, nil
}

// Explanations run one at a time: a traced evaluation costs tens of decisions, so a second
// caller is refused at once (503, Retry-After) rather than queued behind the first.
func TestExplanationsRunOneAtATime(t *testing.T) {
	env := testenv.New(t)
	x := blockingExplainer{started: make(chan struct{}), release: make(chan struct{})}
	f := serveFixture(t, env, admin.Deps{Store: env.Store, Authorizer: env.Engine, Explainer: x})
	req := admin.ExplainRequest{Account: "admin", Scopes: []string{"repository:a:pull"}}
	first := make(chan error, 1)
	go func() { _, err := f.admin.Explain(ctx, req); first <- err }()
	<-x.started
	_, err := f.admin.Explain(ctx, req)
	wantStatus(t, err, http.StatusServiceUnavailable)
	close(x.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	go func() { <-x.started }()
	if _, err := f.admin.Explain(ctx, req); err != nil {
		t.Fatalf("after the first finished: %v", err)
	}
}

// TestExplainProbesNoKeyIDs: an account naming, in its own explanation, a key of another account
// is answered exactly as when it names a key that does not exist, so key ids cannot be probed
// (nor matched to their account) through explanations, as through revocations.
func TestExplainProbesNoKeyIDs(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{})
		buyer := s.client(s.account("buyer"))
		otherKey, _ := keystore.ParseAPIKey(s.account("other"))
		unknown, _, _, err := keystore.NewAPIKey(rand.Reader)
		s.must(err)
		unknownID, _ := keystore.ParseAPIKey(unknown)
		answer := func(id string) string {
			_, err := buyer.Explain(t.Context(), admin.ExplainRequest{Account: "buyer", KeyID: id, Scopes: []string{"repository:shop/app:pull"}})
			var apiErr *admin.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("key %s: error = %v, want an API error", id, err)
			}
			return fmt.Sprintf("%d %s %s", apiErr.Status, apiErr.Code, strings.ReplaceAll(apiErr.Message, id, "ID"))
		}
		if other, none := answer(otherKey), answer(unknownID); other != none {
			t.Fatalf("another account's key is answered %q, a key that does not exist %q", other, none)
		}
	})
}

// TestExplainNamesKeysOnlyForThoseWhoMayListThem: an explanation with a key shows what that key
// may do, so naming a key takes what listing the account's keys takes (its own key aside). The
// owner of a repository, asking about its buyer, names none: neither whether a key id is the
// buyer's, nor whether it is revoked, limited to networks (and which addresses they hold), or
// read-only. It is refused before the key is looked up, whatever the id.
func TestExplainNamesKeysOnlyForThoseWhoMayListThem(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{})
		ctx := t.Context()
		seller := s.client(s.account("seller"))
		s.must(s.store.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "seller"}, 0))
		buyerKey := s.account("buyer")
		s.must(s.store.PutGrant(ctx, keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}, Repository: "shop/app", Actions: []string{"pull"}}, keystore.Unguarded))
		laptop := must(s.admin.CreateKey(ctx, admin.KeyRequest{Account: "buyer", Name: "laptop",
			Restrictions: keystore.Restrictions{Actions: []string{"pull"}, CIDRs: []string{"10.0.0.0/8"}}}))
		revoked := must(s.admin.CreateKey(ctx, admin.KeyRequest{Account: "buyer"}))
		must(s.admin.RevokeKey(ctx, revoked.ID))
		unknown, _, _, err := keystore.NewAPIKey(rand.Reader)
		s.must(err)
		unknownID, _ := keystore.ParseAPIKey(unknown)
		for name, req := range map[string]admin.ExplainRequest{
			"a network key without an address": {KeyID: laptop.ID},
			"a network key from outside":       {KeyID: laptop.ID, ClientIP: "192.0.2.1"},
			"a network key from inside":        {KeyID: laptop.ID, ClientIP: "10.1.2.3"},
			"a revoked key":                    {KeyID: revoked.ID},
			"an unknown key":                   {KeyID: unknownID},
		} {
			t.Run(name, func(t *testing.T) {
				req.Account, req.Scopes = "buyer", []string{"repository:shop/app:pull"}
				x, err := seller.Explain(ctx, req)
				if status(err) != http.StatusForbidden {
					t.Fatalf("the owner naming the buyer's key: %v, %+v", err, x.Actions)
				}
				// The buyer and an admin name it.
				for who, c := range map[string]*admin.Client{"the buyer": s.client(buyerKey), "an admin": s.admin} {
					if _, err := c.Explain(ctx, req); status(err) == http.StatusForbidden {
						t.Fatalf("%s: %v", who, err)
					}
				}
			})
		}
		// Without a key the owner's question is answered.
		x := must(seller.Explain(ctx, admin.ExplainRequest{Account: "buyer", Scopes: []string{"repository:shop/app:pull"}}))
		if !verdicts(x)["repository:shop/app:pull"] || !x.AccountWithheld {
			t.Fatalf("the owner's explanation: %+v", x)
		}
	})
}

// TestExplainWithARepositoryLimitedKey: a key limited to repositories lists only grants on the
// names its patterns cover, and no keys; its explanations show no more. It has its own requests
// of a covered repository explained, with its own key or none, and sees of the account what an
// owner would: its grants on the name asked about and the verdicts, not the rows of its groups
// or its patterns, nor the rules that fired; it names no other key of its account.
func TestExplainWithARepositoryLimitedKey(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{})
		ctx := t.Context()
		s.account("ci", "builders")
		for _, g := range []keystore.Grant{
			{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "ci"}, Repository: "ci/app", Actions: []string{"pull"}},
			{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "ci"}, Repository: "ci/*", Actions: []string{"pull", "push"}},
			{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "builders"}, Repository: "ci/**", Actions: []string{"delete"}},
		} {
			s.must(s.store.PutGrant(ctx, g, keystore.Unguarded))
		}
		deploy := must(s.admin.CreateKey(ctx, admin.KeyRequest{Account: "ci", Name: "deploy", Restrictions: keystore.Restrictions{CIDRs: []string{"10.0.0.0/8"}}}))
		limitedKey := must(s.admin.CreateKey(ctx, admin.KeyRequest{Account: "ci", Name: "app-only", Restrictions: keystore.Restrictions{Repositories: []string{"ci/app"}}}))
		limited := s.client(limitedKey.Secret)
		// What the key may read: its grants on ci/app, not the row of the pattern, nor the keys.
		if _, err := limited.ListGrants(ctx, admin.GrantRequest{Account: "ci", Repository: "ci/*"}); status(err) != http.StatusForbidden {
			t.Fatalf("the limited key lists the pattern's row: %v", err)
		}
		if _, err := limited.ListKeys(ctx, "ci"); status(err) != http.StatusForbidden {
			t.Fatalf("the limited key lists the keys: %v", err)
		}

		for _, id := range []string{"", limitedKey.ID} {
			x, err := limited.Explain(ctx, admin.ExplainRequest{Account: "ci", KeyID: id, Scopes: []string{"repository:ci/app:pull,push,delete"}})
			if err != nil {
				t.Fatalf("key %q: %v", id, err)
			}
			want := map[string]bool{"repository:ci/app:pull": true, "repository:ci/app:push": true, "repository:ci/app:delete": true}
			if got := verdicts(x); !maps.Equal(got, want) {
				t.Fatalf("key %q: verdicts %v, want %v", id, got, want)
			}
			p := x.Input.Principal
			if !x.AccountWithheld || len(p.Groups)+len(p.Roles)+len(x.Rules) != 0 || p.Key != nil && *p.Key != (policy.Key{ID: id}) {
				t.Fatalf("key %q: the limited key sees groups %v, roles %v, key %+v, %d rules that fired", id, p.Groups, p.Roles, p.Key, len(x.Rules))
			}
			for _, g := range x.Input.Grants {
				if g.Subject != "account:ci" || g.Repository != "ci/app" {
					t.Fatalf("key %q: the limited key sees the grant %+v", id, g)
				}
			}
		}
		_, err := limited.Explain(ctx, admin.ExplainRequest{Account: "ci", KeyID: deploy.ID, ClientIP: "10.0.0.1", Scopes: []string{"repository:ci/app:pull"}})
		if status(err) != http.StatusForbidden {
			t.Fatalf("the limited key names the account's other key: %v", err)
		}
		// An unrestricted key of the account sees all of it.
		x := must(s.client(s.newKey("ci", admin.KeyRequest{})).Explain(ctx, admin.ExplainRequest{Account: "ci", KeyID: deploy.ID, ClientIP: "10.0.0.1", Scopes: []string{"repository:ci/app:pull"}}))
		if x.AccountWithheld || len(x.Input.Grants) != 3 || x.Input.Principal.Key.Name != "deploy" {
			t.Fatalf("an unrestricted key of the account sees %+v", x.Input)
		}
	})
}

// TestExplainShowsThePolicysDataToOperatorsOnly: the rules that fired carry their arguments,
// which for a function rule are values of the evaluation, the configuration and extension data
// among them: a deny rule whole, with the accounts and groups it excepts, even when it does not
// apply to the request. An account explaining its own request sees which rules fired and the
// verdicts with their reasons; the arguments only whoever may read the service's status
// (status.read: admins).
func TestExplainShowsThePolicysDataToOperatorsOnly(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		".manifest": `{"roots": ["regoauth/config"]}`,
		"data.json": `{"regoauth": {"config": {"deny": [{"repositories": ["internal/**"], "except": ["account:ceo", "group:staff"], "reason": "internal images"}]}}}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{BundleDir: dir})
		ctx := t.Context()
		buyer := s.client(s.account("buyer"))
		req := admin.ExplainRequest{Account: "buyer", Scopes: []string{"repository:shop/app:pull", "repository:internal/x:pull"}}
		secret := func(x policy.Explanation) []string {
			var found []string
			for _, r := range x.Rules {
				for _, a := range r.Args {
					if strings.Contains(a, "account:ceo") || strings.Contains(a, "internal/**") {
						found = append(found, r.Rule+"("+strings.Join(r.Args, ", ")+")")
					}
				}
			}
			return found
		}
		x := must(buyer.Explain(ctx, req))
		if found := secret(x); len(found) != 0 {
			t.Fatalf("the account reads the configuration in the rules that fired: %v", found)
		}
		if len(x.Rules) == 0 || x.AccountWithheld {
			t.Fatalf("the account's own explanation lost its rules: %+v", x)
		}
		want := map[string]string{"shop/app": "no grant or rule permits it", "internal/x": "a deny rule forbids it: internal images"}
		for _, v := range x.Actions {
			if v.Allowed || v.Reason != want[v.Name] {
				t.Fatalf("verdict %+v, want the reason %q", v, want[v.Name])
			}
			for _, r := range v.Rules {
				if !slices.Equal(r.Args, []string{"repository:" + v.Name, "pull"}) {
					t.Fatalf("verdict rule %+v, want the scope and action", r)
				}
			}
		}
		// Admins debug policies: they see every argument.
		if found := secret(must(s.admin.Explain(ctx, req))); len(found) == 0 {
			t.Fatal("an admin no longer sees the rules' arguments")
		}
	})
}

// explainJSON posts req to POST /policy/explain with key and returns the body as sent.
func (s *stack) explainJSON(key string, req admin.ExplainRequest) string {
	s.t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		s.t.Fatal(err)
	}
	r, _ := http.NewRequestWithContext(s.t.Context(), "POST", s.server.URL+admin.Prefix+"/policy/explain", bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+key)
	r.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		s.t.Fatalf("explain %+v: HTTP %d %v\n%s", req, resp.StatusCode, err, raw)
	}
	return string(raw)
}

// TestExplainForOwnersWithholdsRulesAboutTheAccount: the owner of a repository explaining
// another account's request of it learns each verdict, and the rule behind it when that rule
// reads nothing of who the account is (the owner's reservation, the account's own row naming
// the repository, a public repository), not a rule or reason that does: "admin" would say the
// account holds an admin role, a group's row its group, a deny rule chosen by subject the
// group or role it names, "personal namespace" what the account's name reserves. Those read
// "a rule about the account". Admins see every rule and reason.
func TestExplainForOwnersWithholdsRulesAboutTheAccount(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		".manifest": `{"roots": ["regoauth/config"]}`,
		"data.json": `{"regoauth": {"config": {"personal_namespaces": true, "reserved_namespaces": ["shop"], "deny": [{"repositories": ["shop/**"], "subjects": ["group:staff"], "reason": "the staff buy nothing"}]}}}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{BundleDir: dir})
		ctx := t.Context()
		sellerKey := s.account("sam")
		s.role("ops", "admin")
		s.account("vic", "vip")
		s.account("sue", "staff")
		s.account("ann")
		s.account("carol")
		must(s.admin.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/app", Owner: "sam"}))
		// The admin policy refuses a name in an account's personal namespace; a reservation
		// made before personal namespaces were turned on is still in the store.
		s.rawOwnership("carol/app", "sam")
		must(s.admin.AddGrant(ctx, admin.GrantRequest{Group: "vip", Repository: "shop/app", Actions: []string{"pull"}}))
		for _, who := range []string{"sue", "ann"} {
			must(s.admin.AddGrant(ctx, admin.GrantRequest{Account: who, Repository: "shop/app", Actions: []string{"pull"}}))
		}

		type verdict struct {
			allowed bool
			reason  string
			rules   string // the titles of the verdict's rules, joined by ", "
		}
		withheld := verdict{true, "", "a rule about the account"}
		for _, tt := range []struct {
			name, account, repository string
			// owner is what the owner sees per action, admin what an admin sees.
			owner, admin map[string]verdict
			// secrets are what the owner must read nowhere in the answer.
			secrets []string
		}{
			{
				name: "an admin account", account: "ops", repository: "shop/app",
				owner: map[string]verdict{"pull": withheld, "push": withheld, "delete": withheld},
				admin: map[string]verdict{"pull": {true, "", "admin"}, "push": {true, "", "admin"}, "delete": {true, "", "admin"}},
				// The owner's own answer carries "admin" nowhere: the role, the rule, the
				// library's admin_roles.
				secrets: []string{"admin"},
			},
			{
				name: "a group's grant", account: "vic", repository: "shop/app",
				owner:   map[string]verdict{"pull": withheld, "push": {false, "no grant or rule permits it", ""}},
				admin:   map[string]verdict{"pull": {true, "", "grant"}, "push": {false, "no grant or rule permits it", ""}},
				secrets: []string{"vip", "group:", `"grant"`},
			},
			{
				name: "a deny rule for a group", account: "sue", repository: "shop/app",
				owner: map[string]verdict{
					"pull": {false, "refused by a rule about the account", "a rule about the account, grant"},
					"push": {false, "refused by a rule about the account", "a rule about the account"},
				},
				admin: map[string]verdict{
					"pull": {false, "a deny rule forbids it: the staff buy nothing", "deny rule, grant"},
					"push": {false, "a deny rule forbids it: the staff buy nothing", "deny rule"},
				},
				secrets: []string{"staff", "deny rule", "group:"},
			},
			{
				name: "the account's own row", account: "ann", repository: "shop/app",
				owner: map[string]verdict{"pull": {true, "", "grant"}, "push": {false, "no grant or rule permits it", ""}},
				admin: map[string]verdict{"pull": {true, "", "grant"}, "push": {false, "no grant or rule permits it", ""}},
			},
			{
				name: "a personal namespace", account: "carol", repository: "carol/app",
				owner:   map[string]verdict{"pull": withheld, "push": withheld},
				admin:   map[string]verdict{"pull": {true, "", "personal namespace"}, "push": {true, "", "personal namespace"}},
				secrets: []string{"personal namespace"},
			},
		} {
			t.Run(tt.name, func(t *testing.T) {
				req := admin.ExplainRequest{Account: tt.account, Scopes: []string{"repository:" + tt.repository + ":" + strings.Join(slices.Sorted(maps.Keys(tt.owner)), ",")}}
				for who, c := range map[string]struct {
					key  string
					want map[string]verdict
				}{"the owner": {sellerKey, tt.owner}, "an admin": {s.rootKey, tt.admin}} {
					raw := s.explainJSON(c.key, req)
					var x policy.Explanation
					if err := json.Unmarshal([]byte(raw), &x); err != nil {
						t.Fatal(err)
					}
					got := map[string]verdict{}
					for _, v := range x.Actions {
						var titles []string
						for _, r := range v.Rules {
							titles = append(titles, r.Title)
						}
						slices.Sort(titles)
						got[v.Action] = verdict{v.Allowed, v.Reason, strings.Join(titles, ", ")}
					}
					if !maps.Equal(got, c.want) {
						t.Errorf("%s reads %v, want %v", who, got, c.want)
					}
					if who != "the owner" {
						continue
					}
					for _, secret := range tt.secrets {
						if strings.Contains(raw, secret) {
							t.Errorf("the owner reads %q in\n%s", secret, raw)
						}
					}
				}
			})
		}
	})
}
