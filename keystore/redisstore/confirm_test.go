package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// TestUnconfirmedRevocationIsReported is the loss confirm_replicas guards against, end to end:
// a replica cut off from its primary (here: its link dropped while it is paused, so that it
// cannot come back) does not hold a revocation the primary acknowledged, and when the primary
// fails and the replica takes its place, the revoked key is live again. Without confirm_replicas the revocation succeeded; with it, the caller was told
// that it was not confirmed, so it can be checked and repeated.
func TestUnconfirmedRevocationIsReported(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	primary := redistest.Start(t)
	replica := primary.StartReplica(t)
	plain, _ := openStore(t, primary.URL()+"?prefix=loss", Options{})
	// patient waits long enough for a replica on a loaded machine; confirming, less.
	patient, _ := openStore(t, primary.URL()+"?prefix=loss&confirm_replicas=1&confirm_timeout=10s", Options{})
	confirming, reg := openStore(t, primary.URL()+"?prefix=loss&confirm_replicas=1&confirm_timeout=300ms", Options{})

	must(t, patient.CreateAccount(ctx, keystore.Account{Name: "alice"}))
	first, _ := storetest.NewKey(t, "alice")
	second, _ := storetest.NewKey(t, "alice")
	must(t, patient.CreateKey(ctx, first))
	must(t, patient.CreateKey(ctx, second)) // confirmed: the replica answers

	replica.Pause()
	must(t, primary.Client().ClientKillByFilter(ctx, "TYPE", "replica").Err())
	if err := plain.RevokeKey(ctx, first.ID); err != nil {
		t.Fatalf("a store not confirming changes: %v", err)
	}
	start := time.Now()
	err := confirming.RevokeKey(ctx, second.ID)
	waited := time.Since(start)
	if !errors.Is(err, keystore.ErrUnconfirmed) {
		t.Fatalf("revocation the replica did not confirm: %v, want ErrUnconfirmed", err)
	}
	if waited < 300*time.Millisecond || waited > 5*time.Second {
		t.Errorf("waited %s for the replica, want about confirm_timeout (300ms)", waited)
	}
	if got := testutil.ToFloat64(confirming.metrics.unconfirmed); got != 1 {
		t.Errorf("regoauth_store_unconfirmed_writes_total = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "regoauth_store_replica_wait_seconds"); err != nil || n != 1 {
		t.Errorf("replica wait histogram: %d series, %v", n, err)
	}
	// Both revocations were made on the primary.
	for _, k := range []keystore.Key{first, second} {
		got, err := plain.GetKey(ctx, k.ID)
		must(t, err)
		if !got.Revoked {
			t.Fatalf("key %s is not revoked on the primary", k.ID)
		}
	}

	// The primary fails; the replica, behind, becomes the primary.
	primary.Kill()
	replica.Resume()
	c := replica.Client()
	must(t, c.Do(ctx, "REPLICAOF", "NO", "ONE").Err())
	promoted, _ := openStore(t, replica.URL()+"?prefix=loss", Options{})
	for _, k := range []keystore.Key{first, second} {
		got, err := promoted.GetKey(ctx, k.ID)
		must(t, err)
		if got.Revoked {
			t.Fatalf("key %s is revoked on the promoted replica: this test no longer shows the loss it is about", k.ID)
		}
	}
}

// TestEveryChangeWaitsForReplicas: each kind of change, through every write path of the store,
// is confirmed by a replica that answers and reported as unconfirmed by one that does not;
// reads and last-used times never wait.
func TestEveryChangeWaitsForReplicas(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	primary := redistest.Start(t)
	replica := primary.StartReplica(t)
	// Round 0 runs on patient, which waits long enough for a replica on a loaded machine;
	// round 1 on hasty.
	patient, _ := openStore(t, primary.URL()+"?prefix=every&confirm_replicas=1&confirm_timeout=10s", Options{})
	hasty, _ := openStore(t, primary.URL()+"?prefix=every&confirm_replicas=1&confirm_timeout=100ms", Options{})
	s := patient

	sessionID := func(i int) string {
		sum := sha256.Sum256(fmt.Appendf(nil, "session %d", i))
		return hex.EncodeToString(sum[:])
	}
	alice := keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}
	now := time.Now().UTC()
	// changes[i](round) makes one change; round 0 runs with the replica answering, round 1 with
	// it paused, on records of their own.
	type change struct {
		name string
		do   func(round int) error
	}
	keys := [2][3]keystore.Key{}
	for r := range keys {
		for i := range keys[r] {
			keys[r][i], _ = storetest.NewKey(t, "alice")
		}
	}
	changes := []change{
		{"create account", func(r int) error { return s.CreateAccount(ctx, keystore.Account{Name: fmt.Sprintf("bob%d", r)}) }},
		{"update account", func(r int) error {
			return s.UpdateAccount(ctx, keystore.Account{Name: fmt.Sprintf("bob%d", r), Disabled: true})
		}},
		{"create key", func(r int) error { return s.CreateKey(ctx, keys[r][0]) }},
		{"revoke key", func(r int) error { return s.RevokeKey(ctx, keys[r][0].ID) }},
		{"delete keys", func(r int) error { return s.DeleteKeys(ctx, []string{keys[r][0].ID}) }},
		{"put grant", func(r int) error {
			return s.PutGrant(ctx, keystore.Grant{Subject: alice, Repository: fmt.Sprintf("shop/app%d", r), Actions: []string{"pull"}}, keystore.Unguarded)
		}},
		{"remove grant", func(r int) error {
			return s.RemoveGrant(ctx, alice, fmt.Sprintf("shop/app%d", r), nil, keystore.Unguarded)
		}},
		{"reserve", func(r int) error {
			return s.Reserve(ctx, keystore.Ownership{Repository: fmt.Sprintf("alice/app%d", r), Owner: "alice", Created: now}, 0)
		}},
		{"release", func(r int) error { return s.Release(ctx, fmt.Sprintf("alice/app%d", r), keystore.Unguarded) }},
		{"create session", func(r int) error {
			return s.CreateSession(ctx, keystore.Session{ID: sessionID(r), KeyID: keys[r][1].ID, Account: "alice", Created: now, Expires: now.Add(time.Hour)}, 20)
		}},
		{"delete session", func(r int) error { return s.DeleteSession(ctx, sessionID(r)) }},
		{"write batch", func(r int) error {
			return s.WriteBatch(ctx, []keystore.Record{{Key: &keys[r][2]}})
		}},
	}
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "alice"}))
	for round, paused := range []bool{false, true} {
		if paused {
			replica.Pause()
			s = hasty
		}
		for _, c := range changes {
			err := c.do(round)
			switch {
			case !paused && err != nil:
				t.Errorf("%s, replica answering: %v", c.name, err)
			case paused && !errors.Is(err, keystore.ErrUnconfirmed):
				t.Errorf("%s, replica paused: %v, want ErrUnconfirmed", c.name, err)
			}
		}
	}
	// Still paused: reads and last-used times answer at once.
	start := time.Now()
	if _, err := s.GetAccount(ctx, "alice"); err != nil {
		t.Error(err)
	}
	if _, err := s.LoadPrincipal(ctx, keys[0][2].ID); err != nil {
		t.Error(err)
	}
	if err := s.TouchKeys(ctx, map[string]time.Time{keys[0][1].ID: now}); err != nil {
		t.Error(err)
	}
	if d := time.Since(start); d >= 100*time.Millisecond {
		t.Errorf("reads and last-used times took %s: they waited for the replica", d)
	}
}

