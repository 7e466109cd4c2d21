// Package throttle limits failed authentication. A Guard keeps a budget of failures for each
// client address, each (account, address) pair and each account; a budget refills at a steady
// rate, and a key whose budget is spent is refused before its credentials are checked. The
// budgets live in process (Memory) or in Redis, shared by every replica (Redis). The package
// knows nothing of HTTP, of keys and accounts beyond their names, or of any store.
//
// Why a legitimate key cannot be locked out from elsewhere: the two budgets checked before the
// credentials are keyed by the client address (all failures from one address, whatever account
// they name) and by (account, address). Failures sent from address A spend only A's budgets, so
// the right key from address B is checked as usual. The per-account budget, which an attacker
// anywhere can spend, is never checked before the credentials: a valid credential passes it,
// and only a failure for an account whose budget is spent is answered "too many requests"
// rather than "unauthorized" — a signal and a slower answer, never a lockout.
//
// Attempts in flight count as spent. Attempts sent at once would otherwise all see the budget
// unspent and all be checked; so Admit holds one unit of each budget it checks while the
// credentials are checked, and the caller settles the attempt: a failure keeps the unit spent, a
// success gives it back. With room for r more failures in a budget, at most r of its attempts
// are checked at once; the next waits, unchecked, for one of them to end, and is refused once
// failures have spent the budget. A valid request is never refused for others in flight, only
// checked after them. The units held are this process's own, kept in memory whichever backend
// keeps the failures: with R replicas sharing Redis, at most R times the room is checked at once,
// and a replica that ends while holding units leaves nothing behind to give back. Every failure
// is counted all the same (beyond the budget too), so over time no client fails more often than
// its budget refills, however many replicas it spreads its attempts over.
package throttle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrThrottled is every refusal of a Guard; the *Throttled error wrapping it says by which
// budget and for how long.
var ErrThrottled = errors.New("too many failed authentication attempts")

// Throttled is a refusal: the budget named By is spent for RetryAfter more.
type Throttled struct {
	By         string
	RetryAfter time.Duration
}

func (e *Throttled) Error() string {
	return fmt.Sprintf("%v from this %s; retry in %ds", ErrThrottled, byText[e.By], e.RetryAfterSeconds())
}

func (e *Throttled) Is(target error) bool { return target == ErrThrottled }

// RetryAfterSeconds is the wait as a Retry-After header wants it: whole seconds, rounded up, at
// least 1. Callers that answer the refusal find it through an interface of their own.
func (e *Throttled) RetryAfterSeconds() int {
	return int(max((e.RetryAfter+time.Second-1)/time.Second, 1))
}

var byText = map[string]string{ByAddress: "address", ByAccountAddress: "address for this account", ByAccount: "account"}

// The budgets, as named in metrics and errors.
const (
	ByAddress        = "address"
	ByAccountAddress = "account_address"
	ByAccount        = "account"
)

// Limit is a budget of failures: Burst at once, then one more every Every. A zero Burst turns
// the budget off.
type Limit struct {
	Burst int
	Every time.Duration
}

// On reports whether the limit limits anything.
func (l Limit) On() bool { return l.Burst > 0 && l.Every > 0 }

// refill is how long an empty budget takes to be full again: after that its key is forgotten.
func (l Limit) refill() time.Duration { return time.Duration(l.Burst) * l.Every }

// Limits configure a Guard.
type Limits struct {
	Address        Limit
	AccountAddress Limit
	Account        Limit
	// Exempt networks have no per-address budget (e.g. a CI farm's NAT that an operator
	// trusts); their per-account budgets still apply.
	Exempt []netip.Prefix
	// IPv6Prefix is how many leading bits of an IPv6 address name its client (default 64: one
	// host commonly holds a whole /64).
	IPv6Prefix int
}

