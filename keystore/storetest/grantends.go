package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// testGrantEnds checks time-limited grants: the end round-trips to the nanosecond, a loaded
// principal (cached or not) stops carrying a grant at the instant it ends while listings keep
// showing it, and a row's end changes only by a put that names every action it holds.
func testGrantEnds(t *testing.T, s keystore.Store, c *clock) {
	must(t, s.CreateAccount(ctx, acct("buyer")))
	k, plain := NewKey(t, "buyer")
	must(t, s.CreateKey(ctx, k))
	buyer := keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}
	end := now.Add(time.Hour + 123*time.Nanosecond)
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"pull"}, Expires: end.In(time.FixedZone("X", 3600))}))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "forever", Actions: []string{"pull"}}))

	row := func(repo string) keystore.Grant {
		t.Helper()
		got, err := s.ListGrants(ctx, keystore.GrantFilter{Subject: &buyer, Repository: repo})
		must(t, err)
		if len(got) != 1 {
			t.Fatalf("rows on %s = %+v", repo, got)
		}
		return got[0]
	}
	if g := row("shop/app"); !g.Expires.Equal(end) || !slices.Equal(g.Actions, []string{"pull"}) {
		t.Fatalf("listed row = %+v, want pull until %v", g, end)
	}
	if g := row("forever"); !g.Expires.IsZero() {
		t.Fatalf("a grant without an end lists one: %+v", g)
	}
	wantEnd := end
	loaded := func() []string {
		t.Helper()
		p, err := s.LoadPrincipal(ctx, k.ID)
		must(t, err)
		var out []string
		for _, g := range p.Grants {
			out = append(out, g.Repository)
			if g.Repository == "shop/app" && !g.Expires.Equal(wantEnd) {
				t.Fatalf("loaded grant ends %v, want %v", g.Expires, wantEnd)
			}
		}
		slices.Sort(out)
		return out
	}
	// Twice before each check, so that a caching store serves the second from memory.
	for range 2 {
		if got := loaded(); !slices.Equal(got, []string{"forever", "shop/app"}) {
			t.Fatalf("grants before the end = %v", got)
		}
	}
	c.Set(end.Add(-time.Nanosecond))
	if got := loaded(); !slices.Equal(got, []string{"forever", "shop/app"}) {
		t.Fatalf("grants a nanosecond before the end = %v", got)
	}
	c.Set(end)
	for range 2 {
		if got := loaded(); !slices.Equal(got, []string{"forever"}) {
			t.Fatalf("grants at the end = %v, want the ended one gone", got)
		}
	}
	p, err := keystore.Authenticate(ctx, s, "buyer", plain, end)
	must(t, err)
	if len(p.Grants) != 1 || p.Grants[0].Repository != "forever" {
		t.Fatalf("Authenticate at the end gives %+v", p.Grants)
	}
	if g := row("shop/app"); !g.Expires.Equal(end) {
		t.Fatalf("an ended row must still be listed with its end: %+v", g)
	}

	// Renewing: the same actions with a later end replace the row.
	later := end.Add(24 * time.Hour)
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"pull"}, Expires: later}))
	wantEnd = later
	if got := loaded(); !slices.Equal(got, []string{"forever", "shop/app"}) {
		t.Fatalf("grants after renewing = %v", got)
	}
	// Push for ever beside pull until later would change pull's end: refused, row unchanged.
	err = s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"push"}})
	if !errors.Is(err, keystore.ErrConflict) {
		t.Fatalf("put with another end and fewer actions: %v, want ErrConflict", err)
	}
	if g := row("shop/app"); !g.Expires.Equal(later) || !slices.Equal(g.Actions, []string{"pull"}) {
		t.Fatalf("row after a refused put = %+v", g)
	}
	// The same end merges actions; naming every action changes the end (here: none).
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"delete"}, Expires: later}))
	if g := row("shop/app"); !g.Expires.Equal(later) || !slices.Equal(g.Actions, []string{"delete", "pull"}) {
		t.Fatalf("row after a put with the same end = %+v", g)
	}
	// Removing some actions keeps the end.
	must(t, s.RemoveGrant(ctx, buyer, "shop/app", []string{"delete"}))
	if g := row("shop/app"); !g.Expires.Equal(later) || !slices.Equal(g.Actions, []string{"pull"}) {
		t.Fatalf("row after removing an action = %+v", g)
	}
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"pull", "push"}}))
	if g := row("shop/app"); !g.Expires.IsZero() || !slices.Equal(g.Actions, []string{"pull", "push"}) {
		t.Fatalf("row after a put naming every action without an end = %+v", g)
	}
	c.Set(later.Add(time.Hour))
	wantEnd = time.Time{}
	if got := loaded(); !slices.Equal(got, []string{"forever", "shop/app"}) {
		t.Fatalf("grants after the end was lifted = %v", got)
	}
}
