// Package storetest is the conformance suite every keystore backend passes. A backend's test
// calls Run with a function that returns a fresh, empty store.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// Options tune a run of the suite for a backend.
type Options struct {
	// Disrupt, when set, is called in the middle of the suite by a test that writes records,
	// disrupts the backend (e.g. kills a Redis primary so that Sentinel fails over), then
	// checks that every record survived and that the store recovers on its own. The tests
	// after it run against the disrupted backend.
	Disrupt func(t *testing.T)
}

// Run runs the whole suite. newStore must return an empty store; the suite closes it.
func Run(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	RunWith(t, newStore, Options{})
}

// RunWith runs the whole suite with options.
func RunWith(t *testing.T, newStore func(t *testing.T) keystore.Store, opts Options) {
	type test struct {
		name string
		fn   func(t *testing.T, s keystore.Store)
	}
	tests := []test{
		{"Accounts", testAccounts},
		{"Keys", testKeys},
		{"KeyRecordKeptWhole", testKeyRecordKeptWhole},
		{"TouchKeys", testTouchKeys},
		{"Grants", testGrants},
		{"GrantIndexes", testGrantIndexes},
		{"LoadPrincipal", testLoadPrincipal},
	}
	if opts.Disrupt != nil {
		tests = append(tests, test{"SurvivesDisruption", func(t *testing.T, s keystore.Store) { testSurvivesDisruption(t, s, opts.Disrupt) }})
	}
	tests = append(tests, []test{
		{"ChangesVisibleAtOnce", testChangesVisibleAtOnce},
		{"Ownership", testOwnership},
		{"ReservationIsLiteral", testReservationIsLiteral},
		{"ReleaseTakesGrants", testReleaseTakesGrants},
		{"ReserveLimit", testReserveLimit},
		{"ConcurrentWrites", testConcurrentWrites},
		{"Validation", testValidation},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

var ctx = context.Background()

// now is whole seconds in UTC so that every backend's encoding round-trips it exactly.
var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

// NewKey builds a valid key record for account and returns it with its plaintext.
func NewKey(t testing.TB, account string) (keystore.Key, string) {
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keystore.Key{ID: id, Account: account, Name: "ci", Hash: hash, Created: now}, plain
}

func acct(name string, groups ...string) keystore.Account {
	return keystore.Account{Name: name, Groups: groups, Created: now}
}

func testAccounts(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("alice", "sellers")))
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "admin", Roles: []string{"admin"}, Created: now}))
	wantErr(t, s.CreateAccount(ctx, acct("alice")), keystore.ErrExists)

	got, err := s.GetAccount(ctx, "alice")
	must(t, err)
	if got.Name != "alice" || !slices.Equal(got.Groups, []string{"sellers"}) || !got.Created.Equal(now) || got.Disabled {
		t.Fatalf("GetAccount = %+v", got)
	}
	_, err = s.GetAccount(ctx, "nobody")
	wantErr(t, err, keystore.ErrNotFound)

	list, err := s.ListAccounts(ctx)
	must(t, err)
	var names []string
	for _, a := range list {
		names = append(names, a.Name)
	}
	if !slices.Equal(names, []string{"admin", "alice"}) {
		t.Fatalf("ListAccounts names = %v", names)
	}

	must(t, s.UpdateAccount(ctx, keystore.Account{Name: "alice", Groups: []string{"buyers"}, Disabled: true}))
	got, err = s.GetAccount(ctx, "alice")
	must(t, err)
	if !got.Disabled || !slices.Equal(got.Groups, []string{"buyers"}) || !got.Created.Equal(now) {
		t.Fatalf("after UpdateAccount = %+v", got)
	}
	wantErr(t, s.UpdateAccount(ctx, acct("nobody")), keystore.ErrNotFound)
}

func testKeys(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("alice")))
	must(t, s.CreateAccount(ctx, acct("bob")))
	k1, plain := NewKey(t, "alice")
	k1.Expires = now.Add(time.Hour)
	k1.Restrictions = keystore.Restrictions{Actions: []string{"pull"}, Repositories: []string{"alice/*"}, CIDRs: []string{"10.0.0.0/8"}}
	must(t, s.CreateKey(ctx, k1))
	wantErr(t, s.CreateKey(ctx, k1), keystore.ErrExists)
	k2, _ := NewKey(t, "bob")
	must(t, s.CreateKey(ctx, k2))
	orphan, _ := NewKey(t, "nobody")
	wantErr(t, s.CreateKey(ctx, orphan), keystore.ErrNotFound)

	got, err := s.GetKey(ctx, k1.ID)
	must(t, err)
	if !got.Matches(plain) || got.Account != "alice" || !got.Expires.Equal(k1.Expires) ||
		!slices.Equal(got.Restrictions.Repositories, []string{"alice/*"}) || !slices.Equal(got.Restrictions.CIDRs, []string{"10.0.0.0/8"}) {
		t.Fatalf("GetKey = %+v", got)
	}
	_, err = s.GetKey(ctx, "aaaaaaaaaaaaaaaa")
	wantErr(t, err, keystore.ErrNotFound)

	all, err := s.ListKeys(ctx, "")
	must(t, err)
	if len(all) != 2 {
		t.Fatalf("ListKeys(all) = %d keys, want 2", len(all))
	}
	for _, k := range all {
		if k.Hash != nil {
			t.Fatalf("ListKeys revealed a hash for %s", k.ID)
		}
	}
	mine, err := s.ListKeys(ctx, "alice")
	must(t, err)
	if len(mine) != 1 || mine[0].ID != k1.ID {
		t.Fatalf("ListKeys(alice) = %+v", mine)
	}

	must(t, s.RevokeKey(ctx, k1.ID))
	got, err = s.GetKey(ctx, k1.ID)
	must(t, err)
	if !got.Revoked {
		t.Fatal("key not revoked")
	}
	wantErr(t, s.RevokeKey(ctx, "aaaaaaaaaaaaaaaa"), keystore.ErrNotFound)
}

