package keystore_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

func principalOf(account string, groups ...string) keystore.Principal {
	return keystore.Principal{Account: keystore.Account{Name: account, Groups: groups}}
}

// load asks the cache for id, with p behind it, and reports whether the backend was asked.
func load(c *keystore.PrincipalCache, id string, p keystore.Principal) (asked bool) {
	got, err := c.Load(id, func() (keystore.Principal, error) { asked = true; return p, nil })
	if err != nil || got.Account.Name != p.Account.Name {
		panic("cache returned something else")
	}
	return asked
}

func TestPrincipalCacheKeepsWhatItLoaded(t *testing.T) {
	var outcomes []string
	c := keystore.NewPrincipalCache(keystore.CacheOptions{TTL: time.Hour, Observe: func(o string) { outcomes = append(outcomes, o) }})
	if !load(c, "k1", principalOf("alice")) || load(c, "k1", principalOf("alice")) {
		t.Fatal("second lookup asked the backend again")
	}
	if !slices.Equal(outcomes, []string{"miss", "hit"}) {
		t.Fatalf("outcomes = %v", outcomes)
	}
	// Errors are never cached.
	boom := errors.New("down")
	for range 2 {
		if _, err := c.Load("k2", func() (keystore.Principal, error) { return keystore.Principal{}, boom }); !errors.Is(err, boom) {
			t.Fatalf("error = %v", err)
		}
	}
}

// TestPrincipalCacheRefusesARacedResult: a principal read before a change and returned after it
// is not kept, whatever the change evicted.
func TestPrincipalCacheRefusesARacedResult(t *testing.T) {
	for name, change := range map[string]func(c *keystore.PrincipalCache){
		"key":     func(c *keystore.PrincipalCache) { c.EvictKey("other") },
		"account": func(c *keystore.PrincipalCache) { c.EvictAccount("bob") },
		"group":   func(c *keystore.PrincipalCache) { c.EvictGroup("nobody") },
		"purge":   func(c *keystore.PrincipalCache) { c.Purge() },
	} {
		t.Run(name, func(t *testing.T) {
			c := keystore.NewPrincipalCache(keystore.CacheOptions{TTL: time.Hour})
			c.Load("k1", func() (keystore.Principal, error) {
				change(c) // a write lands while the backend is being read
				return principalOf("alice"), nil
			})
			if !load(c, "k1", principalOf("alice")) {
				t.Fatal("kept a principal that raced with a change")
			}
		})
	}
}

func TestPrincipalCacheEvictsWhatChanged(t *testing.T) {
	held := map[string]keystore.Principal{
		"key1": principalOf("alice"), "key2": principalOf("alice", "sellers"), "key3": principalOf("bob", "staff", "sellers"),
	}
	for _, tt := range []struct {
		name    string
		evict   func(c *keystore.PrincipalCache)
		evicted []string
	}{
		{"key", func(c *keystore.PrincipalCache) { c.EvictKey("key1") }, []string{"key1"}},
		{"account", func(c *keystore.PrincipalCache) { c.EvictAccount("alice") }, []string{"key1", "key2"}},
		{"group", func(c *keystore.PrincipalCache) { c.EvictGroup("sellers") }, []string{"key2", "key3"}},
		{"unknown group", func(c *keystore.PrincipalCache) { c.EvictGroup("nobody") }, nil},
		{"all", func(c *keystore.PrincipalCache) { c.Purge() }, []string{"key1", "key2", "key3"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := keystore.NewPrincipalCache(keystore.CacheOptions{TTL: time.Hour})
			for id, p := range held {
				load(c, id, p)
			}
			tt.evict(c)
			for id, p := range held {
				if asked, want := load(c, id, p), slices.Contains(tt.evicted, id); asked != want {
					t.Errorf("%s: backend asked = %v, want %v", id, asked, want)
				}
			}
		})
	}
}

func TestPrincipalCacheBypassedWhileNotUsable(t *testing.T) {
	usable := false
	var outcomes []string
	c := keystore.NewPrincipalCache(keystore.CacheOptions{TTL: time.Hour, Usable: func() bool { return usable },
		Observe: func(o string) { outcomes = append(outcomes, o) }})
	load(c, "k1", principalOf("alice"))
	usable = true
	if !load(c, "k1", principalOf("alice")) {
		t.Fatal("kept a principal loaded while not usable")
	}
	usable = false
	if !load(c, "k1", principalOf("alice")) {
		t.Fatal("served while not usable")
	}
	if want := []string{"bypass", "miss", "bypass"}; !slices.Equal(outcomes, want) {
		t.Fatalf("outcomes = %v, want %v", outcomes, want)
	}
}

func TestPrincipalCacheOff(t *testing.T) {
	c := keystore.NewPrincipalCache(keystore.CacheOptions{})
	if c != nil {
		t.Fatal("a cache without a TTL is on")
	}
	c.Purge() // a nil cache takes every call
	if !load(c, "k1", principalOf("alice")) || !load(c, "k1", principalOf("alice")) {
		t.Fatal("an off cache served from memory")
	}
}

// TestPrincipalCacheEndsWithTheFirstGrantEnd: a principal whose grant ends is not served from
// memory past that end, however long the TTL, so a purchase that ended gives nothing at once.
func TestPrincipalCacheEndsWithTheFirstGrantEnd(t *testing.T) {
	now := time.Unix(1000, 0)
	c := keystore.NewPrincipalCache(keystore.CacheOptions{TTL: time.Hour, Now: func() time.Time { return now }})
	p := principalOf("buyer")
	p.Grants = []keystore.Grant{
		{Repository: "forever", Actions: []string{"pull"}},
		{Repository: "later", Actions: []string{"pull"}, Expires: now.Add(time.Hour)},
		{Repository: "soon", Actions: []string{"pull"}, Expires: now.Add(time.Minute)},
	}
	load(c, "k1", p)
	now = now.Add(time.Minute - time.Nanosecond)
	if load(c, "k1", p) {
		t.Fatal("not served before its first grant ends")
	}
	now = now.Add(time.Nanosecond)
	if !load(c, "k1", p) {
		t.Fatal("served at the instant one of its grants ends")
	}
}
