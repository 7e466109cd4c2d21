package redisstore

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
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

// liveness is the state of the invalidation channel, the cache's Usable hook: it is alive while
// subscribed and answering pings.
type liveness struct {
	now func() time.Time

	mu         sync.Mutex
	subscribed bool
	lastPong   time.Time
}

func (l *liveness) alive() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.subscribed && l.now().Sub(l.lastPong) < maxSilence
}

func (l *liveness) setSubscribed(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subscribed = on
	if on {
		l.lastPong = l.now()
	}
}

func (l *liveness) pong() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastPong = l.now()
}

// subscribed records the channel's state. Any change empties the cache, because messages may
// have been missed while it was down; the purge comes after the change, so a lookup that read
// the cache's epoch before it does not keep what it loaded.
func (s *Store) subscribed(on bool) {
	s.live.setSubscribed(on)
	s.cache.Purge()
}

// watch listens to the invalidation channel until ctx ends. go-redis reconnects and
// resubscribes on its own; every new subscription confirmation starts from an empty cache.
func (s *Store) watch(ctx context.Context) {
	ps := s.client.Subscribe(ctx, s.channel)
	defer ps.Close()
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
				s.subscribed(false)
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
				s.subscribed(false)
				setUp(false)
				sleep(ctx, pingEvery)
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == s.channel {
				s.subscribed(true)
				setUp(true)
			}
		case *redis.Message:
			s.metrics.invalidations.Inc()
			s.changed(m.Payload)
		case *redis.Pong:
			s.live.pong()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
