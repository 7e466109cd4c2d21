package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

// The rules of reservations: one literal name each, released with every grant on it, and a
// limit per owner kept in the write.

// testReservationIsLiteral checks that a reservation is one literal repository name: a pattern,
// an upper-case or malformed name is refused by the store itself, and by an import.
func testReservationIsLiteral(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("seller")))
	for _, name := range []string{"shop/*", "shop/**", "shop/prem*", "*", "**/x", "Shop/app", "shop/App", "shop//app", "shop/app/", "/shop", "shop/-app", ""} {
		wantErr(t, s.Reserve(ctx, keystore.Ownership{Repository: name, Owner: "seller", Created: now}, 0), keystore.ErrInvalid)
	}
	for _, name := range []string{"shop/app", "a/b/c", "example.com/app", "host:5000/app", "my-app_1.x"} {
		must(t, s.Reserve(ctx, keystore.Ownership{Repository: name, Owner: "seller", Created: now}, 0))
	}
	list, err := s.ListOwnership(ctx, "")
	must(t, err)
	if len(list) != 5 {
		t.Fatalf("reservations = %+v, want the 5 literal names", list)
	}

	var export strings.Builder
	export.WriteString(`{"export":{"format":"regoauth-export","version":1}}` + "\n")
	export.WriteString(`{"ownership":{"repository":"team/*","owner":"seller","created":"2026-01-02T03:04:05Z"}}` + "\n")
	_, err = keystore.Import(ctx, s, strings.NewReader(export.String()), 1)
	wantErr(t, err, keystore.ErrInvalid)
	if _, err := s.GetOwnership(ctx, "team/*"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("an import stored a pattern reservation: %v", err)
	}
}

// testReleaseTakesGrants checks the release rule: releasing a name removes, in the same write,
// every grant whose repository is exactly that name — to accounts and to groups — and nothing
// else; principals loaded afterwards (cached or not) no longer hold them.
func testReleaseTakesGrants(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("seller")))
	must(t, s.CreateAccount(ctx, acct("buyer", "buyers")))
	k, plain := NewKey(t, "buyer")
	must(t, s.CreateKey(ctx, k))
	buyer := keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}
	seller := keystore.Subject{Kind: keystore.SubjectAccount, Name: "seller"}
	buyers := keystore.Subject{Kind: keystore.SubjectGroup, Name: "buyers"}
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "seller", Created: now}, 0))
	for _, g := range []keystore.Grant{
		{Subject: buyer, Repository: "shop/app", Actions: []string{"pull"}},
		{Subject: seller, Repository: "shop/app", Actions: []string{"pull", "push"}},
		{Subject: buyers, Repository: "shop/app", Actions: []string{"pull"}},
		// Kept: a pattern that matches the name, and other names.
		{Subject: buyers, Repository: "shop/*", Actions: []string{"pull"}},
		{Subject: buyer, Repository: "shop/app2", Actions: []string{"pull"}},
		{Subject: buyer, Repository: "shop/app/sub", Actions: []string{"pull"}},
	} {
		must(t, s.PutGrant(ctx, g, keystore.Unguarded))
	}
	repos := func() []string {
		t.Helper()
		p, err := keystore.Authenticate(ctx, s, "buyer", plain, now)
		must(t, err)
		var out []string
		for _, g := range p.Grants {
			out = append(out, g.Subject.String()+" "+g.Repository)
		}
		slices.Sort(out)
		return out
	}
	want := []string{"account:buyer shop/app", "account:buyer shop/app/sub", "account:buyer shop/app2", "group:buyers shop/*", "group:buyers shop/app"}
	for range 2 { // twice, so that a caching store holds the principal
		if got := repos(); !slices.Equal(got, want) {
			t.Fatalf("buyer's grants = %v, want %v", got, want)
		}
	}
	must(t, s.Release(ctx, "shop/app", keystore.Unguarded))
	if got, want := repos(), []string{"account:buyer shop/app/sub", "account:buyer shop/app2", "group:buyers shop/*"}; !slices.Equal(got, want) {
		t.Fatalf("buyer's grants after the release = %v, want %v", got, want)
	}
	left, err := s.ListGrants(ctx, keystore.GrantFilter{Repository: "shop/app"})
	must(t, err)
	if len(left) != 0 {
		t.Fatalf("grants on the released name: %+v", left)
	}
	all, err := s.ListGrants(ctx, keystore.GrantFilter{})
	must(t, err)
	if len(all) != 3 {
		t.Fatalf("every grant after the release = %+v, want the 3 others", all)
	}
	mine, err := s.ListGrants(ctx, keystore.GrantFilter{Subject: &seller})
	must(t, err)
	if len(mine) != 0 {
		t.Fatalf("seller's grants after the release = %+v", mine)
	}
	// The name is free, and a new owner starts without anyone's grants on it.
	must(t, s.CreateAccount(ctx, acct("other")))
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "other", Created: now}, 0))
	wantErr(t, s.Release(ctx, "shop/nothing", keystore.Unguarded), keystore.ErrNotFound)
}

