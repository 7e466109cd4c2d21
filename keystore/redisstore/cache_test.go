package redisstore

import (
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

func principal(account string, groups ...string) keystore.Principal {
	return keystore.Principal{Account: keystore.Account{Name: account, Groups: groups}}
}

// TestCacheServesOnlyWhileTheChannelIsAlive uses an injected clock: a cache whose channel has
// not answered a ping for maxSilence is bypassed, and a result that raced with an invalidation
// is never stored.
func TestCacheServesOnlyWhileTheChannelIsAlive(t *testing.T) {
	clock := time.Unix(1000, 0)
	c := newPrincipalCache(10, time.Hour, func() time.Time { return clock }, newMetrics(nil))

	c.put("k1", principal("alice"), c.epochNow())
	if _, ok := c.get("k1"); ok {
		t.Fatal("stored while never subscribed")
	}
	c.setSubscribed(true)
	c.put("k1", principal("alice"), c.epochNow())
	if _, ok := c.get("k1"); !ok {
		t.Fatal("miss while subscribed")
	}
	clock = clock.Add(maxSilence)
	if _, ok := c.get("k1"); ok {
		t.Fatal("served although no pong came for maxSilence")
	}
	c.pong()
	if _, ok := c.get("k1"); !ok {
		t.Fatal("not served after a pong")
	}

	epoch := c.epochNow()
	c.invalidate("a bob") // an unrelated change still bumps the epoch
	c.put("k2", principal("carol"), epoch)
	if _, ok := c.get("k2"); ok {
		t.Fatal("stored a result that raced with an invalidation")
	}

	c.setSubscribed(false)
	c.setSubscribed(true)
	if _, ok := c.get("k1"); ok {
		t.Fatal("kept entries across a lost subscription")
	}
}

func TestCacheInvalidation(t *testing.T) {
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
			c := newPrincipalCache(10, time.Hour, time.Now, newMetrics(nil))
			c.setSubscribed(true)
			for id, p := range map[string]keystore.Principal{
				"key1": principal("alice"), "key2": principal("alice", "sellers"), "key3": principal("bob", "staff", "sellers"),
			} {
				c.put(id, p, c.epochNow())
			}
			c.invalidate(tt.msg)
			for _, id := range []string{"key1", "key2", "key3"} {
				_, ok := c.get(id)
				want := true
				for _, e := range tt.evicted {
					if e == id {
						want = false
					}
				}
				if ok != want {
					t.Errorf("%s cached = %v, want %v", id, ok, want)
				}
			}
		})
	}
}

// TestCacheEntryEndsWithItsFirstGrant: a principal whose grant ends is not served from memory
// past that end, however long the TTL, so a purchase that ended gives nothing at once.
func TestCacheEntryEndsWithItsFirstGrant(t *testing.T) {
	clock := time.Unix(1000, 0)
	c := newPrincipalCache(10, time.Hour, func() time.Time { return clock }, newMetrics(nil))
	c.setSubscribed(true)
	p := principal("buyer")
	p.Grants = []keystore.Grant{
		{Repository: "forever", Actions: []string{"pull"}},
		{Repository: "later", Actions: []string{"pull"}, Expires: clock.Add(time.Hour)},
		{Repository: "soon", Actions: []string{"pull"}, Expires: clock.Add(time.Minute)},
	}
	c.put("k1", p, c.epochNow())
	clock = clock.Add(time.Minute - time.Nanosecond)
	c.pong()
	if _, ok := c.get("k1"); !ok {
		t.Fatal("not served before its first grant ends")
	}
	clock = clock.Add(time.Nanosecond)
	c.pong()
	if _, ok := c.get("k1"); ok {
		t.Fatal("served at the instant one of its grants ends")
	}
}