func testTouchKeys(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("alice")))
	k, _ := NewKey(t, "alice")
	must(t, s.CreateKey(ctx, k))
	later := now.Add(time.Minute)
	// Unknown ids are skipped: a key may be gone by the time its use is flushed.
	must(t, s.TouchKeys(ctx, map[string]time.Time{k.ID: later, "aaaaaaaaaaaaaaaa": later}))
	must(t, s.TouchKeys(ctx, map[string]time.Time{k.ID: now})) // never backwards
	got, err := s.GetKey(ctx, k.ID)
	must(t, err)
	if !got.LastUsed.Equal(later) {
		t.Fatalf("LastUsed = %v, want %v", got.LastUsed, later)
	}
}

func testGrants(t *testing.T, s keystore.Store) {
	alice := keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}
	sellers := keystore.Subject{Kind: keystore.SubjectGroup, Name: "sellers"}
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: "image", Actions: []string{"pull"}}))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: "image", Actions: []string{"push", "pull"}}))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: "acme/*", Actions: []string{"pull"}}))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: sellers, Repository: "image", Actions: []string{"delete"}}))

	got, err := s.ListGrants(ctx, keystore.GrantFilter{Subject: &alice, Repository: "image"})
	must(t, err)
	if len(got) != 1 || !slices.Equal(got[0].Actions, []string{"pull", "push"}) {
		t.Fatalf("merged grant = %+v", got)
	}
	got, err = s.ListGrants(ctx, keystore.GrantFilter{Repository: "image"})
	must(t, err)
	if len(got) != 2 {
		t.Fatalf("grants on image = %+v", got)
	}
	got, err = s.ListGrants(ctx, keystore.GrantFilter{})
	must(t, err)
	if len(got) != 3 {
		t.Fatalf("all grants = %+v", got)
	}

	must(t, s.RemoveGrant(ctx, alice, "image", []string{"push"}))
	got, err = s.ListGrants(ctx, keystore.GrantFilter{Subject: &alice, Repository: "image"})
	must(t, err)
	if len(got) != 1 || !slices.Equal(got[0].Actions, []string{"pull"}) {
		t.Fatalf("after removing push = %+v", got)
	}
	// Removing the last action removes the row.
	must(t, s.RemoveGrant(ctx, alice, "image", []string{"pull"}))
	got, err = s.ListGrants(ctx, keystore.GrantFilter{Subject: &alice, Repository: "image"})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("row left after removing every action: %+v", got)
	}
	must(t, s.RemoveGrant(ctx, alice, "acme/*", nil))
	wantErr(t, s.RemoveGrant(ctx, alice, "acme/*", nil), keystore.ErrNotFound)
}

func testLoadPrincipal(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("alice", "sellers", "staff")))
	must(t, s.CreateAccount(ctx, acct("bob")))
	k, plain := NewKey(t, "alice")
	must(t, s.CreateKey(ctx, k))
	grants := []keystore.Grant{
		{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}, Repository: "image", Actions: []string{"pull"}},
		{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "sellers"}, Repository: "shop/*", Actions: []string{"push"}},
		{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "staff"}, Repository: "tools", Actions: []string{"pull"}},
		// Not alice's: another account, and a group she is not in.
		{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "bob"}, Repository: "image", Actions: []string{"push"}},
		{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "buyers"}, Repository: "x", Actions: []string{"pull"}},
		// A name that shares alice's prefix must not leak into her grants.
		{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice2"}, Repository: "y", Actions: []string{"pull"}},
	}
	for _, g := range grants {
		must(t, s.PutGrant(ctx, g))
	}
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "alice/app", Owner: "alice", Created: now}, 0))
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "bob/app", Owner: "bob", Created: now}, 0))

	p, err := s.LoadPrincipal(ctx, k.ID)
	must(t, err)
	if !p.Key.Matches(plain) || p.Account.Name != "alice" || !slices.Equal(p.Account.Groups, []string{"sellers", "staff"}) {
		t.Fatalf("principal = %+v", p)
	}
	var repos []string
	for _, g := range p.Grants {
		repos = append(repos, g.Subject.String()+" "+g.Repository)
	}
	slices.Sort(repos)
	want := []string{"account:alice image", "group:sellers shop/*", "group:staff tools"}
	if !slices.Equal(repos, want) {
		t.Fatalf("principal grants = %v, want %v", repos, want)
	}
	if !slices.Equal(p.Owned, []string{"alice/app"}) {
		t.Fatalf("principal owns %v, want [alice/app]", p.Owned)
	}

	_, err = s.LoadPrincipal(ctx, "aaaaaaaaaaaaaaaa")
	wantErr(t, err, keystore.ErrNotFound)
}

