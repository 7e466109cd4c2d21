package boltstore

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/regoauth/regoauth/keystore"
)

// principalCache keeps loaded principals, and the ids of keys the file did not have. Every
// write empties it; the epoch, bumped by each write, lets a lookup that raced with a write
// decline to store what it read.
type principalCache struct {
	lru     *expirable.LRU[string, keystore.Principal] // nil when off
	missing *expirable.LRU[string, struct{}]           // nil when off

	mu    sync.Mutex
	epoch uint64
}

func newPrincipalCache(size int, ttl, negativeTTL time.Duration) *principalCache {
	if size <= 0 {
		size = 10000
	}
	c := &principalCache{}
	if ttl > 0 {
		c.lru = expirable.NewLRU[string, keystore.Principal](size, nil, ttl)
	}
	if negativeTTL > 0 {
		c.missing = expirable.NewLRU[string, struct{}](size, nil, negativeTTL)
	}
	return c
}

func (c *principalCache) get(id string) (keystore.Principal, bool) {
	if c == nil || c.lru == nil {
		return keystore.Principal{}, false
	}
	return c.lru.Get(id)
}

// knownMissing reports whether key id was not in the file when last looked up.
func (c *principalCache) knownMissing(id string) bool {
	return c != nil && c.missing != nil && c.missing.Contains(id)
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
	if c.lru != nil && c.epoch == epoch {
		c.lru.Add(id, p)
	}
}

func (c *principalCache) putMissing(id string, epoch uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.missing != nil && c.epoch == epoch {
		c.missing.Add(id, struct{}{})
	}
}

func (c *principalCache) invalidate() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if c.lru != nil {
		c.lru.Purge()
	}
	if c.missing != nil {
		c.missing.Purge()
	}
}
