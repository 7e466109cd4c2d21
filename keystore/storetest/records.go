package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

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
		wantErr(t, s.PutGrant(ctx, g, keystore.Unguarded), keystore.ErrInvalid)
	}
	got, err := s.ListGrants(ctx, keystore.GrantFilter{})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("invalid grants were stored: %+v", got)
	}
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
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: "image", Actions: []string{"pull"}}, keystore.Unguarded))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: "image", Actions: []string{"push", "pull"}}, keystore.Unguarded))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: "acme/*", Actions: []string{"pull"}}, keystore.Unguarded))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: sellers, Repository: "image", Actions: []string{"delete"}}, keystore.Unguarded))

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

	must(t, s.RemoveGrant(ctx, alice, "image", []string{"push"}, keystore.Unguarded))
	got, err = s.ListGrants(ctx, keystore.GrantFilter{Subject: &alice, Repository: "image"})
	must(t, err)
	if len(got) != 1 || !slices.Equal(got[0].Actions, []string{"pull"}) {
		t.Fatalf("after removing push = %+v", got)
	}
	// Removing the last action removes the row.
	must(t, s.RemoveGrant(ctx, alice, "image", []string{"pull"}, keystore.Unguarded))
	got, err = s.ListGrants(ctx, keystore.GrantFilter{Subject: &alice, Repository: "image"})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("row left after removing every action: %+v", got)
	}
	must(t, s.RemoveGrant(ctx, alice, "acme/*", nil, keystore.Unguarded))
	wantErr(t, s.RemoveGrant(ctx, alice, "acme/*", nil, keystore.Unguarded), keystore.ErrNotFound)
}

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
		must(t, s.PutGrant(ctx, g, keystore.Unguarded))
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
	must(t, s.RemoveGrant(ctx, bob, "host:5000/a", nil, keystore.Unguarded))
	must(t, s.RemoveGrant(ctx, team, "host:5000/a", []string{"delete"}, keystore.Unguarded))
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
	wantErr(t, s.RemoveGrant(ctx, bob, "host:5000/a", nil, keystore.Unguarded), keystore.ErrNotFound)
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
	must(t, s.Release(ctx, "shop/app", keystore.Unguarded))
	_, err = s.GetOwnership(ctx, "shop/app")
	wantErr(t, err, keystore.ErrNotFound)
	list, err = s.ListOwnership(ctx, "seller")
	must(t, err)
	if len(list) != 1 || list[0].Repository != "shop/tool" {
		t.Fatalf("ListOwnership after release = %+v", list)
	}
	wantErr(t, s.Release(ctx, "shop/app", keystore.Unguarded), keystore.ErrNotFound)
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
		must(t, s.PutGrant(ctx, g, keystore.Unguarded))
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

func testChangesVisibleAtOnce(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("alice", "buyers")))
	k, plain := NewKey(t, "alice")
	k.Expires = now.Add(time.Hour)
	// Looked up before it exists, twice, so that a store caching unknown ids remembers it.
	for range 2 {
		if _, err := s.LoadPrincipal(ctx, k.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("a key not created yet: %v", err)
		}
	}
	must(t, s.CreateKey(ctx, k))
	buyers := keystore.Subject{Kind: keystore.SubjectGroup, Name: "buyers"}
	alice := keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyers, Repository: "shop/app", Actions: []string{"pull"}}, keystore.Unguarded))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: "own", Actions: []string{"push"}}, keystore.Unguarded))

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
	must(t, s.RemoveGrant(ctx, buyers, "shop/app", nil, keystore.Unguarded))
	if got := grants(); !slices.Equal(got, []string{"own"}) {
		t.Fatalf("after removing the group's grant: %v", got)
	}
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "alice/app", Owner: "alice", Created: now}, 0))
	if p, err := s.LoadPrincipal(ctx, k.ID); err != nil || !slices.Equal(p.Owned, []string{"alice/app"}) {
		t.Fatalf("after reserving: owned %v, %v", p.Owned, err)
	}
	must(t, s.Release(ctx, "alice/app", keystore.Unguarded))
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

// testChangeAccount checks ChangeAccount: it writes only the fields a change sets and returns
// the account as changed; changes of different fields made at once all hold; a change of an
// unknown account is ErrNotFound, an invalid one ErrInvalid and writes nothing.
func testChangeAccount(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "alice", Groups: []string{"sellers"}, Roles: []string{"checkout"}, Created: now}))
	disabled, groups := true, []string{"buyers", "vip"}
	got, err := s.ChangeAccount(ctx, "alice", keystore.AccountChange{Disabled: &disabled})
	must(t, err)
	if !got.Disabled || !slices.Equal(got.Groups, []string{"sellers"}) || !slices.Equal(got.Roles, []string{"checkout"}) || !got.Created.Equal(now) {
		t.Fatalf("after disabling alice: %+v", got)
	}
	got, err = s.ChangeAccount(ctx, "alice", keystore.AccountChange{Groups: &groups})
	must(t, err)
	if read, err := s.GetAccount(ctx, "alice"); err != nil || !read.Disabled || !slices.Equal(read.Groups, groups) || !slices.Equal(got.Groups, groups) || !got.Disabled {
		t.Fatalf("after changing alice's groups: returned %+v, stored %+v, %v", got, read, err)
	}
	none := []string{}
	if got, err := s.ChangeAccount(ctx, "alice", keystore.AccountChange{Roles: &none}); err != nil || len(got.Roles) != 0 || !got.Disabled {
		t.Fatalf("after taking alice's roles: %+v, %v", got, err)
	}

	// Changes of different fields racing each other: every one holds.
	must(t, s.CreateAccount(ctx, acct("bob")))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			var ch keystore.AccountChange
			switch i % 3 {
			case 0:
				ch.Disabled = &disabled
			case 1:
				ch.Groups = &groups
			default:
				roles := []string{"checkout"}
				ch.Roles = &roles
			}
			_, err := s.ChangeAccount(ctx, "bob", ch)
			must(t, err)
		})
	}
	wg.Wait()
	if got, err := s.GetAccount(ctx, "bob"); err != nil || !got.Disabled || !slices.Equal(got.Groups, groups) || !slices.Equal(got.Roles, []string{"checkout"}) {
		t.Fatalf("after racing changes of different fields: %+v, %v", got, err)
	}

	_, err = s.ChangeAccount(ctx, "nobody", keystore.AccountChange{Disabled: &disabled})
	wantErr(t, err, keystore.ErrNotFound)
	var tooMany []string
	for i := range 33 {
		tooMany = append(tooMany, fmt.Sprintf("g%d", i))
	}
	_, err = s.ChangeAccount(ctx, "alice", keystore.AccountChange{Groups: &tooMany, Disabled: new(bool)})
	wantErr(t, err, keystore.ErrInvalid)
	badRole := []string{"Bad Role"}
	_, err = s.ChangeAccount(ctx, "alice", keystore.AccountChange{Roles: &badRole})
	wantErr(t, err, keystore.ErrInvalid)
	if got, err := s.GetAccount(ctx, "alice"); err != nil || !got.Disabled || !slices.Equal(got.Groups, groups) {
		t.Fatalf("refused changes wrote: %+v, %v", got, err)
	}
}
