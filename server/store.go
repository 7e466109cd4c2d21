package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/keystore/redisstore"
)

// The kinds of store a URL can name.
const (
	storeBolt  = "bolt"
	storeRedis = "redis"
)

// ParseStoreURL splits a store URL into its kind ("bolt" or "redis") and location. Its errors
// never contain a password.
func ParseStoreURL(u string) (kind, location string, err error) {
	switch {
	case strings.HasPrefix(u, "bolt://"):
		path := strings.TrimPrefix(u, "bolt://")
		if path == "" {
			return "", "", errors.New("bolt:// needs a file path, e.g. bolt:///var/lib/regoauth/store.db")
		}
		// bolt:// takes no options: store.db?timeout=1s would open (or create, empty) another
		// file than store.db, every account seemingly gone.
		if strings.ContainsAny(path, "?#") {
			return "", "", fmt.Errorf("bolt:// takes a file path and no options: %q holds a '?' or '#'", path)
		}
		return storeBolt, path, nil
	case redisstore.IsURL(u):
		if _, err := redisstore.ParseURL(u); err != nil {
			return "", "", err
		}
		return storeRedis, u, nil
	}
	return "", "", fmt.Errorf("unsupported store URL %q: use bolt://, redis://, rediss://, redis+sentinel:// or redis+cluster://", Redact(u))
}

// Redact hides passwords in a URL (user info and options) for logs and error messages.
func Redact(u string) string { return redisstore.Redact(u) }

// OpenStore opens the store a configuration names: the one place that knows the backends. A
// Redis store opens even while Redis is unreachable: a server then starts not ready, refuses
// tokens with 503, and recovers by itself when Redis answers. Store metrics go to reg.
func OpenStore(ctx context.Context, cfg StoreConfig, logger *slog.Logger, reg prometheus.Registerer) (keystore.Store, error) {
	return openStore(ctx, cfg, logger, reg, nil)
}

// openStore is OpenStore with the clock grant ends are judged by (time.Now when nil).
func openStore(ctx context.Context, cfg StoreConfig, logger *slog.Logger, reg prometheus.Registerer, now func() time.Time) (keystore.Store, error) {
	u, err := cfg.URL.Resolve()
	if err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	kind, location, err := ParseStoreURL(u)
	if err != nil {
		return nil, err
	}
	ttl := time.Duration(cfg.Cache.TTL)
	if kind == storeBolt {
		return boltstore.OpenWith(location, boltstore.Options{CacheTTL: ttl, CacheSize: cfg.Cache.Size, NegativeTTL: time.Duration(cfg.Cache.NegativeTTL), Now: now})
	}
	logger = logger.With("component", "store")
	redisstore.RouteClientLogs(logger)
	s, err := redisstore.Open(location, redisstore.Options{
		CacheTTL: ttl, CacheSize: cfg.Cache.Size, NegativeTTL: time.Duration(cfg.Cache.NegativeTTL), Logger: logger, Registerer: reg, Now: now,
		RecordsCheck: redisstore.DefaultRecordsCheck,
	})
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.Ping(pingCtx); err != nil {
		logger.Warn("redis store not reachable yet; not ready until it is", "url", Redact(u), "error", err)
		return s, nil
	}
	logger.Info("redis store connected", "url", Redact(u), "cache_ttl", ttl.String())
	// A Redis that may evict records would lose keys, grants and reservations without a word:
	// refused while it can be told; a policy that turns unsafe later is logged and
	// regoauth_store_evicting says so.
	switch err := s.CheckEviction(pingCtx); {
	case errors.Is(err, redisstore.ErrEvicts):
		s.Close()
		return nil, fmt.Errorf("store: %w", err)
	case err != nil:
		logger.Warn("could not check that redis never evicts the store's records; make sure its maxmemory-policy is noeviction, or allow the Redis user INFO", "error", err)
	}
	return s, nil
}
