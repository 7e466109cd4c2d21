package redisstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/keystore/storetest"
)

var namespaces atomic.Int64

// opener returns a newStore for the suite: every store gets its own key namespace on the same
// Redis, so each test starts empty.
func opener(url string, opts redisstore.Options) storetest.NewStore {
	return func(t *testing.T, now func() time.Time) keystore.Store {
		opts.Now = now
		sep := "?"
		s, err := redisstore.Open(fmt.Sprintf("%s%sprefix=t%d", url, sep, namespaces.Add(1)), opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestConformanceStandalone(t *testing.T) {
	srv := redistest.Start(t)
	for _, tt := range []struct {
		name string
		opts redisstore.Options
	}{
		{"uncached", redisstore.Options{}},
		{"cached", redisstore.Options{CacheTTL: time.Minute, CacheSize: 100}},
	} {
		t.Run(tt.name, func(t *testing.T) { storetest.Run(t, opener(srv.URL(), tt.opts)) })
	}
}

// TestConformanceSentinel runs the suite against a primary, a replica and three sentinels, and
// kills the primary in the middle of it: the records written before survive, the store
// recovers by itself, and the rest of the suite runs against the promoted replica.
func TestConformanceSentinel(t *testing.T) {
	setup := redistest.StartSentinel(t)
	storetest.RunWith(t, opener(setup.URL(), redisstore.Options{CacheTTL: time.Minute}), storetest.Options{
		Disrupt: func(t *testing.T) { setup.Failover() },
	})
}

// TestConformanceCluster runs the suite against three primaries with one replica each, and
// kills, in the middle of it, the primary that holds the store under test: the records written
// before survive, the store recovers by itself, and the rest of the suite runs on the cluster
// with the promoted replica.
func TestConformanceCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	storetest.RunWith(t, opener(cluster.URL(), redisstore.Options{CacheTTL: time.Minute}), storetest.Options{
		// The store under test is the last one opened; every key of it carries its prefix as
		// the hash tag, so one primary holds them all.
		Disrupt: func(t *testing.T) { cluster.Failover(fmt.Sprintf("{t%d}", namespaces.Load())) },
	})
}
