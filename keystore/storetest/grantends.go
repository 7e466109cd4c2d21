package storetest

import (
	"errors"
	"fmt"
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
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"pull"}, Expires: end.In(time.FixedZone("X", 3600))}, keystore.Unguarded))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "forever", Actions: []string{"pull"}}, keystore.Unguarded))

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
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"pull"}, Expires: later}, keystore.Unguarded))
	wantEnd = later
	if got := loaded(); !slices.Equal(got, []string{"forever", "shop/app"}) {
		t.Fatalf("grants after renewing = %v", got)
	}
	// Push for ever beside pull until later would change pull's end: refused, row unchanged.
	err = s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"push"}}, keystore.Unguarded)
	if !errors.Is(err, keystore.ErrConflict) {
		t.Fatalf("put with another end and fewer actions: %v, want ErrConflict", err)
	}
	if g := row("shop/app"); !g.Expires.Equal(later) || !slices.Equal(g.Actions, []string{"pull"}) {
		t.Fatalf("row after a refused put = %+v", g)
	}
	// The same end merges actions; naming every action changes the end (here: none).
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"delete"}, Expires: later}, keystore.Unguarded))
	if g := row("shop/app"); !g.Expires.Equal(later) || !slices.Equal(g.Actions, []string{"delete", "pull"}) {
		t.Fatalf("row after a put with the same end = %+v", g)
	}
	// Removing some actions keeps the end.
	must(t, s.RemoveGrant(ctx, buyer, "shop/app", []string{"delete"}, keystore.Unguarded))
	if g := row("shop/app"); !g.Expires.Equal(later) || !slices.Equal(g.Actions, []string{"pull"}) {
		t.Fatalf("row after removing an action = %+v", g)
	}
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"pull", "push"}}, keystore.Unguarded))
	if g := row("shop/app"); !g.Expires.IsZero() || !slices.Equal(g.Actions, []string{"pull", "push"}) {
		t.Fatalf("row after a put naming every action without an end = %+v", g)
	}
	c.Set(later.Add(time.Hour))
	wantEnd = time.Time{}
	if got := loaded(); !slices.Equal(got, []string{"forever", "shop/app"}) {
		t.Fatalf("grants after the end was lifted = %v", got)
	}
}

// testPageGrants checks paged listings: filters on subject, repository and end, the order of
// ListGrants, offsets, limits and totals.
func testPageGrants(t *testing.T, s keystore.Store, c *clock) {
	var all []keystore.Grant
	for i := range 30 {
		g := keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: fmt.Sprintf("user%02d", i%10)},
			Repository: fmt.Sprintf("shop/item%02d", i), Actions: []string{"pull"}}
		switch i % 3 {
		case 1:
			g.Expires = now.Add(-time.Hour)
		case 2:
			g.Expires = now.Add(time.Hour)
		}
		all = append(all, g)
		must(t, s.PutGrant(ctx, g, keystore.Unguarded))
	}
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "user01"}, Repository: "team/x", Actions: []string{"push"}}, keystore.Unguarded))
	listed, err := s.ListGrants(ctx, keystore.GrantFilter{})
	must(t, err)
	for _, tt := range []struct {
		name string
		q    keystore.GrantQuery
	}{
		{"everything", keystore.GrantQuery{Limit: 100}},
		{"first page", keystore.GrantQuery{Limit: 7}},
		{"middle page", keystore.GrantQuery{Offset: 7, Limit: 7}},
		{"past the end", keystore.GrantQuery{Offset: 40, Limit: 7}},
		{"by subject", keystore.GrantQuery{Subject: "user01", Limit: 100}},
		{"accounts only", keystore.GrantQuery{Subject: "account:", Limit: 100}},
		{"by repository", keystore.GrantQuery{Repository: "item1", Limit: 100}},
		{"ends later", keystore.GrantQuery{Ends: keystore.EndsLater, Limit: 100}},
		{"ended, second page", keystore.GrantQuery{Ends: keystore.Ended, Offset: 3, Limit: 3}},
		{"both filters and an end", keystore.GrantQuery{Subject: "user02", Repository: "shop/", Ends: keystore.Ended, Limit: 100}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			q.Now = c.Now()
			page, err := s.PageGrants(ctx, q)
			must(t, err)
			want := checkPage(t, "PageGrants", q, q.Offset, q.Limit, q.Matches, listed, page.Grants, page.Total,
				func(g keystore.Grant) string { return g.Subject.String() + " " + g.Repository })
			for i, g := range page.Grants {
				if !g.Expires.Equal(want[i].Expires) || !slices.Equal(g.Actions, want[i].Actions) {
					t.Fatalf("row %d = %+v, want %+v", i, g, want[i])
				}
			}
		})
	}
	if len(all) != 30 || len(listed) != 31 {
		t.Fatalf("listed %d rows", len(listed))
	}
}

