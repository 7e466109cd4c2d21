package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// BenchmarkLoadPrincipal is the data stage of a token request on a real redis-server (started
// on a loopback port; skipped without one): the key, its account and the account's grants in
// one pipelined round trip and decoded ("store", the cache off), or served by the principal
// cache once its invalidation channel is proven alive ("cache").
func BenchmarkLoadPrincipal(b *testing.B) {
	srv := redistest.Start(b)
	storetest.BenchLoadPrincipal(b, []time.Duration{0, time.Minute}, func(b *testing.B, ttl time.Duration) (keystore.Store, func(string)) {
		reg := prometheus.NewRegistry()
		s, err := redisstore.Open(fmt.Sprintf("%s?prefix=b%d", srv.URL(), namespaces.Add(1)),
			redisstore.Options{CacheTTL: ttl, CacheSize: 100, Registerer: reg})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		if ttl == 0 {
			return s, nil
		}
		return s, func(keyID string) { waitForCacheHit(b, s, keyID, reg) }
	})
}

// waitForCacheHit loads the principal until the cache answers: it serves only once its
// invalidation channel has answered a ping.
func waitForCacheHit(b *testing.B, s *redisstore.Store, keyID string, reg *prometheus.Registry) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.LoadPrincipal(context.Background(), keyID); err != nil {
			b.Fatal(err)
		}
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "regoauth_store_cache_lookups_total" {
				continue
			}
			for _, m := range mf.Metric {
				for _, l := range m.Label {
					if l.GetName() == "result" && l.GetValue() == "hit" && m.Counter.GetValue() > 0 {
						return
					}
				}
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("the principal cache never answered within 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
