package server

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/throttle"
)

// newGuard builds the failure budgets a configuration asks for: in the store's Redis when it has
// one (shared by the replicas), in the process otherwise. It returns nil when they are off, and
// a function that stops the backend.
func newGuard(cfg AuthFailures, maxInFlight int, store keystore.Store, reg prometheus.Registerer, logger *slog.Logger) (*throttle.Guard, func()) {
	if !cfg.enabled() {
		return nil, func() {}
	}
	limits := throttle.Limits{
		Address:        throttle.Limit{Burst: cfg.Address.Burst, Every: time.Duration(cfg.Address.Every)},
		AccountAddress: throttle.Limit{Burst: cfg.AccountAddress.Burst, Every: time.Duration(cfg.AccountAddress.Every)},
		Account:        throttle.Limit{Burst: cfg.Account.Burst, Every: time.Duration(cfg.Account.Every)},
		IPv6Prefix:     cfg.IPv6Prefix,
	}
	for _, p := range cfg.Exempt {
		limits.Exempt = append(limits.Exempt, netip.MustParsePrefix(p))
	}
	logger = logger.With("component", "throttle")
	// A key is remembered while a budget spent by max_in_flight failures at once refills.
	remember := limits.Remember(maxInFlight)
	var backend throttle.Backend = throttle.NewMemory(cfg.Tracked, remember, nil)
	stop := func() {}
	if rs, ok := store.(*redisstore.Store); ok {
		r := throttle.NewRedis(rs.Client(), throttle.RedisOptions{Prefix: rs.KeyPrefix(), Size: cfg.Tracked, Forget: remember, Logger: logger})
		backend, stop = r, func() { r.Close() }
	}
	return throttle.NewGuard(backend, limits, reg, logger), stop
}
