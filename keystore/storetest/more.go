package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// testKeyRecordKeptWhole checks that a key is stored as given — revoked flag, last use to the
// nanosecond, expiry, restrictions — which is what lets import restore a backup exactly.
func testKeyRecordKeptWhole(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("alice")))
	k, _ := NewKey(t, "alice")
	k.Name = "laptop ✓"
	k.Expires = now.Add(90 * 24 * time.Hour)
	k.LastUsed = now.Add(1234567891 * time.Nanosecond)
	k.Revoked = true
	k.Restrictions = keystore.Restrictions{Actions: []string{"pull"}, Repositories: []string{"a/**", "host:5000/b"}, CIDRs: []string{"10.0.0.0/8", "2001:db8::/32"}}
	must(t, s.CreateKey(ctx, k))
	got, err := s.GetKey(ctx, k.ID)
	must(t, err)
	if !SameKey(got, k) {
		t.Fatalf("GetKey = %+v\nwant     %+v", got, k)
	}
	listed, err := s.ListKeys(ctx, "alice")
	must(t, err)
	if len(listed) != 1 || !SameKey(listed[0], k.Redacted()) {
		t.Fatalf("ListKeys = %+v, want the record without its hash", listed)
	}
}

// SameKey compares key records field by field, times by instant.
func SameKey(a, b keystore.Key) bool {
	return a.ID == b.ID && a.Account == b.Account && a.Name == b.Name && slices.Equal(a.Hash, b.Hash) &&
		a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires) && a.LastUsed.Equal(b.LastUsed) &&
		a.Revoked == b.Revoked && reflect.DeepEqual(a.Restrictions, b.Restrictions)
}

// testGrantIndexes checks listing by repository and by subject across kinds, patterns with
// ':' and '**', and that removals leave no trace in any index.
func testGrantIndexes(t *testing.T, s keystore.Store) {
	alice := keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}
	bob := keystore.Subject{Kind: keystore.SubjectAccount, Name: "bob"}
	team := keystore.Subject{Kind: keystore.SubjectGroup, Name: "alice"} // same name, other kind
	rows := []keystore.Grant{
		{Subject: alice, Repository: "host:5000/a", Actions: []string{"pull"}},
		{Subject: bob, Repository: "host:5000/a", Actions: []string{"push"}},
		{Subject: team, Repository: "host:5000/a", Actions: []string{"delete"}},
		{Subject: alice, Repository: "acme/**", Actions: []string{"pull", "push"}},
	}
	for _, g := range rows {
		must(t, s.PutGrant(ctx, g))
	}
	describe := func(gs []keystore.Grant) []string {
		var out []string
		for _, g := range gs {
			out = append(out, fmt.Sprintf("%s %s %v", g.Subject, g.Repository, g.Actions))
		}
		return out
	}
	for _, tt := range []struct {
		name string
		f    keystore.GrantFilter
		want []string
	}{
		{"by repository", keystore.GrantFilter{Repository: "host:5000/a"}, []string{"account:alice host:5000/a [pull]", "account:bob host:5000/a [push]", "group:alice host:5000/a [delete]"}},
		{"by account", keystore.GrantFilter{Subject: &alice}, []string{"account:alice acme/** [pull push]", "account:alice host:5000/a [pull]"}},
		{"by group", keystore.GrantFilter{Subject: &team}, []string{"group:alice host:5000/a [delete]"}},
		{"everything in order", keystore.GrantFilter{}, []string{"account:alice acme/** [pull push]", "account:alice host:5000/a [pull]", "account:bob host:5000/a [push]", "group:alice host:5000/a [delete]"}},
		{"no match", keystore.GrantFilter{Repository: "host:5000"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListGrants(ctx, tt.f)
			must(t, err)
			if !slices.Equal(describe(got), tt.want) {
				t.Fatalf("ListGrants = %q\nwant %q", describe(got), tt.want)
			}
		})
	}
	must(t, s.RemoveGrant(ctx, bob, "host:5000/a", nil))
	must(t, s.RemoveGrant(ctx, team, "host:5000/a", []string{"delete"}))
	got, err := s.ListGrants(ctx, keystore.GrantFilter{Repository: "host:5000/a"})
	must(t, err)
	if want := []string{"account:alice host:5000/a [pull]"}; !slices.Equal(describe(got), want) {
		t.Fatalf("after removals = %q, want %q", describe(got), want)
	}
	got, err = s.ListGrants(ctx, keystore.GrantFilter{Subject: &bob})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("bob's grants after removal = %q", describe(got))
	}
	wantErr(t, s.RemoveGrant(ctx, bob, "host:5000/a", nil), keystore.ErrNotFound)
}

