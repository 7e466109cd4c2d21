package redisstore

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore"
)

// The cache is only as good as its invalidation channel. Every write publishes a message in the
// same script, and each replica's listener evicts what it names. The listener pings through its
// own subscription: a pong arrives after every message published before the ping, so while
// pongs keep coming no invalidation can be pending longer than a ping period. When no pong has
// come for maxSilence, or the subscription drops, the cache is bypassed (and emptied) until the
// channel is back: a replica that cannot hear revocations never serves from memory.
const (
	pingEvery  = 200 * time.Millisecond
	maxSilence = 800 * time.Millisecond
)

type principalCache struct {
	// lru holds loaded principals (nil when that cache is off); missing holds the ids of keys
	// Redis did not have (nil when off), so that a client repeating an unknown key costs one
	// lookup per negative TTL. A key created later publishes its id, which evicts it.
	lru     *expirable.LRU[string, keystore.Principal]
	missing *expirable.LRU[string, struct{}]
	now     func() time.Time
	metrics *metrics

	mu sync.Mutex
	// epoch changes on every invalidation and every change of the channel's state. A lookup
	// stores its result only if the epoch is still the one it read before asking Redis, so a
	// result that raced with a change is never cached.
	epoch      uint64
	subscribed bool
	lastPong   time.Time
}

func newPrincipalCache(size int, ttl, negativeTTL time.Duration, now func() time.Time, m *metrics) *principalCache {
	c := &principalCache{now: now, metrics: m}
	if ttl > 0 {
		c.lru = expirable.NewLRU[string, keystore.Principal](size, nil, ttl)
	}
	if negativeTTL > 0 {
		c.missing = expirable.NewLRU[string, struct{}](size, nil, negativeTTL)
	}
	return c
}

func (c *principalCache) liveLocked() bool {
	return c.subscribed && c.now().Sub(c.lastPong) < maxSilence
}

func (c *principalCache) get(id string) (keystore.Principal, bool) {
	p, found, _ := c.lookup(id)
	return p, found
}

// lookup returns the cached principal of key id (found), or that the key is known not to exist
// (missing).
func (c *principalCache) lookup(id string) (p keystore.Principal, found, missing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.liveLocked() {
		c.metrics.cache.WithLabelValues("bypass").Inc()
		return keystore.Principal{}, false, false
	}
	if c.lru != nil {
		if p, found = c.lru.Get(id); found {
			c.metrics.cache.WithLabelValues("hit").Inc()
			return p, true, false
		}
	}
	if c.missing != nil && c.missing.Contains(id) {
		c.metrics.cache.WithLabelValues("negative_hit").Inc()
		return keystore.Principal{}, false, true
	}
	c.metrics.cache.WithLabelValues("miss").Inc()
	return keystore.Principal{}, false, false
}

// epochNow is read before a lookup in Redis; a nil cache has none.
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
	if c.lru != nil && c.epoch == epoch && c.liveLocked() {
		c.lru.Add(id, p)
	}
}

// putMissing records that key id did not exist, under the same rule as put.
func (c *principalCache) putMissing(id string, epoch uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.missing != nil && c.epoch == epoch && c.liveLocked() {
		c.missing.Add(id, struct{}{})
	}
}

// invalidate evicts what a message names: "k ID" a key (created, or changed), "a NAME"
// everything of an account, "g NAME" everything of the group's members; anything else empties
// the cache.
func (c *principalCache) invalidate(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	kind, name, _ := strings.Cut(msg, " ")
	switch kind {
	case "k":
		if c.lru != nil {
			c.lru.Remove(name)
		}
		if c.missing != nil {
			c.missing.Remove(name)
		}
		return
	case "a", "g":
		if c.lru == nil {
			return
		}
		for _, id := range c.lru.Keys() {
			p, ok := c.lru.Peek(id)
			if ok && (kind == "a" && p.Account.Name == name || kind == "g" && slices.Contains(p.Account.Groups, name)) {
				c.lru.Remove(id)
			}
		}
		return
	}
	c.purgeLocked()
}

func (c *principalCache) purgeLocked() {
	if c.lru != nil {
		c.lru.Purge()
	}
	if c.missing != nil {
		c.missing.Purge()
	}
}

// setSubscribed records the channel's state; any change empties the cache, because messages
// may have been missed while it was down.
func (c *principalCache) setSubscribed(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.purgeLocked()
	c.subscribed = on
	if on {
		c.lastPong = c.now()
	}
}

func (c *principalCache) pong() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastPong = c.now()
}

// watch listens to the invalidation channel until ctx ends. go-redis reconnects and
// resubscribes on its own; every new subscription confirmation starts from an empty cache.
func (s *Store) watch(ctx context.Context) {
	ps := s.client.Subscribe(ctx, s.channel)
	defer ps.Close()
	c := s.cache
	lastPing := time.Time{}
	wasUp := false
	setUp := func(up bool) {
		if up == wasUp {
			return
		}
		wasUp = up
		if up {
			s.metrics.listening.Set(1)
		} else {
			s.metrics.listening.Set(0)
		}
	}
	for ctx.Err() == nil {
		if time.Since(lastPing) >= pingEvery {
			lastPing = time.Now()
			if err := ps.Ping(ctx); err != nil {
				c.setSubscribed(false)
				setUp(false)
				sleep(ctx, pingEvery)
				continue
			}
		}
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // nothing arrived; the next ping decides
			}
			if ctx.Err() == nil {
				c.setSubscribed(false)
				setUp(false)
				sleep(ctx, pingEvery)
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == s.channel {
				c.setSubscribed(true)
				setUp(true)
			}
		case *redis.Message:
			s.metrics.invalidations.Inc()
			c.invalidate(m.Payload)
		case *redis.Pong:
			c.pong()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
