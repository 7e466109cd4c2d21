package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

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
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "alice/app", Owner: "alice", Created: now}))
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "bob/app", Owner: "bob", Created: now}))

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
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "alice/app", Owner: "alice", Created: now}))
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
