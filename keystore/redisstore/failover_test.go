package redisstore

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// TestRevocationReachesReplicasAfterAManualFailover: an operator's SENTINEL FAILOVER leaves
// the former primary running, soon a replica of the new one. Writes move to the new primary at
// once; a replica's invalidation channel must follow them, or it keeps answering its pings
// while the messages of every later write are published elsewhere. A key revoked through one
// replica after the failover must be refused by another within a second, as at any other time.
func TestRevocationReachesReplicasAfterAManualFailover(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	setup := redistest.StartSentinel(t)
	storeURL := setup.URL() + "?prefix=manual"
	a, _ := openStore(t, storeURL, Options{CacheTTL: time.Minute})
	b, _ := openStore(t, storeURL, Options{CacheTTL: time.Minute})
	waitLive(t, a)
	waitLive(t, b)
	must(t, a.CreateAccount(ctx, keystore.Account{Name: "alice"}))
	k, plain := storetest.NewKey(t, "alice")
	must(t, a.CreateKey(ctx, k))

	old := setup.Primary()
	u, err := url.Parse(setup.URL())
	if err != nil {
		t.Fatal(err)
	}
	sentinel := redis.NewSentinelClient(&redis.Options{Addr: strings.Split(u.Host, ",")[0]})
	defer sentinel.Close()
	if err := sentinel.Failover(ctx, setup.Master).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for setup.Primary() == old {
		if time.Now().After(deadline) {
			t.Fatal("no failover within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	primary := setup.Primary()
	// Every replica writes to the new primary once the sentinels told it.
	deadline = time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		repo := fmt.Sprintf("alice/probe%d", i)
		err := a.PutGrant(ctx, keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}, Repository: repo, Actions: []string{"pull"}}, keystore.Unguarded)
		n, _ := primary.Client().HExists(ctx, a.grantsKey("account:alice"), repo).Result()
		if err == nil && n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica a does not write to the new primary: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitLive(t, b)
	// Warm b's cache after the failover.
	deadline = time.Now().Add(5 * time.Second)
	hits := testutil.ToFloat64(b.metrics.cache.WithLabelValues("hit"))
	for testutil.ToFloat64(b.metrics.cache.WithLabelValues("hit")) <= hits {
		if _, err := keystore.Authenticate(ctx, b, "alice", plain, time.Now()); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("replica b's cache does not serve after the failover; this test needs it warm")
		}
		time.Sleep(5 * time.Millisecond)
	}

	must(t, a.RevokeKey(ctx, k.ID))
	if v, _ := primary.Client().HGet(ctx, a.keyKey(k.ID), "revoked").Result(); v != "1" {
		ov, _ := old.Client().HGet(ctx, a.keyKey(k.ID), "revoked").Result()
		role, _ := old.Client().Do(ctx, "ROLE").Slice()
		t.Fatalf("the revocation is not on the new primary (revoked=%q; on the former one %q, its role %v)", v, ov, role[0])
	}
	start := time.Now()
	for {
		_, err := keystore.Authenticate(ctx, b, "alice", plain, time.Now())
		if errors.Is(err, keystore.ErrBadCredentials) {
			t.Logf("replica b refused the revoked key after %s", time.Since(start))
			break
		}
		if err != nil && !errors.Is(err, keystore.ErrUnavailable) {
			t.Fatal(err)
		}
		if time.Since(start) > time.Second {
			t.Fatalf("replica b still authenticates the key revoked %s ago (its channel alive: %v)", time.Since(start), b.live.Alive())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
