package input

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

func TestRelevant(t *testing.T) {
	scopes := []policy.Scope{
		{Type: "repository", Name: "acme/app", Actions: []string{"pull"}},
		{Type: "repository", Name: "localhost:5000/team/x", Actions: []string{"pull"}},
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
	}
	for pattern, want := range map[string]bool{
		"acme/app":                true,
		"acme/*":                  true,
		"acme/**":                 true,
		"**":                      true,
		"a*/app":                  true,
		"localhost:5000/team/*":   true,
		"acme/app2":               false,
		"acme":                    false,
		"other/*":                 false,
		"catalog":                 false, // only repository scopes take grants
		"acme/app/*":              false,
		"localhost:5000/other/**": false,
	} {
		if got := Relevant(pattern, scopes); got != want {
			t.Errorf("Relevant(%q) = %v, want %v", pattern, got, want)
		}
	}
}

func TestToken(t *testing.T) {
	scopes := []policy.Scope{{Type: "repository", Name: "shop/app", Actions: []string{"pull"}}}
	anon := Token("svc", policy.Client{IP: "::1"}, nil, scopes)
	if !anon.Principal.Anonymous || anon.Principal.Key != nil || len(anon.Grants) != 0 || anon.Owned == nil {
		t.Fatalf("anonymous input = %+v", anon)
	}
	p := keystore.Principal{
		Account: keystore.Account{Name: "user1", Groups: []string{"buyers"}},
		Key:     keystore.Key{ID: "k1", Name: "ci", Restrictions: keystore.Restrictions{Actions: []string{"pull"}}},
		Grants: []keystore.Grant{
			{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "buyers"}, Repository: "shop/*", Actions: []string{"pull"}},
			{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "user1"}, Repository: "elsewhere", Actions: []string{"push"}},
		},
		Owned: []string{"mine/app"},
	}
	in := Token("svc", policy.Client{IP: "::1"}, &p, scopes)
	if in.Principal.Account != "user1" || in.Principal.Roles == nil || in.Principal.Key.Restrictions == nil ||
		len(in.Grants) != 1 || in.Grants[0].Subject != "group:buyers" || len(in.Owned) != 1 {
		t.Fatalf("input = %+v", in)
	}
}

// TestInputExampleGrantsAreRelevant: every grant of the documented input (policy's
// input.example.json) could reach the policy, since it matches a requested repository.
func TestInputExampleGrantsAreRelevant(t *testing.T) {
	raw, err := os.ReadFile("../../policy/input.example.json")
	if err != nil {
		t.Fatal(err)
	}
	var in policy.Input
	if err := json.Unmarshal(raw, &in); err != nil || len(in.Grants) == 0 {
		t.Fatalf("input example: %v, %d grants", err, len(in.Grants))
	}
	for _, g := range in.Grants {
		if !Relevant(g.Repository, in.Scopes) {
			t.Fatalf("the example's grant %q could not reach the policy: it matches no requested repository", g.Repository)
		}
	}
}

// TestTokenCarriesGrantEnds: a row that ends reaches the policy with its end, in UTC to the
// nanosecond; a row without one carries none.
func TestTokenCarriesGrantEnds(t *testing.T) {
	end := time.Date(2026, 3, 1, 12, 0, 0, 5, time.FixedZone("X", 3600))
	p := &keystore.Principal{Account: keystore.Account{Name: "buyer"}, Grants: []keystore.Grant{
		{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}, Repository: "shop/app", Actions: []string{"pull"}, Expires: end},
		{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}, Repository: "shop/*", Actions: []string{"pull"}},
	}}
	in := Token("r", policy.Client{}, p, []policy.Scope{{Type: "repository", Name: "shop/app", Actions: []string{"pull"}}})
	if len(in.Grants) != 2 || in.Grants[0].Expires != "2026-03-01T11:00:00.000000005Z" || in.Grants[1].Expires != "" {
		t.Fatalf("grants = %+v", in.Grants)
	}
}