// TestConfirmedChangesOnSentinelAndCluster: WAIT runs on the primary that took the write, under
// Sentinel (through the failover client) and Cluster (the node holding the store's slot). A
// store asking for more replicas than there are is told its changes are unconfirmed.
func TestConfirmedChangesOnSentinelAndCluster(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	for _, mode := range []string{"sentinel", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var url string
			if mode == "sentinel" {
				url = redistest.StartSentinel(t).URL() + "?prefix=confirm&"
			} else {
				url = redistest.StartCluster(t).URL() + "?prefix=confirm&"
			}
			one, _ := openStore(t, url+"confirm_replicas=1&confirm_timeout=10s", Options{})
			two, _ := openStore(t, url+"confirm_replicas=2&confirm_timeout=50ms", Options{})
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := one.CreateAccount(ctx, keystore.Account{Name: "alice"}); err != nil {
				t.Fatalf("one replica asked, one answering: %v", err)
			}
			err := two.UpdateAccount(ctx, keystore.Account{Name: "alice", Disabled: true})
			if !errors.Is(err, keystore.ErrUnconfirmed) {
				t.Fatalf("two replicas asked, one answering: %v, want ErrUnconfirmed", err)
			}
			a, err := one.GetAccount(ctx, "alice")
			must(t, err)
			if !a.Disabled {
				t.Fatal("the unconfirmed change was not made on the primary")
			}
		})
	}
}

