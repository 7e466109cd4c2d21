package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

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
