package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// testDeleteKeys checks DeleteKeys: dead keys (revoked, or expired at the store's clock) go
// with their index entries, and a caching store forgets them at once; a live key is
// ErrConflict and removes nothing, not even the dead keys asked for beside it; ids that do not
// exist are skipped; another account's keys are untouched; an id removed can be created again.
func testDeleteKeys(t *testing.T, s keystore.Store, c *clock) {
	must(t, s.CreateAccount(ctx, acct("alice")))
	must(t, s.CreateAccount(ctx, acct("bob")))
	newKey := func(account string, expires time.Time, revoked bool) (keystore.Key, string) {
		t.Helper()
		k, plain := NewKey(t, account)
		k.Expires = expires
		must(t, s.CreateKey(ctx, k))
		if revoked {
			must(t, s.RevokeKey(ctx, k.ID))
		}
		return k, plain
	}
	live, livePlain := newKey("alice", time.Time{}, false)
	revoked, revokedPlain := newKey("alice", time.Time{}, true)
	expiring, expiringPlain := newKey("alice", now.Add(time.Hour), false)
	bobs, _ := newKey("bob", time.Time{}, true)
	const missing = "aaaaaaaaaaaaaaaa"
	// Loaded twice each, so that a caching store holds them before they go.
	for range 2 {
		for _, k := range []keystore.Key{live, revoked, expiring, bobs} {
			_, err := s.LoadPrincipal(ctx, k.ID)
			must(t, err)
		}
	}
	ids := func(account string) []string {
		t.Helper()
		keys, err := s.ListKeys(ctx, account)
		must(t, err)
		var out []string
		for _, k := range keys {
			out = append(out, k.ID)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(ids ...string) []string { slices.Sort(ids); return ids }

	// A live key is refused, alone or beside dead ones; so is a key before its expiry.
	for _, batch := range [][]string{{live.ID}, {revoked.ID, live.ID}, {expiring.ID}, {revoked.ID, expiring.ID}} {
		err := s.DeleteKeys(ctx, batch)
		wantErr(t, err, keystore.ErrKeyLive)
		wantErr(t, err, keystore.ErrConflict)
	}
	if got, want := ids("alice"), sorted(live.ID, revoked.ID, expiring.ID); !slices.Equal(got, want) {
		t.Fatalf("after refused removals alice holds %v, want %v", got, want)
	}
	if _, err := keystore.Authenticate(ctx, s, "alice", livePlain, now); err != nil {
		t.Fatalf("a live key after a refused removal: %v", err)
	}

	must(t, s.DeleteKeys(ctx, nil))
	c.Set(now.Add(time.Hour)) // the expiring key has expired
	must(t, s.DeleteKeys(ctx, []string{revoked.ID, missing, expiring.ID}))
	if got, want := ids("alice"), []string{live.ID}; !slices.Equal(got, want) {
		t.Fatalf("after the removal alice holds %v, want %v", got, want)
	}
	if got, want := ids(""), sorted(live.ID, bobs.ID); !slices.Equal(got, want) {
		t.Fatalf("after the removal the store holds %v, want %v", got, want)
	}
	for _, k := range []keystore.Key{revoked, expiring} {
		if _, err := s.GetKey(ctx, k.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("GetKey of a removed key: %v, want ErrNotFound", err)
		}
		if _, err := s.LoadPrincipal(ctx, k.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("LoadPrincipal of a removed key: %v, want ErrNotFound", err)
		}
	}
	for _, plain := range []string{revokedPlain, expiringPlain} {
		wantErr(t, func() error { _, err := keystore.Authenticate(ctx, s, "alice", plain, now); return err }(), keystore.ErrBadCredentials)
	}
	if got, err := s.GetKeys(ctx, []string{revoked.ID, live.ID, expiring.ID}); err != nil || len(got) != 1 || got[0].ID != live.ID {
		t.Fatalf("GetKeys after the removal = %+v, %v; want the live key alone", got, err)
	}
	if _, err := s.LoadPrincipal(ctx, bobs.ID); err != nil {
		t.Fatalf("another account's dead key: %v", err)
	}

	// Removing again, as a concurrent caller would, is no error.
	must(t, s.DeleteKeys(ctx, []string{revoked.ID, expiring.ID}))
	// The id is free again, with no index entry left behind.
	revoked.Revoked = false
	must(t, s.CreateKey(ctx, revoked))
	if got, want := ids("alice"), sorted(live.ID, revoked.ID); !slices.Equal(got, want) {
		t.Fatalf("after creating a removed id again alice holds %v, want %v", got, want)
	}
	if _, err := keystore.Authenticate(ctx, s, "alice", revokedPlain, now); err != nil {
		t.Fatalf("a removed id created again: %v", err)
	}
}
