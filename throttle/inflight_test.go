package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/throttle"
)

// guards returns a Guard of limits on each backend: in memory (its clock standing still unless
// the test moves it) and on a real redis-server (its budgets refill by Redis's clock: the tests
// use intervals of an hour).
func guards(t *testing.T, limits throttle.Limits) map[string]*throttle.Guard {
	t.Helper()
	g, _, _ := newGuard(t, limits)
	r, _, _ := replica(t, redistest.Start(t), limits)
	return map[string]*throttle.Guard{"memory": g, "redis": r}
}

type settle = func(context.Context, bool) error

// admitN admits n attempts from client naming account, failing the test if one is refused or
// waits for long.
func admitN(t *testing.T, g *throttle.Guard, n int, client netip.Addr, account string) []settle {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := make([]settle, n)
	for i := range out {
		s, err := g.Admit(c, client, account)
		if err != nil {
			t.Fatalf("attempt %d of %d: %v", i+1, n, err)
		}
		out[i] = s
	}
	return out
}

// wantWaits asserts that an attempt is held back: it waits for one in flight to end, and when
// its context ends first it is refused after a short Retry-After.
func wantWaits(t *testing.T, g *throttle.Guard, client netip.Addr, account, by string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	s, err := g.Admit(c, client, account)
	if err == nil {
		s(ctx, false)
		t.Fatalf("an attempt beyond the budget, counting those in flight, was let through")
	}
	if th := wantThrottled(t, err, by); th.RetryAfter != time.Second {
		t.Fatalf("a wait that ended with its request: retry after %s, want 1s", th.RetryAfter)
	}
}

// TestAttemptsInFlightCountAsSpent: with room for r more failures, r attempts are let through at
// once and the next waits; a success gives its unit back, a failure keeps it spent, and one
// waiting is let through as soon as a unit comes back.
func TestAttemptsInFlightCountAsSpent(t *testing.T) {
	limits := throttle.Limits{
		Address:        throttle.Limit{Burst: 5, Every: time.Hour},
		AccountAddress: throttle.Limit{Burst: 3, Every: time.Hour},
		Account:        throttle.Limit{Burst: 100, Every: time.Hour},
	}
	for name, g := range guards(t, limits) {
		t.Run(name, func(t *testing.T) {
			held := admitN(t, g, 5, attacker, "")
			wantWaits(t, g, attacker, "", throttle.ByAddress)
			wantWaits(t, g, attacker, "victim", throttle.ByAddress)
			if err := g.Allow(ctx, attacker, ""); err != nil {
				t.Fatalf("attempts in flight are not failures: Allow says %v", err)
			}
			// Another address is not held back.
			for _, s := range admitN(t, g, 5, elsewhere, "") {
				s(ctx, false)
			}

			// A waiting attempt goes through when one in flight succeeds.
			type admitted struct {
				s   settle
				err error
			}
			let := make(chan admitted)
			go func() {
				s, err := g.Admit(ctx, attacker, "victim")
				let <- admitted{s, err}
			}()
			time.Sleep(20 * time.Millisecond)
			held[0](ctx, false)
			held[0](ctx, false) // a second settle does nothing
			held[0](ctx, true)  // not even a failure
			a := <-let
			if a.err != nil {
				t.Fatalf("after a success gave its unit back: %v", a.err)
			}
			held = append(held, a.s)
			wantWaits(t, g, attacker, "", throttle.ByAddress)

			// Two failures spend two units for good: the budget's room is 3, and all 3 are held.
			held[1](ctx, true)
			held[2](ctx, true)
			wantWaits(t, g, attacker, "", throttle.ByAddress)
			for _, s := range held[3:] {
				s(ctx, false)
			}
			more := admitN(t, g, 3, attacker, "victim")
			wantWaits(t, g, attacker, "", throttle.ByAddress)
			for _, s := range more {
				s(ctx, false)
			}

			// The account's budget at an address (3) is held back on its own, while the
			// address's (5) has room for others.
			more = admitN(t, g, 3, elsewhere, "victim")
			wantWaits(t, g, elsewhere, "victim", throttle.ByAccountAddress)
			admitN(t, g, 2, elsewhere, "other")
		})
	}
}

// TestWaitingAttemptsAreRefusedOnceTheBudgetIsSpent: attempts waiting for ones in flight are
// refused, unchecked, with the budget's Retry-After when those fail and spend it.
func TestWaitingAttemptsAreRefusedOnceTheBudgetIsSpent(t *testing.T) {
	limits := throttle.Limits{Address: throttle.Limit{Burst: 4, Every: time.Hour}}
	for name, g := range guards(t, limits) {
		t.Run(name, func(t *testing.T) {
			held := admitN(t, g, 4, attacker, "")
			const waiting = 10
			refused := make(chan error, waiting)
			for range waiting {
				go func() {
					s, err := g.Admit(ctx, attacker, "")
					if err == nil {
						s(ctx, false)
					}
					refused <- err
				}()
			}
			time.Sleep(20 * time.Millisecond)
			for _, s := range held {
				// A client that hung up does not take its failure with it.
				gone, cancel := context.WithCancel(ctx)
				cancel()
				s(gone, true)
			}
			for range waiting {
				th := wantThrottled(t, <-refused, throttle.ByAddress)
				if th.RetryAfter < 59*time.Minute || th.RetryAfter > time.Hour {
					t.Fatalf("retry after %s, want an hour", th.RetryAfter)
				}
			}
		})
	}
}

