package boltstore

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/regoauth/regoauth/keystore"
)

// principalCache keeps loaded principals. Every write empties it; the epoch, bumped by each
// write, lets a lookup that raced with a write decline to store what it read.
type principalCache struct {
	lru *expirable.LRU[string, keystore.Principal]

	mu    sync.Mutex
	epoch uint64
}

func newPrincipalCache(size int, ttl time.Duration) *principalCache {
	if size <= 0 {
		size = 10000
	}
	return &principalCache{lru: expirable.NewLRU[string, keystore.Principal](size, nil, ttl)}
}

func (c *principalCache) get(id string) (keystore.Principal, bool) {
	if c == nil {
		return keystore.Principal{}, false
	}
	return c.lru.Get(id)
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
		c.lru.Add(id, p)
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
