package throttle

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/time/rate"
)

// Memory keeps budgets in this process, for a single replica (the bolt store). It holds at most
// size keys; a key is forgotten when its budget would be full again (after forget), or when more
// recently failing keys push it out. A forgotten key starts over with a full budget. Address
// budgets and the others are kept apart, half of size each: a client naming ever new accounts
// adds budgets at will, and they must not push out the address budgets, which only as many
// addresses as a client holds can.
type Memory struct {
	mu sync.Mutex
	// keys are the address budgets ([0]) and the others ([1]).
	keys [2]*expirable.LRU[string, *rate.Limiter]
	now  func() time.Time
	// spentUntil is when the last budget a failure spent any of is full again (Unix ns): before
	// then a check looks its keys up, after it none needs to (Idle).
	spentUntil atomic.Int64
}

var _ Backend = (*Memory)(nil)

// NewMemory returns an in-process backend of at most size keys. forget should be at least the
// longest refill time of the limits used with it (Limits.Refill).
func NewMemory(size int, forget time.Duration, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	m := &Memory{now: now}
	for i := range m.keys {
		m.keys[i] = expirable.NewLRU[string, *rate.Limiter](max(size/2, 1), nil, forget)
	}
	return m
}

// table is where key's budget is kept.
func (m *Memory) table(key string) *expirable.LRU[string, *rate.Limiter] {
	if strings.HasPrefix(key, addressKey) {
		return m.keys[0]
	}
	return m.keys[1]
}

// Refill is the longest time any of the limits takes to refill from empty.
func (l Limits) Refill() time.Duration {
	return max(l.Address.refill(), l.AccountAddress.refill(), l.Account.refill(), time.Second)
}

// Remember is how long a backend must remember a key when at most inFlight attempts are checked
// at once: every failure is counted, beyond the budget too, so a budget spent by inFlight
// failures at once refills from that far below empty.
func (l Limits) Remember(inFlight int) time.Duration {
	debt := func(b Limit) time.Duration {
		if !b.On() {
			return 0
		}
		return time.Duration(b.Burst+max(inFlight, 0)) * b.Every
	}
	return max(debt(l.Address), debt(l.AccountAddress), debt(l.Account), l.Refill())
}

func (m *Memory) Room(_ context.Context, key string, l Limit) (int, time.Duration, error) {
	lim, ok := m.table(key).Get(key)
	if !ok {
		return l.Burst, 0, nil
	}
	now := m.now()
	if wait := waitFor(lim, l, now); wait > 0 {
		return 0, wait, nil
	}
	return min(int(lim.TokensAt(now)), l.Burst), 0, nil
}

func (m *Memory) Spend(_ context.Context, key string, l Limit) (bool, time.Duration, error) {
	now := m.now()
	keys := m.table(key)
	m.mu.Lock()
	lim, ok := keys.Get(key)
	if !ok {
		lim = rate.NewLimiter(rate.Every(l.Every), l.Burst)
	}
	// Adding again restarts the key's time to live: a key that keeps failing is never
	// forgotten with an empty budget.
	keys.Add(key, lim)
	m.mu.Unlock()
	// Every failure is counted, beyond the budget too (the limiter goes into debt): failures
	// checked at once all saw the budget unspent, and the address waits for each of them.
	allowed := lim.TokensAt(now) >= 1
	lim.ReserveN(now, 1)
	wait := waitFor(lim, l, now)
	// The budget is full again once it has refilled what it is short of its burst.
	raiseTo(&m.spentUntil, now.Add(time.Duration((float64(l.Burst)-lim.TokensAt(now))*float64(l.Every))))
	return allowed, wait, nil
}

// Idle reports that every budget a failure spent of is full again: Room would answer the burst
// for every key.
func (m *Memory) Idle() bool { return m.now().UnixNano() >= m.spentUntil.Load() }

// raiseTo moves v to t unless it is already later.
func raiseTo(v *atomic.Int64, t time.Time) {
	n := t.UnixNano()
	for old := v.Load(); old < n && !v.CompareAndSwap(old, n); old = v.Load() {
	}
}

// waitFor is how long until lim holds one whole failure again.
func waitFor(lim *rate.Limiter, l Limit, now time.Time) time.Duration {
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) * float64(l.Every))
}
