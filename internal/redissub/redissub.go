// Package redissub owns a Redis pub/sub subscription that proves it is alive: the listener
// pings through its own subscription, and a pong arrives after every message published before
// the ping, so while pongs keep coming no message can be pending longer than a ping period.
// Replicas use it to share what must reach every one of them (cache invalidations, blocked
// keys) and to stop trusting their memory while it is silent. It knows nothing of what the
// messages mean.
package redissub

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"strconv"
	"strings"
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

// probeID tells this process's probes from those of the other listeners on the channel.
var probeID = rand.Text()

// Liveness is the state of a subscription: alive while subscribed and answering pings.
type Liveness struct {
	// Now is the clock of the silence check (default time.Now).
	Now func() time.Time
	// Probe, when set, publishes payload on the channel the way the messages that matter are
	// published (the same server: under Sentinel the current primary, under Cluster the owner
	// of the channel's hash slot). The listener then counts a probe it receives as its pong, as
	// of when the probe was sent: it proves that every message published there before the probe
	// has arrived, even when the subscription stands on another server than the one written to
	// (a former primary after a failover, a node that lost a slot), where a ping through the
	// subscription would prove nothing. Without Probe the listener pings through its
	// subscription.
	Probe func(ctx context.Context, channel, payload string) error

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

// probed records a probe sent at sent and received now. It reports whether the liveness had
// lapsed: messages may have been lost meanwhile (a server that resynchronised from a new
// primary does not replay what was published before its copy), so the caller must treat it as
// a new subscription.
func (l *Liveness) probed(sent time.Time) (lapsed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lapsed = !l.subscribed || l.now().Sub(l.lastPong) >= MaxSilence
	if sent.After(l.lastPong) {
		l.lastPong = sent
	}
	return lapsed
}

// probePrefix starts the payload of a probe; no message of the users of this package starts
// with a NUL byte.
const probePrefix = "\x00probe "

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
	// sent holds the probes on their way, by payload, with when each was sent.
	sent := map[string]time.Time{}
	var seq uint64
	for ctx.Err() == nil {
		if time.Since(lastPing) >= PingEvery {
			lastPing = time.Now()
			var err error
			if l.Probe != nil {
				seq++
				payload := probePrefix + strconv.FormatUint(seq, 10) + " " + probeID
				at := l.now()
				if err = l.Probe(ctx, channel, payload); err == nil {
					sent[payload] = at
				}
				for p, t := range sent {
					if at.Sub(t) > MaxSilence {
						delete(sent, p)
					}
				}
			}
			// The ping keeps proving the connection itself, whose failure ends the subscription;
			// with a probe, only the probe counts as a pong.
			if perr := ps.Ping(ctx); err == nil {
				err = perr
			}
			if err != nil {
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
			if strings.HasPrefix(m.Payload, probePrefix) {
				if at, ok := sent[m.Payload]; ok {
					delete(sent, m.Payload)
					if l.probed(at) {
						set(true)
					}
				}
				continue
			}
			message(m.Payload)
		case *redis.Pong:
			if l.Probe == nil {
				l.Pong()
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// publish runs PUBLISH inside a script whose key is the channel's name, so that it runs where
// the writes of the channel's hash slot run: the primary, under Cluster the slot's owner.
var publish = redis.NewScript(`redis.call('PUBLISH', KEYS[1], ARGV[1]) return 1`)

// Publish publishes payload on channel from the server that takes the writes of the channel's
// hash slot, as the scripts of the users of this package do. It is the Probe of their
// listeners.
func Publish(ctx context.Context, client redis.Scripter, channel, payload string) error {
	return publish.Run(ctx, client, []string{channel}, payload).Err()
}
