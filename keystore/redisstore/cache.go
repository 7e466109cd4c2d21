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
	lru     *expirable.LRU[string, cachedPrincipal]
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

// cachedPrincipal is an entry: a principal is not served once one of its grants has ended, so
// the cache never outlives a purchase.
type cachedPrincipal struct {
	p keystore.Principal
	// until is the first end of one of p's grants; zero when none ends.
	until time.Time
}

func newPrincipalCache(size int, ttl time.Duration, now func() time.Time, m *metrics) *principalCache {
	return &principalCache{lru: expirable.NewLRU[string, cachedPrincipal](size, nil, ttl), now: now, metrics: m}
}

func (c *principalCache) liveLocked() bool {
	return c.subscribed && c.now().Sub(c.lastPong) < maxSilence
}

func (c *principalCache) get(id string) (keystore.Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.liveLocked() {
		c.metrics.cache.WithLabelValues("bypass").Inc()
		return keystore.Principal{}, false
	}
	e, ok := c.lru.Get(id)
	if ok && !e.until.IsZero() && !c.now().Before(e.until) {
		c.lru.Remove(id)
		ok = false
	}
	if ok {
		c.metrics.cache.WithLabelValues("hit").Inc()
	} else {
		c.metrics.cache.WithLabelValues("miss").Inc()
	}
	return e.p, ok
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
	if c.epoch == epoch && c.liveLocked() {
		c.lru.Add(id, cachedPrincipal{p: p, until: keystore.FirstGrantEnd(p.Grants)})
	}
}

// invalidate evicts what a message names: "k ID" a key, "a NAME" everything of an account,
// "g NAME" everything of the group's members; anything else empties the cache.
func (c *principalCache) invalidate(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	kind, name, _ := strings.Cut(msg, " ")
	switch kind {
	case "k":
		c.lru.Remove(name)
		return
	case "a", "g":
		for _, id := range c.lru.Keys() {
			e, ok := c.lru.Peek(id)
			if ok && (kind == "a" && e.p.Account.Name == name || kind == "g" && slices.Contains(e.p.Account.Groups, name)) {
				c.lru.Remove(id)
			}
		}
		return
	}
	c.lru.Purge()
}

// setSubscribed records the channel's state; any change empties the cache, because messages
// may have been missed while it was down.
func (c *principalCache) setSubscribed(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.lru.Purge()
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
