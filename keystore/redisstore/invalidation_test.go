package redisstore

import (
	"slices"
	"testing"
	"time"

	"github.com/regoauth/regoauth/internal/redissub"
	"github.com/regoauth/regoauth/keystore"
)

var alice = keystore.Principal{Account: keystore.Account{Name: "alice"}}

// cachingStore is the cache half of a Store, with a clock the test moves: no Redis behind it.
func cachingStore(clock *time.Time) *Store {
	live := &redissub.Liveness{Now: func() time.Time { return *clock }}
	return &Store{live: live, cache: keystore.NewPrincipalCache(keystore.CacheOptions{TTL: time.Hour, Size: 10, Usable: live.Alive})}
}

// cached loads id through the cache, from p on a miss, and reports whether it was a hit.
func cached(s *Store, id string, p keystore.Principal) bool {
	hit := true
	s.cache.Load(id, func() (keystore.Principal, error) { hit = false; return p, nil })
	return hit
}

// TestCacheServesOnlyWhileTheChannelIsAlive uses an injected clock: a cache whose channel has
// not answered a ping for maxSilence is bypassed, and a lost subscription empties it.
func TestCacheServesOnlyWhileTheChannelIsAlive(t *testing.T) {
	clock := time.Unix(1000, 0)
	s := cachingStore(&clock)

	cached(s, "k1", alice)
	if cached(s, "k1", alice) {
		t.Fatal("stored while never subscribed")
	}
	s.subscribed(true)
	cached(s, "k1", alice)
	if !cached(s, "k1", alice) {
		t.Fatal("miss while subscribed")
	}
	clock = clock.Add(redissub.MaxSilence)
	if cached(s, "k1", alice) {
		t.Fatal("served although no pong came for maxSilence")
	}
	s.live.Pong()
	if !cached(s, "k1", alice) {
		t.Fatal("not served after a pong")
	}

	s.subscribed(false)
	s.subscribed(true)
	if cached(s, "k1", alice) {
		t.Fatal("kept entries across a lost subscription")
	}
}

// TestInvalidationMessages: each message evicts what it names, and only that.
func TestInvalidationMessages(t *testing.T) {
	for _, tt := range []struct {
		msg     string
		evicted []string
	}{
		{"k key1", []string{"key1"}},
		{"a alice", []string{"key1", "key2"}},
		{"g sellers", []string{"key2", "key3"}},
		{"g nobody", nil},
		{"*", []string{"key1", "key2", "key3"}},
	} {
		t.Run(tt.msg, func(t *testing.T) {
			clock := time.Now()
			s := cachingStore(&clock)
			s.subscribed(true)
			held := map[string]keystore.Principal{
				"key1": alice, "key2": keystore.Principal{Account: keystore.Account{Name: "alice", Groups: []string{"sellers"}}}, "key3": keystore.Principal{Account: keystore.Account{Name: "bob", Groups: []string{"staff", "sellers"}}},
			}
			for id, p := range held {
				cached(s, id, p)
			}
			s.changed(tt.msg)
			for id, p := range held {
				if hit, want := cached(s, id, p), !slices.Contains(tt.evicted, id); hit != want {
					t.Errorf("%s cached = %v, want %v", id, hit, want)
				}
			}
		})
	}
}
