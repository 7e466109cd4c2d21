package throttle_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/throttle"
)

var benchLimits = throttle.Limits{
	Address:        throttle.Limit{Burst: 200, Every: 500 * time.Millisecond},
	AccountAddress: throttle.Limit{Burst: 30, Every: 10 * time.Second},
	Account:        throttle.Limit{Burst: 600, Every: time.Second},
}

// BenchmarkAllow is what the failure budgets cost a valid request: the check before the
// credentials, for a client with no failures, in process (bolt) and with Redis (answered from
// this replica's memory while its subscription is alive). Compare it with
// authz.BenchmarkHandler/cached, the cheapest whole token request.
func BenchmarkAllow(b *testing.B) {
	client := netip.MustParseAddr("203.0.113.7")
	b.Run("memory", func(b *testing.B) {
		g := throttle.NewGuard(throttle.NewMemory(100_000, benchLimits.Refill(), nil), benchLimits, nil, nil)
		b.ReportAllocs()
		for b.Loop() {
			if err := g.Allow(ctx, client, "user1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("redis", func(b *testing.B) {
		g := redisBenchGuard(b)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := g.Allow(ctx, client, "user1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAllowWhileRefusing is the check of a valid request while some other client's budget
// is spent: every budget of the request is looked up.
func BenchmarkAllowWhileRefusing(b *testing.B) {
	g := throttle.NewGuard(throttle.NewMemory(100_000, benchLimits.Refill(), nil), benchLimits, nil, nil)
	attacker, client := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.7")
	for range 300 {
		g.Failed(ctx, attacker, "victim")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Allow(ctx, client, "user1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAdmit is what the failure budgets cost a valid request that is checked: the check
// before the credentials, holding a unit of its budgets, and giving it back after a success. It
// is Allow's cost and the bookkeeping of the attempts in flight; "parallel" is many requests at
// once from one client, the worst case for that bookkeeping's lock.
func BenchmarkAdmit(b *testing.B) {
	client := netip.MustParseAddr("203.0.113.7")
	admit := func(b *testing.B, g *throttle.Guard) {
		settle, err := g.Admit(ctx, client, "user1")
		if err != nil {
			b.Fatal(err)
		}
		settle(ctx, false)
	}
	b.Run("memory", func(b *testing.B) {
		g := throttle.NewGuard(throttle.NewMemory(100_000, benchLimits.Refill(), nil), benchLimits, nil, nil)
		b.ReportAllocs()
		for b.Loop() {
			admit(b, g)
		}
	})
	b.Run("memory/parallel", func(b *testing.B) {
		g := throttle.NewGuard(throttle.NewMemory(100_000, benchLimits.Refill(), nil), benchLimits, nil, nil)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				admit(b, g)
			}
		})
	})
	b.Run("redis", func(b *testing.B) {
		g := redisBenchGuard(b)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			admit(b, g)
		}
	})
}

// redisBenchGuard is a Guard of benchLimits on a redis-server of its own, once its
// subscription is live.
func redisBenchGuard(b *testing.B) *throttle.Guard {
	b.Helper()
	srv := redistest.Start(b)
	r := throttle.NewRedis(srv.Client(), throttle.RedisOptions{Prefix: "{bench}:", Forget: benchLimits.Refill()})
	b.Cleanup(func() { r.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for !r.Live() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return throttle.NewGuard(r, benchLimits, nil, nil)
}
