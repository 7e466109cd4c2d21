package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

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