// Backend keeps the budgets.
type Backend interface {
	// Room returns how many more failures fit in key's budget now (at most l.Burst), and, when
	// none does, how long until one does. It spends nothing.
	Room(ctx context.Context, key string, l Limit) (room int, wait time.Duration, err error)
	// Spend records one failure against key. allowed is false when the budget was already
	// spent; wait is how long until the next failure fits.
	Spend(ctx context.Context, key string, l Limit) (allowed bool, wait time.Duration, err error)
}

// idler is a Backend that can tell that every budget is full, so that a check needs no key: the
// common case of a valid request while nobody has failed costs next to nothing.
type idler interface {
	Idle() bool
}

// Guard applies Limits to authentication attempts.
type Guard struct {
	backend Backend
	limits  Limits
	logger  *slog.Logger
	metrics *metrics

	// mu guards held: the attempts Admit let through whose credentials are being checked, by
	// budget. They are this process's: every replica counts its own.
	mu   sync.Mutex
	held map[holdKey]holding
	// landed counts the spends of failures that reached the backend. Admit reads a budget's
	// room outside mu; a failure that lands meanwhile and is then let go from held would be
	// counted in neither, so Admit takes each spend that landed since as one unit less room.
	landed atomic.Uint64
}

// holdKey names a budget in held without building its backend key: client is the address
// naming the client (an IPv6 client's prefix), account the account as the attempt named it.
type holdKey struct {
	by      string
	client  netip.Addr
	account string
}

// holding is a budget's attempts in flight, and the channel that wakes attempts waiting for
// one of them to end (nil while none waits).
type holding struct {
	n    int
	wake chan struct{}
}

// NewGuard returns a Guard keeping its budgets in backend. Its metrics go to reg (when not nil).
func NewGuard(backend Backend, limits Limits, reg prometheus.Registerer, logger *slog.Logger) *Guard {
	if limits.IPv6Prefix <= 0 || limits.IPv6Prefix > 128 {
		limits.IPv6Prefix = 64
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Guard{backend: backend, limits: limits, logger: logger, metrics: newMetrics(reg), held: map[holdKey]holding{}}
}

// addressKey starts the key of every address budget.
const addressKey = "ip:"

type budget struct {
	limit Limit
	hold  holdKey
}

// key is the budget's key in the backend; addr is the client's (clientKey).
func (b budget) key(addr string) string {
	switch b.hold.by {
	case ByAddress:
		return addressKey + addr
	case ByAccountAddress:
		// Account names come from the client: a digest keeps every key short and of one shape.
		return "acip:" + digest(b.hold.account) + ":" + addr
	default:
		return "ac:" + digest(b.hold.account)
	}
}

// budgets are the budgets an attempt from client naming account counts against, the ones checked
// before the credentials first: at most three, kept in an array so that a valid request's check
// allocates nothing.
type budgets struct {
	all [3]budget
	n   int
	// checked is how many of all, from the first, are checked before the credentials.
	checked int
}

func (g *Guard) budgets(client netip.Addr, account string) budgets {
	var out budgets
	named := g.client(client)
	add := func(by string, l Limit, acct string) {
		out.all[out.n] = budget{l, holdKey{by, named, acct}}
		out.n++
	}
	if g.limits.Address.On() && !g.exempt(client) {
		add(ByAddress, g.limits.Address, "")
	}
	if account != "" && g.limits.AccountAddress.On() {
		add(ByAccountAddress, g.limits.AccountAddress, account)
	}
	out.checked = out.n
	if account != "" && g.limits.Account.On() {
		add(ByAccount, g.limits.Account, account)
	}
	return out
}

// client is the address naming a client: an IPv4 address, or an IPv6 address's prefix.
func (g *Guard) client(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(g.limits.IPv6Prefix); err == nil {
			return p.Addr()
		}
	}
	return a
}

func (g *Guard) clientKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, err := a.Prefix(g.limits.IPv6Prefix)
		if err == nil {
			return p.String()
		}
	}
	return a.String()
}

func (g *Guard) exempt(a netip.Addr) bool {
	for _, p := range g.limits.Exempt {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:12])
}