// TestConfirmCoversChangesMadeBefore: Confirm, which an import asks for when it found every
// record already present (an earlier run having written them unconfirmed), must cover every
// change the primary took before it. WAIT counts the replicas holding its connection's last
// write; a connection that wrote nothing has none, and every replica still connected, a paused
// one included, was counted as holding it.
func TestConfirmCoversChangesMadeBefore(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	primary := redistest.Start(t)
	replica := primary.StartReplica(t)
	url := primary.URL() + "?prefix=confirm&confirm_replicas=1&confirm_timeout=200ms"
	s, _ := openStore(t, url, Options{})
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "alice"}))

	replica.Pause()
	defer replica.Resume()
	if err := s.CreateAccount(ctx, keystore.Account{Name: "bob"}); !errors.Is(err, keystore.ErrUnconfirmed) {
		t.Fatalf("creating an account, replica paused: %v, want ErrUnconfirmed", err)
	}
	// As a later run of the command line would ask: another process, new connections.
	later, _ := openStore(t, url, Options{})
	if err := later.Confirm(ctx); !errors.Is(err, keystore.ErrUnconfirmed) {
		t.Errorf("Confirm, replica paused: %v, want ErrUnconfirmed", err)
	}
	replica.Resume()
	if err := later.Confirm(ctx); err != nil {
		t.Errorf("Confirm, replica answering: %v", err)
	}
	plain, _ := openStore(t, primary.URL()+"?prefix=confirm", Options{})
	if err := plain.Confirm(ctx); err != nil {
		t.Errorf("Confirm without confirm_replicas: %v", err)
	}
}

// TestConfirmedChangesFollowAClusterManualFailover: confirmed changes run on a connection to
// the slot's primary taken from the client's slot map, which an operator's CLUSTER FAILOVER
// makes stale: the former primary, still running, answers MOVED. Such a change was not made; it
// must read as the store being briefly unavailable (a 503 to repeat), have the slot map read
// again, and the next change must reach the new primary.
func TestConfirmedChangesFollowAClusterManualFailover(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	cluster := redistest.StartCluster(t)
	s, _ := openStore(t, cluster.URL()+"?prefix=moved&confirm_replicas=1&confirm_timeout=10s", Options{})
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "alice"}))

	cluster.ManualFailover(s.prefix)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.UpdateAccount(ctx, keystore.Account{Name: "alice", Disabled: true})
		if err == nil {
			break
		}
		if !errors.Is(err, keystore.ErrUnavailable) {
			t.Fatalf("a change after the failover: %v, want success or ErrUnavailable", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("changes still fail 10s after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a, err := s.GetAccount(ctx, "alice")
	must(t, err)
	if !a.Disabled {
		t.Fatal("the change after the failover is not on the new primary")
	}
}