// TestExemptAndOffBudgetsHoldNothing: an exempt address, and a budget turned off, let every
// attempt through at once, as before.
func TestExemptAndOffBudgetsHoldNothing(t *testing.T) {
	nat := netip.MustParseAddr("10.1.2.3")
	g, _, _ := newGuard(t, throttle.Limits{
		Address:        throttle.Limit{Burst: 1, Every: time.Hour},
		AccountAddress: throttle.Limit{Burst: 2, Every: time.Hour},
		Exempt:         []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	for i := range 50 {
		admitN(t, g, 1, nat, fmt.Sprint("user", i))
	}
	admitN(t, g, 2, nat, "ci")
	wantWaits(t, g, nat, "ci", throttle.ByAccountAddress)

	off, _, _ := newGuard(t, throttle.Limits{})
	admitN(t, off, 100, attacker, "victim")
}

// TestInFlightAndSpentNeverExceedTheBudget: many clients' worth of attempts from one address,
// admitted, failed or succeeded at random, at once, on a budget that does not refill: at no
// moment are the attempts being checked and the failures so far more than the budget.
func TestInFlightAndSpentNeverExceedTheBudget(t *testing.T) {
	limits := throttle.Limits{
		Address:        throttle.Limit{Burst: 12, Every: time.Hour},
		AccountAddress: throttle.Limit{Burst: 5, Every: time.Hour},
	}
	for name, g := range guards(t, limits) {
		t.Run(name, func(t *testing.T) {
			var (
				// used is the attempts in flight and the failures: a success leaves it before it
				// settles (the guard still counts it), a failure never.
				used      atomic.Int64
				usedBy    = map[string]*atomic.Int64{"a": {}, "b": {}}
				admitted  atomic.Int64
				failures  atomic.Int64
				worst     atomic.Int64
				wg        sync.WaitGroup
				unbounded = errors.New("more attempts in flight and failures than the budget")
			)
			errs := make(chan error, 64)
			report := func(err error) {
				select {
				case errs <- err:
				default: // enough reported
				}
			}
			for w := range 64 {
				wg.Go(func() {
					account := []string{"", "a", "b"}[w%3]
					for {
						s, err := g.Admit(ctx, attacker, account)
						if err != nil {
							if !errors.Is(err, throttle.ErrThrottled) {
								report(err)
							}
							return
						}
						admitted.Add(1)
						n := used.Add(1)
						for m := worst.Load(); n > m && !worst.CompareAndSwap(m, n); m = worst.Load() {
						}
						if n > int64(limits.Address.Burst) {
							report(fmt.Errorf("%w: %d at the address, whose budget is %d", unbounded, n, limits.Address.Burst))
						}
						if u := usedBy[account]; u != nil {
							if n := u.Add(1); n > int64(limits.AccountAddress.Burst) {
								report(fmt.Errorf("%w: %d for account %s at the address, whose budget is %d", unbounded, n, account, limits.AccountAddress.Burst))
							}
						}
						time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
						if rand.IntN(8) == 0 {
							failures.Add(1)
							s(ctx, true)
						} else {
							used.Add(-1)
							if u := usedBy[account]; u != nil {
								u.Add(-1)
							}
							s(ctx, false)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if f := failures.Load(); f != int64(limits.Address.Burst) {
				t.Errorf("%d failures before every attempt was refused; the budget holds %d", f, limits.Address.Burst)
			}
			t.Logf("%d attempts admitted, %d failed, at most %d in flight and failed", admitted.Load(), failures.Load(), worst.Load())
		})
	}
}

// panickingBackend is a memory backend whose Spend panics while panics is set.
type panickingBackend struct {
	*throttle.Memory
	panics atomic.Bool
}

func (p *panickingBackend) Spend(ctx context.Context, key string, l throttle.Limit) (bool, time.Duration, error) {
	if p.panics.Load() {
		panic("spend")
	}
	return p.Memory.Spend(ctx, key, l)
}

// TestAPanicWhileSettlingLetsGoOfTheUnits: settling a failure spends it, then lets go of what
// the attempt held. A backend panicking on the spend must still let go: a unit held for good
// leaves the budget short of room for ever, a lockout nobody can lift.
func TestAPanicWhileSettlingLetsGoOfTheUnits(t *testing.T) {
	limits := throttle.Limits{Address: throttle.Limit{Burst: 2, Every: time.Hour}}
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	backend := &panickingBackend{Memory: throttle.NewMemory(1000, limits.Refill(), c.now)}
	g := throttle.NewGuard(backend, limits, nil, nil)
	client := netip.MustParseAddr("192.0.2.7")

	// One failure, so that the budget is no longer idle and attempts hold units.
	s := admitN(t, g, 1, client, "alice")
	if err := s[0](ctx, true); err != nil {
		t.Fatal(err)
	}
	s = admitN(t, g, 1, client, "alice") // holds the last unit of room
	backend.panics.Store(true)
	func() {
		defer func() { recover() }()
		s[0](ctx, true)
	}()
	backend.panics.Store(false)
	// The unit was let go: the room is there again for one more attempt.
	for _, s := range admitN(t, g, 1, client, "alice") {
		s(ctx, false)
	}
}
