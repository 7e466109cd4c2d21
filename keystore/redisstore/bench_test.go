package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// BenchmarkLoadPrincipal is the data stage of a token request on a real redis-server (started
// on a loopback port; skipped without one): the key, its account and the account's grants in
// one pipelined round trip and decoded ("store", the cache off), or served by the principal
// cache once its invalidation channel is proven alive ("cache").
func BenchmarkLoadPrincipal(b *testing.B) {
	ctx := context.Background()
	srv := redistest.Start(b)
	for _, grants := range []int{10, 100} {
		for _, mode := range []struct {
			name string
			ttl  time.Duration
		}{{"store", 0}, {"cache", time.Minute}} {
			b.Run(fmt.Sprintf("grants=%d/%s", grants, mode.name), func(b *testing.B) {
				reg := prometheus.NewRegistry()
				s, err := redisstore.Open(fmt.Sprintf("%s?prefix=b%d", srv.URL(), namespaces.Add(1)),
					redisstore.Options{CacheTTL: mode.ttl, CacheSize: 100, Registerer: reg})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				keyID := storetest.BenchPrincipal(b, s, "user1", grants)
				if mode.ttl > 0 {
					waitForCacheHit(b, s, keyID, reg)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					p, err := s.LoadPrincipal(ctx, keyID)
					if err != nil || len(p.Grants) != grants {
						b.Fatal(len(p.Grants), err)
					}
				}
			})
		}
	}
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