// testPageOwnership checks paged reservations: filters on owner and repository, the order of
// ListOwnership, offsets, limits and totals.
func testPageOwnership(t *testing.T, s keystore.Store) {
	for i := range 5 {
		must(t, s.CreateAccount(ctx, acct(fmt.Sprintf("seller%d", i))))
	}
	for i := range 23 {
		must(t, s.Reserve(ctx, keystore.Ownership{Repository: fmt.Sprintf("shop/item%02d", i), Owner: fmt.Sprintf("seller%d", i%5), Created: now}, 0))
	}
	listed, err := s.ListOwnership(ctx, "")
	must(t, err)
	for _, q := range []keystore.OwnershipQuery{
		{Limit: 100}, {Limit: 5}, {Offset: 20, Limit: 5}, {Offset: 30, Limit: 5},
		{Owner: "seller3", Limit: 100}, {Repository: "item1", Limit: 3, Offset: 2},
		{Owner: "seller", Repository: "item2", Limit: 100}, {Owner: "shop", Limit: 100}, // "shop" is in every record, never in an owner
	} {
		page, err := s.PageOwnership(ctx, q)
		must(t, err)
		checkPage(t, "PageOwnership", q, q.Offset, q.Limit, q.Matches, listed, page.Ownerships, page.Total,
			func(o keystore.Ownership) string { return o.Owner + " " + o.Repository })
		for _, o := range page.Ownerships {
			if !o.Created.Equal(now) {
				t.Fatalf("record %+v lost its creation time", o)
			}
		}
	}
}

// testPageAccounts checks paged accounts: the filter on name, groups and roles, the order of
// ListAccounts, offsets, limits and totals.
func testPageAccounts(t *testing.T, s keystore.Store) {
	for i := range 23 {
		a := acct(fmt.Sprintf("user%02d", i))
		if i%4 == 0 {
			a.Groups = []string{"sellers"}
		}
		if i == 7 {
			a.Roles = []string{"auditor"}
		}
		must(t, s.CreateAccount(ctx, a))
	}
	listed, err := s.ListAccounts(ctx)
	must(t, err)
	for _, q := range []keystore.AccountQuery{
		{Limit: 100}, {Limit: 5}, {Offset: 20, Limit: 5}, {Offset: 30, Limit: 5},
		{Contains: "user1", Limit: 100}, {Contains: "sell", Limit: 3, Offset: 2}, {Contains: "audit", Limit: 10},
		{Contains: "created", Limit: 10}, // in every record, in no name, group or role
	} {
		page, err := s.PageAccounts(ctx, q)
		must(t, err)
		want := checkPage(t, "PageAccounts", q, q.Offset, q.Limit, q.Matches, listed, page.Accounts, page.Total,
			func(a keystore.Account) string { return a.Name })
		for i, a := range page.Accounts {
			if !slices.Equal(a.Groups, want[i].Groups) || !slices.Equal(a.Roles, want[i].Roles) || !a.Created.Equal(now) {
				t.Fatalf("account %+v, want %+v", a, want[i])
			}
		}
	}
}

// checkPage fails unless a page of a listing (got, out of total) is what filtering the whole
// listing with matches and cutting it at offset and limit gives, compared by label. It returns
// the rows expected, for the caller to compare further.
func checkPage[T any](t *testing.T, op string, q any, offset, limit int, matches func(T) bool, listed, got []T, total int, label func(T) string) []T {
	t.Helper()
	var want []T
	for _, row := range listed {
		if matches(row) {
			want = append(want, row)
		}
	}
	wantTotal := len(want)
	want = want[min(offset, len(want)):min(offset+limit, len(want))]
	labels := func(rows []T) []string {
		var out []string
		for _, row := range rows {
			out = append(out, label(row))
		}
		return out
	}
	if total != wantTotal || !slices.Equal(labels(got), labels(want)) {
		t.Fatalf("%s(%+v) = %d %q\nwant %d %q", op, q, total, labels(got), wantTotal, labels(want))
	}
	return want
}