// testReserveLimit checks that a reservation limit is kept in the write: of many concurrent
// reservations for one owner, exactly the limit succeed, the others fail with ErrLimit.
func testReserveLimit(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("seller")))
	must(t, s.CreateAccount(ctx, acct("other")))
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "other/a", Owner: "other", Created: now}, 0))
	limited := limitedOf(t, 30, func(i int) error {
		return s.Reserve(ctx, keystore.Ownership{Repository: fmt.Sprintf("shop/l%d", i), Owner: "seller", Created: now}, 8)
	})
	list, err := s.ListOwnership(ctx, "seller")
	must(t, err)
	if len(list) != 8 || limited != 22 {
		t.Fatalf("%d reservations held, %d refused with ErrLimit; want 8 and 22", len(list), limited)
	}
	// The limit counts the owner's reservations only, and 0 is no limit.
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "other/b", Owner: "other", Created: now}, 2))
	wantErr(t, s.Reserve(ctx, keystore.Ownership{Repository: "other/c", Owner: "other", Created: now}, 2), keystore.ErrLimit)
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "other/c", Owner: "other", Created: now}, 0))
}

// testWritesGuardedByOwner checks keystore.Guard: a guarded grant write, grant removal or
// release is made only while the name is owned as the guard says, checked in the write itself,
// and is ErrOwnerChanged (an ErrConflict) writing nothing otherwise; an unguarded one checks
// nothing.
func testWritesGuardedByOwner(t *testing.T, s keystore.Store) {
	for _, a := range []string{"sam", "eve", "buyer"} {
		must(t, s.CreateAccount(ctx, acct(a)))
	}
	buyer := keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}
	pull := func(repo string) keystore.Grant {
		return keystore.Grant{Subject: buyer, Repository: repo, Actions: []string{"pull"}}
	}
	rows := func(repo string) []keystore.Grant {
		t.Helper()
		got, err := s.ListGrants(ctx, keystore.GrantFilter{Repository: repo})
		must(t, err)
		return got
	}
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "eve", Created: now}, 0))

	// Puts.
	for _, g := range []keystore.Guard{keystore.OwnedBy("sam"), keystore.OwnedBy("")} {
		err := s.PutGrant(ctx, pull("shop/app"), g)
		wantErr(t, err, keystore.ErrOwnerChanged)
		wantErr(t, err, keystore.ErrConflict)
	}
	wantErr(t, s.PutGrant(ctx, pull("free/app"), keystore.OwnedBy("sam")), keystore.ErrOwnerChanged)
	if got := append(rows("shop/app"), rows("free/app")...); len(got) != 0 {
		t.Fatalf("a put whose guard failed wrote %+v", got)
	}
	must(t, s.PutGrant(ctx, pull("shop/app"), keystore.OwnedBy("eve")))
	must(t, s.PutGrant(ctx, pull("free/app"), keystore.OwnedBy("")))
	must(t, s.PutGrant(ctx, pull("other/app"), keystore.Unguarded))
	if got := rows("shop/app"); len(got) != 1 || !slices.Equal(got[0].Actions, []string{"pull"}) {
		t.Fatalf("rows on shop/app = %+v, want the buyer's pull", got)
	}

	// Removals.
	wantErr(t, s.RemoveGrant(ctx, buyer, "shop/app", nil, keystore.OwnedBy("sam")), keystore.ErrOwnerChanged)
	wantErr(t, s.RemoveGrant(ctx, buyer, "shop/app", []string{"pull"}, keystore.OwnedBy("")), keystore.ErrOwnerChanged)
	if got := rows("shop/app"); len(got) != 1 {
		t.Fatalf("a removal whose guard failed removed the row: %+v", got)
	}
	must(t, s.RemoveGrant(ctx, buyer, "free/app", nil, keystore.OwnedBy("")))
	must(t, s.RemoveGrant(ctx, buyer, "other/app", nil, keystore.Unguarded))

	// Releases: a stale release does not take a name, or its grants, from its owner.
	wantErr(t, s.Release(ctx, "shop/app", keystore.OwnedBy("sam")), keystore.ErrOwnerChanged)
	o, err := s.GetOwnership(ctx, "shop/app")
	must(t, err)
	if o.Owner != "eve" || len(rows("shop/app")) != 1 {
		t.Fatalf("a release whose guard failed changed the name: owner %q, rows %+v", o.Owner, rows("shop/app"))
	}
	must(t, s.Release(ctx, "shop/app", keystore.OwnedBy("eve")))
	wantErr(t, s.Release(ctx, "shop/app", keystore.OwnedBy("eve")), keystore.ErrNotFound)
	if got := rows("shop/app"); len(got) != 0 {
		t.Fatalf("rows on a released name: %+v", got)
	}
	// Once released, a put decided while eve owned it fails; one for nobody succeeds.
	wantErr(t, s.PutGrant(ctx, pull("shop/app"), keystore.OwnedBy("eve")), keystore.ErrOwnerChanged)
	must(t, s.PutGrant(ctx, pull("shop/app"), keystore.OwnedBy("")))
}