// room reads how many failures fit in each budget checked before the credentials. It refuses
// with a *Throttled error when one of them holds none. A budget that cannot be read counts as
// full: throttling protects authentication, it must not become an outage of its own.
func (g *Guard) room(ctx context.Context, client netip.Addr, bs *budgets) ([3]int, error) {
	var room [3]int
	if i, ok := g.backend.(idler); ok && i.Idle() {
		for j := range bs.checked {
			room[j] = bs.all[j].limit.Burst
		}
		return room, nil
	}
	addr := g.clientKey(client)
	for j := range bs.checked {
		b := bs.all[j]
		r, wait, err := g.backend.Room(ctx, b.key(addr), b.limit)
		if err != nil {
			g.metrics.errors.Inc()
			g.logger.Warn("failed-authentication budget unavailable; allowing the attempt", "budget", b.hold.by, "error", err)
			r, wait = b.limit.Burst, 0
		}
		if wait > 0 || r < 1 {
			g.metrics.throttled.WithLabelValues(b.hold.by).Inc()
			return room, &Throttled{By: b.hold.by, RetryAfter: wait}
		}
		room[j] = min(r, b.limit.Burst)
	}
	return room, nil
}

// Allow reports, without holding anything, whether an attempt from client naming account would
// be let through now: it refuses with a *Throttled error when the client's address, or the
// account it names at that address, has spent its budget. Callers that check credentials use
// Admit, which also counts the attempts in flight.
func (g *Guard) Allow(ctx context.Context, client netip.Addr, account string) error {
	if i, ok := g.backend.(idler); ok && i.Idle() {
		return nil
	}
	bs := g.budgets(client, account)
	_, err := g.room(ctx, client, &bs)
	return err
}

// Admit is asked before credentials are checked. It refuses with a *Throttled error when the
// client's address, or the account it names at that address, has spent its budget; the
// per-account budget is not consulted here (see the package documentation). Otherwise it holds
// one unit of each of those budgets while the credentials are checked, and returns settle, which
// the caller calls once they were: with failed true when they were refused, and then the held
// units become the failure, spent as Failed spends it (settle returns Failed's error), or with
// failed false, and then they are given back. A success spends nothing.
//
// A held unit counts as spent: with a budget that has room for r more failures, at most r
// attempts of it are checked at once in this process. One more waits, without being checked,
// until an attempt in flight ends; then it is let through if the budget still has room, and
// refused with the budget's Retry-After if the failures spent it. Valid requests sent at once are
// thus never refused by each other, only checked r at a time. A wait that ctx ends is refused
// with a Retry-After of a second.
//
// settle must be called exactly once; calling it again does nothing, so a deferred call after an
// explicit one is harmless. A failure is spent even when ctx was cancelled, so that a client
// cannot hang up to have its failure forgotten.
func (g *Guard) Admit(ctx context.Context, client netip.Addr, account string) (settle func(ctx context.Context, failed bool) error, err error) {
	bs := g.budgets(client, account)
	for waited := false; ; {
		seen := g.landed.Load()
		room, err := g.room(ctx, client, &bs)
		if err != nil {
			return nil, err
		}
		g.mu.Lock()
		// Failures that landed since the room was read may have taken one unit each of it.
		landed := int(g.landed.Load() - seen)
		full := -1
		for j := range bs.checked {
			if g.held[bs.all[j].hold].n >= room[j]-landed {
				full = j
				break
			}
		}
		if full < 0 {
			for j := range bs.checked {
				k := bs.all[j].hold
				h := g.held[k]
				h.n++
				g.held[k] = h
			}
			g.mu.Unlock()
			return g.settler(client, account, bs), nil
		}
		if landed > 0 {
			// Perhaps none of them was this attempt's: read the room again rather than wait
			// for a release that may never come.
			g.mu.Unlock()
			continue
		}
		k := bs.all[full].hold
		h := g.held[k]
		if h.wake == nil {
			h.wake = make(chan struct{})
			g.held[k] = h
		}
		wake := h.wake
		g.mu.Unlock()
		if !waited {
			waited = true
			g.metrics.waited.WithLabelValues(k.by).Inc()
		}
		select {
		case <-wake:
		case <-ctx.Done():
			g.metrics.throttled.WithLabelValues(k.by).Inc()
			return nil, &Throttled{By: k.by, RetryAfter: time.Second}
		}
	}
}