func testOwnership(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("seller")))
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "seller", Created: now}, 0))
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/tool", Owner: "seller", Created: now}, 0))
	wantErr(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "seller", Created: now}, 0), keystore.ErrExists)
	wantErr(t, s.Reserve(ctx, keystore.Ownership{Repository: "other", Owner: "nobody", Created: now}, 0), keystore.ErrNotFound)

	o, err := s.GetOwnership(ctx, "shop/app")
	must(t, err)
	if o.Owner != "seller" || !o.Created.Equal(now) {
		t.Fatalf("GetOwnership = %+v", o)
	}
	list, err := s.ListOwnership(ctx, "seller")
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListOwnership = %+v", list)
	}
	must(t, s.Release(ctx, "shop/app"))
	_, err = s.GetOwnership(ctx, "shop/app")
	wantErr(t, err, keystore.ErrNotFound)
	list, err = s.ListOwnership(ctx, "seller")
	must(t, err)
	if len(list) != 1 || list[0].Repository != "shop/tool" {
		t.Fatalf("ListOwnership after release = %+v", list)
	}
	wantErr(t, s.Release(ctx, "shop/app"), keystore.ErrNotFound)
}

func testValidation(t *testing.T, s keystore.Store) {
	wantErr(t, s.CreateAccount(ctx, acct("Bad Name")), keystore.ErrInvalid)
	wantErr(t, s.CreateAccount(ctx, acct("ok", "bad/group")), keystore.ErrInvalid)
	must(t, s.CreateAccount(ctx, acct("alice")))
	bad, _ := NewKey(t, "alice")
	bad.Restrictions.CIDRs = []string{"not-a-cidr"}
	wantErr(t, s.CreateKey(ctx, bad), keystore.ErrInvalid)
	bad, _ = NewKey(t, "alice")
	bad.Hash = []byte("short")
	wantErr(t, s.CreateKey(ctx, bad), keystore.ErrInvalid)

	// What an account may ask for itself is bounded: 16 repository patterns and 16 networks
	// per key, each action once, 32 groups and 16 roles per account.
	many := func(n int, format string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(format, i)
		}
		return out
	}
	for name, r := range map[string]keystore.Restrictions{
		"17 patterns":      {Repositories: many(17, "a%d/*")},
		"17 networks":      {CIDRs: many(17, "10.0.%d.0/24")},
		"repeated actions": {Actions: []string{"pull", "pull"}},
		"too many actions": {Actions: []string{"pull", "push", "delete", "pull"}},
	} {
		k, _ := NewKey(t, "alice")
		k.Restrictions = r
		if err := s.CreateKey(ctx, k); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("a key with %s: %v, want ErrInvalid", name, err)
		}
	}
	atLimit, _ := NewKey(t, "alice")
	atLimit.Restrictions = keystore.Restrictions{Repositories: many(16, "a%d/*"), CIDRs: many(16, "10.0.%d.0/24"), Actions: []string{"delete", "pull", "push"}}
	must(t, s.CreateKey(ctx, atLimit))
	wantErr(t, s.CreateAccount(ctx, keystore.Account{Name: "groupie", Groups: many(33, "g%d"), Created: now}), keystore.ErrInvalid)
	wantErr(t, s.CreateAccount(ctx, keystore.Account{Name: "roller", Roles: many(17, "r%d"), Created: now}), keystore.ErrInvalid)
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "member", Groups: many(32, "g%d"), Roles: many(16, "r%d"), Created: now}))
	wantErr(t, s.UpdateAccount(ctx, keystore.Account{Name: "member", Groups: many(33, "g%d")}), keystore.ErrInvalid)

	alice := keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}
	for _, g := range []keystore.Grant{
		{Subject: alice, Repository: "image", Actions: []string{"fly"}},
		{Subject: alice, Repository: "image", Actions: nil},
		{Subject: alice, Repository: "Image", Actions: []string{"pull"}},
		{Subject: alice, Repository: "a//b", Actions: []string{"pull"}},
		{Subject: alice, Repository: "image", Actions: []string{"pull", "pull"}},
		{Subject: keystore.Subject{Kind: "team", Name: "x"}, Repository: "image", Actions: []string{"pull"}},
	} {
		wantErr(t, s.PutGrant(ctx, g), keystore.ErrInvalid)
	}
	got, err := s.ListGrants(ctx, keystore.GrantFilter{})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("invalid grants were stored: %+v", got)
	}
}

// MustEncode writes v as one JSON line.
func MustEncode(t testing.TB, w io.Writer, v any) {
	t.Helper()
	if err := json.NewEncoder(w).Encode(v); err != nil {
		t.Fatal(err)
	}
}
