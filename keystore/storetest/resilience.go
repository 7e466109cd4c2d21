package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

func testConcurrentWrites(t *testing.T, s keystore.Store) {
	alice := keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 30 {
		wg.Go(func() {
			errs <- s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: "image", Actions: []string{keystore.GrantActions[i%3]}}, keystore.Unguarded)
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

func testSurvivesDisruption(t *testing.T, s keystore.Store, disrupt func(t *testing.T)) {
	must(t, s.CreateAccount(ctx, acct("alice", "sellers")))
	k, plain := NewKey(t, "alice")
	must(t, s.CreateKey(ctx, k))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "sellers"}, Repository: "shop/*", Actions: []string{"push"}}, keystore.Unguarded))
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
