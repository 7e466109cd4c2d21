package keystore

import (
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// DefaultCacheSize bounds a principal cache whose size is not configured.
const DefaultCacheSize = 10000

// CacheOptions configure a PrincipalCache.
type CacheOptions struct {
	// TTL bounds how long a principal is served from memory; 0 turns the cache off.
	TTL time.Duration
	// Size bounds how many principals are kept (DefaultCacheSize when 0 or less).
	Size int
	// Usable, when set, is asked on every lookup and every store: while it says false, the
	// cache neither serves nor keeps anything. A backend whose invalidations can be lost (Redis,
	// while its invalidation channel is down) says so through it.
	Usable func() bool
	// Observe, when set, is told the outcome of every lookup: "hit", "miss" or "bypass".
	Observe func(outcome string)
	// Now is the clock grant ends are compared with (default time.Now).
	Now func() time.Time
}

// PrincipalCache keeps the principals a backend loaded, for the backends that cache. Every
// change bumps an epoch: Load reads the epoch before it asks the backend and keeps the result
// only if the epoch is still the same afterwards, so a principal read before a write and
// returned after it is never cached. An entry is not served once one of its grants has ended,
// so the cache never outlives a purchase. A nil *PrincipalCache is a cache that is off.
type PrincipalCache struct {
	lru  *expirable.LRU[string, cachedPrincipal]
	opts CacheOptions

	mu    sync.Mutex
	epoch uint64
}

// NewPrincipalCache returns a cache, or nil (off) when opts.TTL is not positive.
func NewPrincipalCache(opts CacheOptions) *PrincipalCache {
	if opts.TTL <= 0 {
		return nil
	}
	if opts.Size <= 0 {
		opts.Size = DefaultCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &PrincipalCache{lru: expirable.NewLRU[string, cachedPrincipal](opts.Size, nil, opts.TTL), opts: opts}
}

type cachedPrincipal struct {
	p Principal
	// until is the first end of one of p's grants; zero when none ends.
	until time.Time
}

// Load returns the cached principal of keyID, or calls load and caches what it returns.
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
	if outcome == "hit" {
		return p, nil
	}
	p, err := load()
	if err != nil {
		return p, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch == epoch && c.usableLocked() {
		c.lru.Add(keyID, cachedPrincipal{p: p, until: FirstGrantEnd(p.Grants)})
	}
	return p, nil
}

func (c *PrincipalCache) lookupLocked(keyID string) (Principal, string) {
	if !c.usableLocked() {
		return Principal{}, "bypass"
	}
	e, ok := c.lru.Get(keyID)
	if ok && !e.until.IsZero() && !c.opts.Now().Before(e.until) {
		c.lru.Remove(keyID)
		ok = false
	}
	if ok {
		return e.p, "hit"
	}
	return Principal{}, "miss"
}

func (c *PrincipalCache) usableLocked() bool { return c.opts.Usable == nil || c.opts.Usable() }

// EvictKey drops the principal of one key.
func (c *PrincipalCache) EvictKey(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.lru.Remove(id)
}

// EvictAccount drops every principal of an account: its record, grants or ownership changed.
func (c *PrincipalCache) EvictAccount(name string) {
	c.evict(func(p Principal) bool { return p.Account.Name == name })
}

// EvictGroup drops the principal of every member of a group: the group's grants changed.
func (c *PrincipalCache) EvictGroup(name string) {
	c.evict(func(p Principal) bool { return slices.Contains(p.Account.Groups, name) })
}

// Purge empties the cache.
func (c *PrincipalCache) Purge() {
	c.evict(nil)
}

// evict drops the entries match selects, or all of them when match is nil, and bumps the epoch
// whatever it dropped: a lookup in flight may have read what changed.
func (c *PrincipalCache) evict(match func(p Principal) bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if match == nil {
		c.lru.Purge()
		return
	}
	for _, id := range c.lru.Keys() {
		if e, ok := c.lru.Peek(id); ok && match(e.p) {
			c.lru.Remove(id)
		}
	}
}
