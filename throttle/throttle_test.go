package throttle_test

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/throttle"
)

var ctx = context.Background()

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

var (
	attacker  = netip.MustParseAddr("203.0.113.7")
	elsewhere = netip.MustParseAddr("198.51.100.9")
)

func newGuard(t *testing.T, limits throttle.Limits) (*throttle.Guard, *clock, *prometheus.Registry) {
	t.Helper()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	reg := prometheus.NewRegistry()
	return throttle.NewGuard(throttle.NewMemory(1000, limits.Refill(), c.now), limits, reg, nil), c, reg
}

func wantThrottled(t *testing.T, err error, by string) *throttle.Throttled {
	t.Helper()
	var th *throttle.Throttled
	if !errors.As(err, &th) || !errors.Is(err, throttle.ErrThrottled) || th.By != by || th.RetryAfter <= 0 {
		t.Fatalf("err = %v, want throttled by %s", err, by)
	}
	return th
}

// fail is one failed attempt: checked first, then counted, as the token endpoint does.
func fail(t *testing.T, g *throttle.Guard, client netip.Addr, account string) error {
	t.Helper()
	if err := g.Allow(ctx, client, account); err != nil {
		return err
	}
	return g.Failed(ctx, client, account)
}

func TestAddressBudget(t *testing.T) {
	g, c, reg := newGuard(t, throttle.Limits{Address: throttle.Limit{Burst: 5, Every: 2 * time.Second}})
	for i := range 5 {
		if err := fail(t, g, attacker, "user"+string(rune('a'+i))); err != nil {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	th := wantThrottled(t, g.Allow(ctx, attacker, "anyone"), throttle.ByAddress)
	if th.RetryAfter != 2*time.Second {
		t.Fatalf("retry after %s, want 2s", th.RetryAfter)
	}
	if err := g.Allow(ctx, elsewhere, "anyone"); err != nil {
		t.Fatalf("another address is throttled: %v", err)
	}
	// One failure is forgiven per interval, not more.
	c.advance(2 * time.Second)
	if err := fail(t, g, attacker, "x"); err != nil {
		t.Fatalf("after the refill: %v", err)
	}
	wantThrottled(t, g.Allow(ctx, attacker, "x"), throttle.ByAddress)
	if n := counted(t, reg, "regoauth_auth_throttled_total", "address"); n != 2 {
		t.Fatalf("regoauth_auth_throttled_total{by=address} = %v", n)
	}
}

func TestAccountAtAddressBudget(t *testing.T) {
	g, _, _ := newGuard(t, throttle.Limits{
		Address:        throttle.Limit{Burst: 100, Every: time.Second},
		AccountAddress: throttle.Limit{Burst: 3, Every: 10 * time.Second},
	})
	for range 3 {
		if err := fail(t, g, attacker, "victim"); err != nil {
			t.Fatal(err)
		}
	}
	wantThrottled(t, g.Allow(ctx, attacker, "victim"), throttle.ByAccountAddress)
	// The victim, from its own address, is not touched; other accounts at the attacker's
	// address neither.
	if err := g.Allow(ctx, elsewhere, "victim"); err != nil {
		t.Fatalf("the account is locked out from another address: %v", err)
	}
	if err := g.Allow(ctx, attacker, "someone-else"); err != nil {
		t.Fatalf("another account at the address: %v", err)
	}
}

// TestAccountBudgetNeverLocksOut: failures from many addresses spend an account's own budget;
// after that its failures are answered as throttled, but Allow, asked before the credentials
// are checked, never refuses on the account's budget, so a valid key from anywhere still works.
func TestAccountBudgetNeverLocksOut(t *testing.T) {
	g, _, reg := newGuard(t, throttle.Limits{
		Address:        throttle.Limit{Burst: 2, Every: time.Minute},
		AccountAddress: throttle.Limit{Burst: 2, Every: time.Minute},
		Account:        throttle.Limit{Burst: 10, Every: time.Minute},
	})
	var last error
	for i := range 10 {
		addr := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		if err := g.Allow(ctx, addr, "victim"); err != nil {
			t.Fatal(err)
		}
		last = g.Failed(ctx, addr, "victim")
	}
	if last != nil {
		t.Fatalf("the 10th failure, within the budget: %v", last)
	}
	wantThrottled(t, g.Failed(ctx, netip.MustParseAddr("10.0.1.1"), "victim"), throttle.ByAccount)
	if err := g.Allow(ctx, elsewhere, "victim"); err != nil {
		t.Fatalf("the account's spent budget refuses before the credentials are checked: %v", err)
	}
	if n := counted(t, reg, "regoauth_auth_throttled_total", "account"); n != 1 {
		t.Fatalf("throttled{by=account} = %v", n)
	}
}

func TestIPv6ClientsByPrefix(t *testing.T) {
	g, _, _ := newGuard(t, throttle.Limits{Address: throttle.Limit{Burst: 2, Every: time.Minute}})
	fail(t, g, netip.MustParseAddr("2001:db8:1:2::1"), "")
	fail(t, g, netip.MustParseAddr("2001:db8:1:2:ffff::9"), "")
	wantThrottled(t, g.Allow(ctx, netip.MustParseAddr("2001:db8:1:2:abcd::1"), ""), throttle.ByAddress)
	if err := g.Allow(ctx, netip.MustParseAddr("2001:db8:1:3::1"), ""); err != nil {
		t.Fatalf("the next /64: %v", err)
	}
	// An IPv4 client seen through an IPv6 socket is the same client.
	fail(t, g, netip.MustParseAddr("192.0.2.1"), "")
	fail(t, g, netip.MustParseAddr("::ffff:192.0.2.1"), "")
	wantThrottled(t, g.Allow(ctx, netip.MustParseAddr("192.0.2.1"), ""), throttle.ByAddress)
}

func TestExemptNetworks(t *testing.T) {
	g, _, _ := newGuard(t, throttle.Limits{
		Address:        throttle.Limit{Burst: 1, Every: time.Minute},
		AccountAddress: throttle.Limit{Burst: 2, Every: time.Minute},
		Exempt:         []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	nat := netip.MustParseAddr("10.1.2.3")
	for i := range 5 {
		if err := fail(t, g, nat, "user"+string(rune('a'+i))); err != nil {
			t.Fatalf("an exempt address is limited per address: %v", err)
		}
	}
	fail(t, g, nat, "ci")
	fail(t, g, nat, "ci")
	wantThrottled(t, g.Allow(ctx, nat, "ci"), throttle.ByAccountAddress)
}

func TestOffLimitsAndLongNames(t *testing.T) {
	g, _, _ := newGuard(t, throttle.Limits{})
	for range 100 {
		if err := fail(t, g, attacker, strings.Repeat("x", 1<<16)); err != nil {
			t.Fatalf("limits off: %v", err)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, time.Minute: 60} {
		if got := (&throttle.Throttled{RetryAfter: d}).RetryAfterSeconds(); got != want {
			t.Errorf("RetryAfterSeconds(%s) = %d, want %d", d, got, want)
		}
	}
}

// counted is the value of a counter of the Guard's metrics with label by.
func counted(t *testing.T, reg *prometheus.Registry, name, by string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if f.GetName() == name && l.GetName() == "by" && l.GetValue() == by {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{by=%q}", name, by)
	return 0
}

// TestSpentBudgetsAreNotForgottenUnderPressure: a client that has spent its address's budget
// stays refused until the budget refills, however many other budgets fail meanwhile. Here 200
// addresses take turns, each failing under new account names until refused: every failure adds
// (account, address) and account budgets, more than the 1000 a Memory tracks, and none may
// push out a spent address budget — the clock stands still, so no budget refills and the
// addresses together may fail 200 × 5 times in all, however many turns they take.
func TestSpentBudgetsAreNotForgottenUnderPressure(t *testing.T) {
	limits := throttle.Limits{
		Address:        throttle.Limit{Burst: 5, Every: time.Minute},
		AccountAddress: throttle.Limit{Burst: 3, Every: time.Minute},
		Account:        throttle.Limit{Burst: 8, Every: time.Minute},
	}
	g, _, _ := newGuard(t, limits)
	const addresses, turns = 200, 3
	failures, account := 0, 0
	for turn := range turns {
		for i := range addresses {
			client := netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(i%250 + 1)})
			for {
				account++
				name := "guess" + strconv.Itoa(account)
				if err := g.Allow(ctx, client, name); err != nil {
					break
				}
				g.Failed(ctx, client, name)
				failures++
				if failures > addresses*limits.Address.Burst*turns {
					t.Fatalf("turn %d: more than %d failures, refused none", turn+1, failures)
				}
			}
		}
	}
	if max := addresses * limits.Address.Burst; failures > max {
		t.Fatalf("%d addresses failed %d times in %d turns without a budget refilling; their budgets allow %d", addresses, failures, turns, max)
	}
}
