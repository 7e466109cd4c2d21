package storetest

import (
	"slices"
	"testing"

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

	alice := keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}
	for _, g := range []keystore.Grant{
		{Subject: alice, Repository: "image", Actions: []string{"fly"}},
		{Subject: alice, Repository: "image", Actions: nil},
		{Subject: alice, Repository: "Image", Actions: []string{"pull"}},
		{Subject: alice, Repository: "a//b", Actions: []string{"pull"}},
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
