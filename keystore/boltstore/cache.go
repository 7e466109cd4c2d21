package boltstore

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/regoauth/regoauth/keystore"
)

// principalCache keeps loaded principals. Every write empties it; the epoch, bumped by each
// write, lets a lookup that raced with a write decline to store what it read. An entry is not
// served once one of its grants has ended, so the cache never outlives a purchase.
type principalCache struct {
	lru *expirable.LRU[string, cachedPrincipal]

	mu    sync.Mutex
	epoch uint64
}

type cachedPrincipal struct {
	p keystore.Principal
	// until is the first end of one of p's grants; zero when none ends.
	until time.Time
}

func newPrincipalCache(size int, ttl time.Duration) *principalCache {
	if size <= 0 {
		size = 10000
	}
	return &principalCache{lru: expirable.NewLRU[string, cachedPrincipal](size, nil, ttl)}
}

func (c *principalCache) get(id string, now time.Time) (keystore.Principal, bool) {
	if c == nil {
		return keystore.Principal{}, false
	}
	e, ok := c.lru.Get(id)
	if ok && !e.until.IsZero() && !now.Before(e.until) {
		c.lru.Remove(id)
		return keystore.Principal{}, false
	}
	return e.p, ok
}

func (c *principalCache) epochNow() uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

func (c *principalCache) put(id string, p keystore.Principal, epoch uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch == epoch {
		c.lru.Add(id, cachedPrincipal{p: p, until: keystore.FirstGrantEnd(p.Grants)})
	}
}

func (c *principalCache) invalidate() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.lru.Purge()
}
