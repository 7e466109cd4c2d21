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
package throttle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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
	// Wait returns how long key must wait before a failure fits in its budget; 0 when it fits
	// now. It spends nothing.
	Wait(ctx context.Context, key string, l Limit) (time.Duration, error)
	// Spend records one failure against key. allowed is false when the budget was already
	// spent; wait is how long until the next failure fits.
	Spend(ctx context.Context, key string, l Limit) (allowed bool, wait time.Duration, err error)
}

// idler is a Backend that can tell that no key is blocked at all, so that a check needs no key:
// the common case of a valid request while nobody is being refused costs next to nothing.
type idler interface {
	Idle() bool
}

// Guard applies Limits to authentication attempts.
type Guard struct {
	backend Backend
	limits  Limits
	logger  *slog.Logger
	metrics *metrics
}

// NewGuard returns a Guard keeping its budgets in backend. Its metrics go to reg (when not nil).
func NewGuard(backend Backend, limits Limits, reg prometheus.Registerer, logger *slog.Logger) *Guard {
	if limits.IPv6Prefix <= 0 || limits.IPv6Prefix > 128 {
		limits.IPv6Prefix = 64
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Guard{backend: backend, limits: limits, logger: logger, metrics: newMetrics(reg)}
}

// addressKey starts the key of every address budget.
const addressKey = "ip:"

type budget struct {
	by    string
	key   string
	limit Limit
}

// budgets are the keys an attempt from client naming account counts against, the ones checked
// before the credentials first.
func (g *Guard) budgets(client netip.Addr, account string) []budget {
	addr := g.clientKey(client)
	var out []budget
	if g.limits.Address.On() && !g.exempt(client) {
		out = append(out, budget{ByAddress, addressKey + addr, g.limits.Address})
	}
	if account == "" {
		return out
	}
	// Account names come from the client: a digest keeps every key short and of one shape.
	acct := digest(account)
	if g.limits.AccountAddress.On() {
		out = append(out, budget{ByAccountAddress, "acip:" + acct + ":" + addr, g.limits.AccountAddress})
	}
	if g.limits.Account.On() {
		out = append(out, budget{ByAccount, "ac:" + acct, g.limits.Account})
	}
	return out
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

// Allow is asked before credentials are checked: it refuses with a *Throttled error when the
// client's address, or the account it names at that address, has spent its budget. The
// per-account budget is not consulted here (see the package documentation). A backend that
// cannot answer allows the attempt: throttling protects authentication, it must not become an
// outage of its own.
func (g *Guard) Allow(ctx context.Context, client netip.Addr, account string) error {
	if i, ok := g.backend.(idler); ok && i.Idle() {
		return nil
	}
	for _, b := range g.budgets(client, account) {
		if b.by == ByAccount {
			continue
		}
		wait, err := g.backend.Wait(ctx, b.key, b.limit)
		if err != nil {
			g.metrics.errors.Inc()
			g.logger.Warn("failed-authentication budget unavailable; allowing the attempt", "budget", b.by, "error", err)
			continue
		}
		if wait > 0 {
			g.metrics.throttled.WithLabelValues(b.by).Inc()
			return &Throttled{By: b.by, RetryAfter: wait}
		}
	}
	return nil
}

// Failed records a failed authentication from client naming account (empty when the attempt
// named none). It returns a *Throttled error when the account's own budget was already spent:
// the caller answers that instead of "unauthorized".
func (g *Guard) Failed(ctx context.Context, client netip.Addr, account string) error {
	var refusal error
	for _, b := range g.budgets(client, account) {
		allowed, wait, err := g.backend.Spend(ctx, b.key, b.limit)
		if err != nil {
			g.metrics.errors.Inc()
			g.logger.Warn("failed-authentication budget unavailable; the failure is not counted", "budget", b.by, "error", err)
			continue
		}
		if wait > 0 && allowed {
			g.metrics.spent.WithLabelValues(b.by).Inc()
		}
		if b.by == ByAccount && !allowed {
			g.metrics.throttled.WithLabelValues(b.by).Inc()
			refusal = &Throttled{By: b.by, RetryAfter: wait}
		}
	}
	return refusal
}

type metrics struct {
	throttled *prometheus.CounterVec
	spent     *prometheus.CounterVec
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
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "auth", Name: "throttle_errors_total",
			Help: "Failure budgets that could not be read or spent (the attempt was allowed, the failure not counted).",
		}),
	}
	for _, by := range []string{ByAddress, ByAccountAddress, ByAccount} {
		m.throttled.WithLabelValues(by)
		m.spent.WithLabelValues(by)
	}
	if reg != nil {
		reg.MustRegister(m.throttled, m.spent, m.errors)
	}
	return m
}
