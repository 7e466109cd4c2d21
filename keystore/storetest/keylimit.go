package storetest

import (
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// testKeysPerAccountLimit checks CreateKeyWithin: concurrent creations never leave an account
// with more live keys than the limit, the rest being ErrLimit; only live keys at the store's
// clock count (not revoked ones, not expired ones, not another account's); 0 is no limit; the
// limit is checked after the key itself (an invalid key is ErrInvalid, an unknown account
// ErrNotFound).
func testKeysPerAccountLimit(t *testing.T, s keystore.Store, c *clock) {
	must(t, s.CreateAccount(ctx, acct("sam")))
	must(t, s.CreateAccount(ctx, acct("eve")))
	revoked, _ := NewKey(t, "sam")
	must(t, s.CreateKey(ctx, revoked))
	must(t, s.RevokeKey(ctx, revoked.ID))
	expiring, _ := NewKey(t, "sam")
	expiring.Expires = now.Add(time.Hour)
	must(t, s.CreateKey(ctx, expiring))
	for range 3 {
		k, _ := NewKey(t, "eve")
		must(t, s.CreateKey(ctx, k))
	}

	// sam holds one live key (the expiring one): 4 more may be created, racing 40 attempts.
	const limit, attempts = 5, 40
	limited := limitedOf(t, attempts, func(int) error {
		k, _ := NewKey(t, "sam")
		return s.CreateKeyWithin(ctx, k, limit)
	})
	keys, err := s.ListKeys(ctx, "sam")
	must(t, err)
	if live := liveKeys(keys, c.Now()); live != limit || limited != attempts-(limit-1) {
		t.Fatalf("sam holds %d live keys after %d racing creations, %d refused with ErrLimit; want %d and %d", live, attempts, limited, limit, attempts-(limit-1))
	}

	// Once the expiring key has expired there is room for one more, and then none.
	c.Set(now.Add(time.Hour))
	k, _ := NewKey(t, "sam")
	must(t, s.CreateKeyWithin(ctx, k, limit))
	k, _ = NewKey(t, "sam")
	err = s.CreateKeyWithin(ctx, k, limit)
	wantErr(t, err, keystore.ErrLimit)
	if err.Error() != `account "sam" holds 5 live API keys, the most it may; revoke one first: limit reached` {
		t.Fatalf("limit error = %q", err)
	}
	// 0 is no limit; another account counts its own keys.
	must(t, s.CreateKeyWithin(ctx, k, 0))
	k, _ = NewKey(t, "eve")
	must(t, s.CreateKeyWithin(ctx, k, 4))
	k, _ = NewKey(t, "eve")
	wantErr(t, s.CreateKeyWithin(ctx, k, 4), keystore.ErrLimit)

	orphan, _ := NewKey(t, "nobody")
	wantErr(t, s.CreateKeyWithin(ctx, orphan, 1), keystore.ErrNotFound)
	bad, _ := NewKey(t, "sam")
	bad.Hash = nil
	wantErr(t, s.CreateKeyWithin(ctx, bad, 100), keystore.ErrInvalid)
}

func liveKeys(keys []keystore.Key, at time.Time) int {
	n := 0
	for _, k := range keys {
		if k.Live(at) {
			n++
		}
	}
	return n
}
