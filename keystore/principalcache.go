package keystore

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// DefaultCacheSize bounds a principal cache whose size is not configured.
const DefaultCacheSize = 10000

// CacheOptions configure a PrincipalCache.
type CacheOptions struct {
	// TTL bounds how long a principal is served from memory; 0 keeps none.
	TTL time.Duration
	// Size bounds how many principals are kept (DefaultCacheSize when 0 or less), and as many
	// unknown key ids.
	Size int
	// NegativeTTL bounds how long a key id the backend did not have is answered "not found"
	// from memory, so that a client repeating an unknown key costs one lookup per NegativeTTL;
	// 0 keeps none. Creating a key must evict its id (EvictKey) wherever it may be cached.
	NegativeTTL time.Duration
	// Usable, when set, is asked on every lookup and every store: while it says false, the
	// cache neither serves nor keeps anything. A backend whose invalidations can be lost (Redis,
	// while its invalidation channel is down) says so through it.
	Usable func() bool
	// Observe, when set, is told the outcome of every lookup: "hit", "negative_hit" (a key id
	// known not to exist), "miss" or "bypass".
	Observe func(outcome string)
	// Now is the clock grant ends are compared with (default time.Now).
	Now func() time.Time
}

// PrincipalCache keeps the principals a backend loaded, for the backends that cache, and the
// key ids it did not have. Every change bumps an epoch: Load reads the epoch before it asks the
// backend and keeps the result only if the epoch is still the same afterwards, so a principal
// (or an absence) read before a write and returned after it is never cached. An entry is not
// served once one of its grants has ended, so the cache never outlives a purchase. A nil
// *PrincipalCache is a cache that is off.
type PrincipalCache struct {
	lru     *expirable.LRU[string, cachedPrincipal] // nil when TTL is 0
	missing *expirable.LRU[string, struct{}]        // nil when NegativeTTL is 0
	opts    CacheOptions

	mu    sync.Mutex
	epoch uint64
}

// NewPrincipalCache returns a cache, or nil (off) when neither opts.TTL nor opts.NegativeTTL is
// positive.
func NewPrincipalCache(opts CacheOptions) *PrincipalCache {
	if opts.TTL <= 0 && opts.NegativeTTL <= 0 {
		return nil
	}
	if opts.Size <= 0 {
		opts.Size = DefaultCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &PrincipalCache{opts: opts}
	if opts.TTL > 0 {
		c.lru = expirable.NewLRU[string, cachedPrincipal](opts.Size, nil, opts.TTL)
	}
	if opts.NegativeTTL > 0 {
		c.missing = expirable.NewLRU[string, struct{}](opts.Size, nil, opts.NegativeTTL)
	}
	return c
}

type cachedPrincipal struct {
	p Principal
	// until is the first end of one of p's grants; zero when none ends.
	until time.Time
}

// Load returns the cached principal of keyID, or calls load and caches what it returns. A
// load that fails with ErrNotFound is remembered too, when unknown ids are kept.
func (c *PrincipalCache) Load(keyID string, load func() (Principal, error)) (Principal, error) {
	if c == nil {
		return load()
	}
	c.mu.Lock()
	p, outcome := c.lookupLocked(keyID)
	epoch := c.epoch
	c.mu.Unlock()
	if c.opts.Observe != nil {
		c.opts.Observe(outcome)
	}
	switch outcome {
	case "hit":
		return p, nil
	case "negative_hit":
		return Principal{}, fmt.Errorf("key %q: %w", keyID, ErrNotFound)
	}
	p, err := load()
	if err != nil && !errors.Is(err, ErrNotFound) {
		return p, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch || !c.usableLocked() {
		return p, err
	}
	switch {
	case err == nil && c.lru != nil:
		c.lru.Add(keyID, cachedPrincipal{p: p, until: FirstGrantEnd(p.Grants)})
	case err != nil && c.missing != nil:
		c.missing.Add(keyID, struct{}{})
	}
	return p, err
}

func (c *PrincipalCache) lookupLocked(keyID string) (Principal, string) {
	if !c.usableLocked() {
		return Principal{}, "bypass"
	}
	if c.lru != nil {
		e, ok := c.lru.Get(keyID)
		if ok && !e.until.IsZero() && !c.opts.Now().Before(e.until) {
			c.lru.Remove(keyID)
			ok = false
		}
		if ok {
			return e.p, "hit"
		}
	}
	if c.missing != nil && c.missing.Contains(keyID) {
		return Principal{}, "negative_hit"
	}
	return Principal{}, "miss"
}

func (c *PrincipalCache) usableLocked() bool { return c.opts.Usable == nil || c.opts.Usable() }

// EvictKey drops the principal of one key, or the memory that it did not exist: the key was
// changed, or created.
func (c *PrincipalCache) EvictKey(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if c.lru != nil {
		c.lru.Remove(id)
	}
	if c.missing != nil {
		c.missing.Remove(id)
	}
}

// EvictAccount drops every principal of an account: its record, grants or ownership changed.
func (c *PrincipalCache) EvictAccount(name string) {
	c.evict(func(p Principal) bool { return p.Account.Name == name })
}

// EvictGroup drops the principal of every member of a group: the group's grants changed.
func (c *PrincipalCache) EvictGroup(name string) {
	c.evict(func(p Principal) bool { return slices.Contains(p.Account.Groups, name) })
}

// Purge empties the cache, unknown ids included.
func (c *PrincipalCache) Purge() {
	c.evict(nil)
}

// evict drops the entries match selects, or all of them (unknown ids included) when match is
// nil, and bumps the epoch whatever it dropped: a lookup in flight may have read what changed.
func (c *PrincipalCache) evict(match func(p Principal) bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if match == nil {
		if c.lru != nil {
			c.lru.Purge()
		}
		if c.missing != nil {
			c.missing.Purge()
		}
		return
	}
	if c.lru == nil {
		return
	}
	for _, id := range c.lru.Keys() {
		if e, ok := c.lru.Peek(id); ok && match(e.p) {
			c.lru.Remove(id)
		}
	}
}