// testChangesVisibleAtOnce checks that after a write returns, the next LoadPrincipal on the same
// store sees it — whatever the store caches — and that Authenticate then refuses or narrows.
func testChangesVisibleAtOnce(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("alice", "buyers")))
	k, plain := NewKey(t, "alice")
	k.Expires = now.Add(time.Hour)
	must(t, s.CreateKey(ctx, k))
	buyers := keystore.Subject{Kind: keystore.SubjectGroup, Name: "buyers"}
	alice := keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyers, Repository: "shop/app", Actions: []string{"pull"}}))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: "own", Actions: []string{"push"}}))

	grants := func() []string {
		t.Helper()
		p, err := keystore.Authenticate(ctx, s, "alice", plain, now)
		must(t, err)
		var out []string
		for _, g := range p.Grants {
			out = append(out, g.Repository)
		}
		slices.Sort(out)
		return out
	}
	// Load twice, so that a caching store has the principal in memory before each change.
	for range 2 {
		if got := grants(); !slices.Equal(got, []string{"own", "shop/app"}) {
			t.Fatalf("grants = %v", got)
		}
	}
	must(t, s.RemoveGrant(ctx, buyers, "shop/app", nil))
	if got := grants(); !slices.Equal(got, []string{"own"}) {
		t.Fatalf("after removing the group's grant: %v", got)
	}
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "alice/app", Owner: "alice", Created: now}, 0))
	if p, err := s.LoadPrincipal(ctx, k.ID); err != nil || !slices.Equal(p.Owned, []string{"alice/app"}) {
		t.Fatalf("after reserving: owned %v, %v", p.Owned, err)
	}
	must(t, s.Release(ctx, "alice/app"))
	if p, err := s.LoadPrincipal(ctx, k.ID); err != nil || len(p.Owned) != 0 {
		t.Fatalf("after releasing: owned %v, %v", p.Owned, err)
	}

	for _, tt := range []struct {
		name   string
		change func()
		at     time.Time
	}{
		{"expired", func() {}, now.Add(time.Hour)},
		{"disabled", func() {
			must(t, s.UpdateAccount(ctx, keystore.Account{Name: "alice", Groups: []string{"buyers"}, Disabled: true}))
		}, now},
		{"revoked", func() {
			must(t, s.UpdateAccount(ctx, keystore.Account{Name: "alice", Groups: []string{"buyers"}}))
			grants()
			must(t, s.RevokeKey(ctx, k.ID))
		}, now},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.change()
			_, err := keystore.Authenticate(ctx, s, "alice", plain, tt.at)
			wantErr(t, err, keystore.ErrBadCredentials)
		})
	}
}

// testConcurrentWrites checks that writes are atomic read-modify-writes: concurrent merges
// into one grant row lose nothing, and of concurrent creations exactly one wins.
func testConcurrentWrites(t *testing.T, s keystore.Store) {
	alice := keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 30 {
		wg.Go(func() {
			errs <- s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: "image", Actions: []string{keystore.GrantActions[i%3]}})
		})
	}
	for range 10 {
		wg.Go(func() { errs <- s.CreateAccount(ctx, acct("racer")) })
	}
	wg.Wait()
	close(errs)
	var exists int
	for err := range errs {
		switch {
		case errors.Is(err, keystore.ErrExists):
			exists++
		case err != nil:
			t.Fatal(err)
		}
	}
	if exists != 9 {
		t.Fatalf("%d of 10 concurrent creations of one account failed with ErrExists, want 9", exists)
	}
	got, err := s.ListGrants(ctx, keystore.GrantFilter{Subject: &alice})
	must(t, err)
	if len(got) != 1 || !slices.Equal(got[0].Actions, []string{"delete", "pull", "push"}) {
		t.Fatalf("after concurrent merges = %+v", got)
	}
}

// testSurvivesDisruption writes one record of each kind, disrupts the backend, then expects
// every record back and the store writable again, without reopening it.
func testSurvivesDisruption(t *testing.T, s keystore.Store, disrupt func(t *testing.T)) {
	must(t, s.CreateAccount(ctx, acct("alice", "sellers")))
	k, plain := NewKey(t, "alice")
	must(t, s.CreateKey(ctx, k))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "sellers"}, Repository: "shop/*", Actions: []string{"push"}}))
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "alice", Created: now}, 0))
	if _, err := s.LoadPrincipal(ctx, k.ID); err != nil {
		t.Fatal(err)
	}

	disrupt(t)

	// The store may refuse for a while, but only with ErrUnavailable, and must recover alone.
	var p keystore.Principal
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		p, err = keystore.Authenticate(ctx, s, "alice", plain, now)
		if err == nil {
			break
		}
		if !errors.Is(err, keystore.ErrUnavailable) {
			t.Fatalf("during recovery: %v, want ErrUnavailable or success", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(p.Grants) != 1 || p.Grants[0].Repository != "shop/*" || !slices.Equal(p.Owned, []string{"shop/app"}) {
		t.Fatalf("principal after disruption = %+v", p)
	}
	must(t, s.RevokeKey(ctx, k.ID))
	_, err := keystore.Authenticate(ctx, s, "alice", plain, now)
	wantErr(t, err, keystore.ErrBadCredentials)
}

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
		must(t, s.PutGrant(ctx, g))
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
	must(t, s.Release(ctx, "shop/app"))
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
	wantErr(t, s.Release(ctx, "shop/nothing"), keystore.ErrNotFound)
}

// testReserveLimit checks that a reservation limit is kept in the write: of many concurrent
// reservations for one owner, exactly the limit succeed, the others fail with ErrLimit.
func testReserveLimit(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("seller")))
	must(t, s.CreateAccount(ctx, acct("other")))
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "other/a", Owner: "other", Created: now}, 0))
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for i := range 30 {
		wg.Go(func() {
			errs <- s.Reserve(ctx, keystore.Ownership{Repository: fmt.Sprintf("shop/l%d", i), Owner: "seller", Created: now}, 8)
		})
	}
	wg.Wait()
	close(errs)
	var limited int
	for err := range errs {
		switch {
		case errors.Is(err, keystore.ErrLimit):
			limited++
		case err != nil:
			t.Fatal(err)
		}
	}
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
