package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

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
