package throttle_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/throttle"
)

// commands counts the commands a client sends.
type commands struct{ n atomic.Int64 }

func (c *commands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// replica is one token server's view of a shared Redis: its own client and backend.
func replica(t *testing.T, srv *redistest.Server, limits throttle.Limits) (*throttle.Guard, *throttle.Redis, *commands) {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	counter := &commands{}
	client.AddHook(counter)
	b := throttle.NewRedis(client, throttle.RedisOptions{Prefix: "{test}:", Forget: limits.Refill()})
	t.Cleanup(func() { b.Close(); client.Close() })
	waitLive(t, b)
	return throttle.NewGuard(b, limits, nil, nil), b, counter
}

// waitLive waits until the backend answers Wait from memory (its subscription is proven).
func waitLive(t *testing.T, b *throttle.Redis) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !b.Live() {
		if time.Now().After(deadline) {
			t.Fatal("the backend's subscription is not live after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRedisSharedAcrossReplicas: failures seen by two replicas spend one budget in Redis; once
// it is spent, both refuse the address before checking anything, and neither asks Redis to
// know it.
func TestRedisSharedAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	limits := throttle.Limits{
		Address:        throttle.Limit{Burst: 6, Every: time.Minute},
		AccountAddress: throttle.Limit{Burst: 100, Every: time.Minute},
	}
	a, _, _ := replica(t, srv, limits)
	b, _, bCommands := replica(t, srv, limits)
	for i := range 6 {
		g := []*throttle.Guard{a, b}[i%2]
		if err := fail(t, g, attacker, fmt.Sprint("user", i)); err != nil {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	for name, g := range map[string]*throttle.Guard{"A": a, "B": b} {
		deadline := time.Now().Add(time.Second)
		for g.Allow(ctx, attacker, "x") == nil {
			if time.Now().After(deadline) {
				t.Fatalf("replica %s still allows the address a second after the budget was spent", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
		th := wantThrottled(t, g.Allow(ctx, attacker, "x"), throttle.ByAddress)
		if th.RetryAfter < 50*time.Second || th.RetryAfter > time.Minute {
			t.Fatalf("replica %s: retry after %s, want about a minute", name, th.RetryAfter)
		}
	}
	before := bCommands.n.Load()
	for range 100 {
		wantThrottled(t, b.Allow(ctx, attacker, "x"), throttle.ByAddress)
		if err := b.Allow(ctx, elsewhere, "x"); err != nil {
			t.Fatalf("another address: %v", err)
		}
	}
	if n := bCommands.n.Load() - before; n != 0 {
		t.Fatalf("200 checks sent %d commands to Redis; they must be answered from memory", n)
	}
}

// TestRedisWithoutSubscriptionAsksRedis: a replica that never heard the message (it started
// after the budget was spent) still refuses once Redis is asked; while its subscription is
// down it asks Redis for every check.
func TestRedisWithoutSubscriptionAsksRedis(t *testing.T) {
	srv := redistest.Start(t)
	limits := throttle.Limits{Address: throttle.Limit{Burst: 2, Every: time.Minute}}
	a, _, _ := replica(t, srv, limits)
	fail(t, a, attacker, "")
	fail(t, a, attacker, "")
	wantThrottled(t, a.Allow(ctx, attacker, ""), throttle.ByAddress)

	// A replica started later missed the message: its first failure for the key is refused by
	// Redis and blocks the key locally from then on.
	late, _, _ := replica(t, srv, limits)
	if err := late.Allow(ctx, attacker, ""); err != nil {
		t.Fatalf("late replica, before any failure of its own: %v (it cannot know yet)", err)
	}
	late.Failed(ctx, attacker, "")
	wantThrottled(t, late.Allow(ctx, attacker, ""), throttle.ByAddress)

	// A backend whose subscription is not live asks Redis.
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer client.Close()
	deaf := throttle.NewRedis(client, throttle.RedisOptions{Prefix: "{test}:", Now: func() time.Time { return time.Now().Add(time.Hour) }})
	defer deaf.Close()
	if deaf.Live() {
		t.Fatal("a backend whose pongs are an hour old claims to be live")
	}
	room, wait, err := deaf.Room(ctx, "ip:"+attacker.String(), limits.Address)
	if err != nil || room != 0 || wait <= 0 {
		t.Fatalf("Room without a live subscription = %d, %s, %v; want the budget Redis holds", room, wait, err)
	}
	other := netip.MustParseAddr("192.0.2.200")
	if room, wait, err := deaf.Room(ctx, "ip:"+other.String(), limits.Address); err != nil || room != limits.Address.Burst || wait != 0 {
		t.Fatalf("an untouched key: %d, %s, %v", room, wait, err)
	}
}

// TestRedisDown: with Redis gone the guard allows (the store then fails closed on its own) and
// counts the error.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	limits := throttle.Limits{Address: throttle.Limit{Burst: 1, Every: time.Minute}}
	g, b, _ := replica(t, srv, limits)
	srv.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for b.Live() {
		if time.Now().After(deadline) {
			t.Fatal("still live 5s after Redis died")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := g.Allow(ctx, attacker, "x"); err != nil {
		t.Fatalf("Allow with Redis down: %v", err)
	}
	if err := g.Failed(ctx, attacker, "x"); err != nil {
		t.Fatalf("Failed with Redis down: %v", err)
	}
}
