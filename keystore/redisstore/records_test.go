package redisstore

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/keystore/storetest"

	"github.com/regoauth/regoauth/internal/testenv/logbuf"
)

// TestLostRecordsAreNoticed: Redis loses every record without an error when someone runs
// FLUSHALL, or when a primary without persistence restarts. A store caching for a minute (its
// invalidation channel alive, so the cache really serves) is shown to serve the key from memory;
// after FLUSHALL it refuses the key within a couple of seconds instead of serving it for the
// rest of the minute, logs the loss once, and counts it; after a restart of a redis-server
// without an append-only file it says so again.
func TestLostRecordsAreNoticed(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	srv := redistest.Start(t, "--appendonly", "no")
	var logs logbuf.Buffer
	s, reg := openStore(t, srv.URL()+"?prefix=lost", Options{
		CacheTTL: time.Minute, RecordsCheck: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	seed := func() string {
		must(t, s.CreateAccount(ctx, keystore.Account{Name: "alice"}))
		k, _ := storetest.NewKey(t, "alice")
		must(t, s.CreateKey(ctx, k))
		return k.ID
	}
	// servedFromCache waits until a lookup of id is a cache hit.
	servedFromCache := func(id string) {
		t.Helper()
		waitLive(t, s)
		deadline := time.Now().Add(10 * time.Second)
		for {
			before := cacheLookups(t, reg, "hit")
			if _, err := s.LoadPrincipal(ctx, id); err != nil {
				t.Fatal(err)
			}
			if cacheLookups(t, reg, "hit") > before {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the key is never served from the cache")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// refusedWithin waits until a lookup of id says the key does not exist.
	refusedWithin := func(id string, limit time.Duration, lost float64) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			_, err := s.LoadPrincipal(ctx, id)
			if errors.Is(err, keystore.ErrNotFound) && testutil.ToFloat64(s.metrics.recordsLost) == lost {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after the records were lost: lookup %v, records_lost_total %v (want %v)",
					limit, err, testutil.ToFloat64(s.metrics.recordsLost), lost)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	id := seed()
	servedFromCache(id)
	time.Sleep(200 * time.Millisecond) // a few checks: the marker is in place
	if err := srv.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	refusedWithin(id, 2*time.Second, 1)
	if n := strings.Count(logs.String(), "records are gone"); n != 1 {
		t.Fatalf("the loss was logged %d times, want once:\n%s", n, logs.String())
	}

	id = seed()
	servedFromCache(id)
	time.Sleep(200 * time.Millisecond)
	srv.Kill()
	srv.Restart()
	refusedWithin(id, 20*time.Second, 2)
	if n := strings.Count(logs.String(), "records are gone"); n != 2 {
		t.Fatalf("the losses were logged %d times, want twice:\n%s", n, logs.String())
	}
}

// TestEvictionPolicy reads the policy of real redis-servers: noeviction is safe, every other
// policy is ErrEvicts naming it, and a running store notices a policy changed under it
// (regoauth_store_evicting).
func TestEvictionPolicy(t *testing.T) {
	for _, policy := range []string{"noeviction", "allkeys-lru", "volatile-ttl"} {
		t.Run(policy, func(t *testing.T) {
			srv := redistest.Start(t, "--maxmemory-policy", policy)
			s, _ := openStore(t, srv.URL(), Options{})
			err := s.CheckEviction(ctx)
			if policy == "noeviction" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrEvicts) || !strings.Contains(err.Error(), policy) {
				t.Fatalf("CheckEviction = %v, want ErrEvicts naming %s", err, policy)
			}
		})
	}
	// The policy is read where the store's records are: Sentinel's primary, the Cluster node
	// that owns their slot.
	t.Run("sentinel", func(t *testing.T) {
		rs := redistest.StartSentinel(t)
		s, _ := openStore(t, rs.URL(), Options{})
		must(t, s.CheckEviction(ctx))
		must(t, rs.Primary().Client().ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err())
		if err := s.CheckEviction(ctx); !errors.Is(err, ErrEvicts) {
			t.Fatalf("CheckEviction with the primary on allkeys-lru = %v, want ErrEvicts", err)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		rc := redistest.StartCluster(t)
		s, _ := openStore(t, rc.URL(), Options{})
		must(t, s.CheckEviction(ctx))
		cc := s.client.(*redis.ClusterClient)
		must(t, cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.ConfigSet(ctx, "maxmemory-policy", "volatile-lfu").Err()
		}))
		if err := s.CheckEviction(ctx); !errors.Is(err, ErrEvicts) {
			t.Fatalf("CheckEviction with the primaries on volatile-lfu = %v, want ErrEvicts", err)
		}
	})
	t.Run("changed while running", func(t *testing.T) {
		srv := redistest.Start(t)
		var logs logbuf.Buffer
		s, _ := openStore(t, srv.URL(), Options{RecordsCheck: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		time.Sleep(100 * time.Millisecond)
		if testutil.ToFloat64(s.metrics.evicting) != 0 {
			t.Fatal("regoauth_store_evicting is 1 under noeviction")
		}
		must(t, srv.Client().ConfigSet(ctx, "maxmemory-policy", "allkeys-lfu").Err())
		deadline := time.Now().Add(5 * time.Second)
		for testutil.ToFloat64(s.metrics.evicting) != 1 {
			if time.Now().After(deadline) {
				t.Fatal("regoauth_store_evicting stayed 0 after the policy became allkeys-lfu")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), "maxmemory-policy is allkeys-lfu") {
			t.Fatalf("log = %s", logs.String())
		}
	})
}
