// Package redissub owns a Redis pub/sub subscription that proves it is alive: the listener
// pings through its own subscription, and a pong arrives after every message published before
// the ping, so while pongs keep coming no message can be pending longer than a ping period.
// Replicas use it to share what must reach every one of them (cache invalidations, blocked
// keys) and to stop trusting their memory while it is silent. It knows nothing of what the
// messages mean.
package redissub

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// PingEvery is how often the listener pings, and how long it waits before trying again
	// after a failure.
	PingEvery = 200 * time.Millisecond
	// MaxSilence is how long after the last pong the subscription stops counting as alive.
	MaxSilence = 800 * time.Millisecond
)

// Liveness is the state of a subscription: alive while subscribed and answering pings.
type Liveness struct {
	// Now is the clock of the silence check (default time.Now).
	Now func() time.Time

	mu         sync.Mutex
	subscribed bool
	lastPong   time.Time
}

func (l *Liveness) now() time.Time {
	if l.Now == nil {
		return time.Now()
	}
	return l.Now()
}

// Alive reports whether the subscription is up and answered a ping within MaxSilence.
func (l *Liveness) Alive() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.subscribed && l.now().Sub(l.lastPong) < MaxSilence
}

// SetSubscribed records that the subscription is up (counting as a pong) or down.
func (l *Liveness) SetSubscribed(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subscribed = on
	if on {
		l.lastPong = l.now()
	}
}

// Pong records a pong.
func (l *Liveness) Pong() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastPong = l.now()
}

// Watch listens to channel until ctx ends. go-redis reconnects and resubscribes on its own; an
// error reply makes Watch subscribe again. Watch records each confirmation of the
// subscription, and each failure of a ping or a read, with set (nil: l.SetSubscribed; a set
// that does more must call l.SetSubscribed first), and hands message the payload of every
// message, in order.
func (l *Liveness) Watch(ctx context.Context, client redis.UniversalClient, channel string, set func(up bool), message func(payload string)) {
	ps := client.Subscribe(ctx, channel)
	defer ps.Close()
	if set == nil {
		set = l.SetSubscribed
	}
	var lastPing time.Time
	for ctx.Err() == nil {
		if time.Since(lastPing) >= PingEvery {
			lastPing = time.Now()
			if err := ps.Ping(ctx); err != nil {
				set(false)
				sleep(ctx, PingEvery)
				continue
			}
		}
		msg, err := ps.ReceiveTimeout(ctx, PingEvery)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // nothing arrived; the next ping decides
			}
			if ctx.Err() != nil {
				continue
			}
			set(false)
			var reply redis.Error
			if errors.As(err, &reply) {
				// Redis answered with an error (LOADING to a ping while it reads its data
				// after a restart, say), and go-redis may or may not have replaced the
				// connection. Either way only a new confirmation may count as subscribed:
				// ask for one on whatever connection is current. Without it a listener whose
				// connection survived the error would stay down for as long as it lasts.
				_ = ps.Subscribe(ctx, channel)
			}
			sleep(ctx, PingEvery)
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == channel {
				set(true)
			}
		case *redis.Message:
			message(m.Payload)
		case *redis.Pong:
			l.Pong()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
