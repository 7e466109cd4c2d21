package throttle_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/throttle"
)

// TestEveryFailureCounts: guesses sent at once are each checked against a budget that none of
// them has spent yet, so more than the budget get through once. Each is counted all the same,
// beyond the budget too, so that the address then waits for all of them: over time no address
// gets more failures than its budget refills, however many it sends at once. (Before, failures
// beyond the budget were not counted, and an address sending 40 at once each time one more was
// allowed got 40 every 2 s instead of one.)
func TestEveryFailureCounts(t *testing.T) {
	limits := throttle.Limits{Address: throttle.Limit{Burst: 5, Every: 2 * time.Second}}
	const atOnce = 40
	// Waiting for the 35 failures beyond the budget, and one interval for the next.
	want := time.Duration(atOnce-limits.Address.Burst+1) * limits.Address.Every
	check := func(t *testing.T, g *throttle.Guard) {
		for i := range atOnce {
			if err := g.Allow(ctx, attacker, fmt.Sprint("user", i)); err != nil {
				t.Fatalf("attempt %d, before any failure is known: %v", i+1, err)
			}
		}
		for i := range atOnce {
			g.Failed(ctx, attacker, fmt.Sprint("user", i))
		}
		th := wantThrottled(t, g.Allow(ctx, attacker, "next"), throttle.ByAddress)
		if th.RetryAfter < want-time.Second || th.RetryAfter > want+time.Second {
			t.Fatalf("after %d failures at once with a budget of %d: retry after %s, want about %s", atOnce, limits.Address.Burst, th.RetryAfter, want)
		}
	}
	t.Run("memory", func(t *testing.T) {
		g, c, _ := newGuard(t, limits)
		check(t, g)
		c.advance(want - limits.Address.Every)
		wantThrottled(t, g.Allow(ctx, attacker, "next"), throttle.ByAddress)
		c.advance(limits.Address.Every)
		if err := g.Allow(ctx, attacker, "next"); err != nil {
			t.Fatalf("once every failure is paid for: %v", err)
		}
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		g, _, _ := replica(t, srv, limits)
		check(t, g)
		// A replica that missed the message learns the debt from Redis at its next failure.
		other, _, _ := replica(t, srv, limits)
		other.Failed(ctx, attacker, "late")
		th := wantThrottled(t, other.Allow(ctx, attacker, "next"), throttle.ByAddress)
		if th.RetryAfter < want {
			t.Fatalf("another replica: retry after %s, want at least %s", th.RetryAfter, want)
		}
	})
}

// TestRememberCoversTheDebt: a backend remembers a key for as long as a budget spent by as many
// failures at once as can be checked at once takes to refill, and never less than Refill.
func TestRememberCoversTheDebt(t *testing.T) {
	limits := throttle.Limits{
		Address:        throttle.Limit{Burst: 200, Every: 500 * time.Millisecond},
		AccountAddress: throttle.Limit{Burst: 30, Every: 10 * time.Second},
		Account:        throttle.Limit{Burst: 600, Every: time.Second},
	}
	if got, want := limits.Remember(1024), (30+1024)*10*time.Second; got != want {
		t.Fatalf("Remember(1024) = %s, want %s (the account-at-address budget 1,054 intervals below full)", got, want)
	}
	if got := limits.Remember(0); got != limits.Refill() {
		t.Fatalf("Remember(0) = %s, want Refill %s", got, limits.Refill())
	}
	if got := (throttle.Limits{}).Remember(1024); got != time.Second {
		t.Fatalf("with every budget off, Remember = %s, want 1s", got)
	}
}