// settler returns the settle function of an attempt Admit let through.
func (g *Guard) settler(client netip.Addr, account string, bs budgets) func(context.Context, bool) error {
	var done atomic.Bool
	return func(ctx context.Context, failed bool) error {
		if !done.CompareAndSwap(false, true) {
			return nil
		}
		// Let go of the held units however this ends, a panicking backend included: a unit held
		// for good would leave the budget short of room for ever.
		defer g.release(&bs)
		if failed {
			// The failure is spent before the held units are let go: in between it counts twice,
			// never not at all.
			return g.Failed(context.WithoutCancel(ctx), client, account)
		}
		return nil
	}
}

// release lets go of the units an attempt held and wakes the attempts waiting for them.
func (g *Guard) release(bs *budgets) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for j := range bs.checked {
		k := bs.all[j].hold
		h := g.held[k]
		h.n--
		if h.wake != nil {
			close(h.wake)
			h.wake = nil
		}
		if h.n <= 0 {
			delete(g.held, k)
		} else {
			g.held[k] = h
		}
	}
}

// Failed records a failed authentication from client naming account (empty when the attempt
// named none). It returns a *Throttled error when the account's own budget was already spent:
// the caller answers that instead of "unauthorized". Callers that got a settle function from
// Admit call that instead.
func (g *Guard) Failed(ctx context.Context, client netip.Addr, account string) error {
	var refusal error
	bs := g.budgets(client, account)
	addr := g.clientKey(client)
	for _, b := range bs.all[:bs.n] {
		allowed, wait, err := g.backend.Spend(ctx, b.key(addr), b.limit)
		if err != nil {
			g.metrics.errors.Inc()
			g.logger.Warn("failed-authentication budget unavailable; the failure is not counted", "budget", b.hold.by, "error", err)
			continue
		}
		g.landed.Add(1)
		if wait > 0 && allowed {
			g.metrics.spent.WithLabelValues(b.hold.by).Inc()
		}
		if b.hold.by == ByAccount && !allowed {
			g.metrics.throttled.WithLabelValues(b.hold.by).Inc()
			refusal = &Throttled{By: b.hold.by, RetryAfter: wait}
		}
	}
	return refusal
}

type metrics struct {
	throttled *prometheus.CounterVec
	spent     *prometheus.CounterVec
	waited    *prometheus.CounterVec
	errors    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "auth", Name: "throttled_total",
			Help: "Authentication attempts answered 429 because a failure budget was spent, by budget (address, account_address, account).",
		}, []string{"by"}),
		spent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "auth", Name: "budgets_spent_total",
			Help: "Failed authentications that spent the last of a failure budget, by budget (address, account_address, account).",
		}, []string{"by"}),
		waited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "auth", Name: "attempts_waited_total",
			Help: "Authentication attempts that waited, before their credentials were checked, for attempts in flight to end, by the budget they held in full (address, account_address).",
		}, []string{"by"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "auth", Name: "throttle_errors_total",
			Help: "Failure budgets that could not be read or spent (the attempt was allowed, the failure not counted).",
		}),
	}
	for _, by := range []string{ByAddress, ByAccountAddress, ByAccount} {
		m.throttled.WithLabelValues(by)
		m.spent.WithLabelValues(by)
	}
	for _, by := range []string{ByAddress, ByAccountAddress} {
		m.waited.WithLabelValues(by)
	}
	if reg != nil {
		reg.MustRegister(m.throttled, m.spent, m.waited, m.errors)
	}
	return m
}
