package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
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
		{"change account", func(r int) error {
			disabled := false
			_, err := s.ChangeAccount(ctx, fmt.Sprintf("bob%d", r), keystore.AccountChange{Disabled: &disabled})
			return err
		}},
		{"create key", func(r int) error { return s.CreateKey(ctx, keys[r][0]) }},
		{"create key within a limit", func(r int) error {
			k, _ := storetest.NewKey(t, "alice")
			return s.CreateKeyWithin(ctx, k, 100)
		}},
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
	// Still paused: a key creation refused at its limit wrote nothing, and says it was refused.
	over, _ := storetest.NewKey(t, "alice")
	if err := s.CreateKeyWithin(ctx, over, 1); !errors.Is(err, keystore.ErrLimit) || errors.Is(err, keystore.ErrUnconfirmed) {
		t.Errorf("a key creation at its limit, replica paused: %v, want ErrLimit alone", err)
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

// TestConfirmedChangesFollowASentinelFailover: the primary of a Sentinel setup crashes while
// changes are being made, its replicas behind (their links cut while they were paused, so that
// they cannot catch up), and the sentinels promote one of them. A store not confirming changes
// reported done changes the new primary does not hold; the store confirming them must not:
// each of its changes was either reported done and is on the new primary, or reported
// unconfirmed or unavailable (a 503), never anything else. After the failover the failover
// client's connection, on which a change and its WAIT run, goes to the new primary: with a
// replica left a change is confirmed there, and with none it is reported unconfirmed.
func TestConfirmedChangesFollowASentinelFailover(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	for _, replicas := range []int{2, 1} {
		name := map[int]string{2: "a replica left", 1: "no replica left"}[replicas]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			setup := redistest.StartSentinelReplicas(t, replicas)
			url := setup.URL() + "?prefix=crash"
			confirming, _ := openStore(t, url+"&confirm_replicas=1&confirm_timeout=200ms", Options{})
			plain, _ := openStore(t, url, Options{})
			ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			must(t, confirming.CreateAccount(ctx, keystore.Account{Name: "probe"}))

			// Each store creates accounts of its own, one after the other, until stopped.
			type outcome struct {
				name string
				err  error
			}
			var mu sync.Mutex
			outcomes := map[*Store][]outcome{}
			done := func(s *Store) (n, made int) { // how many changes s reported done, and made, so far
				mu.Lock()
				defer mu.Unlock()
				for _, o := range outcomes[s] {
					if o.err == nil {
						n++
					}
				}
				return n, len(outcomes[s])
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			stopWriting := sync.OnceFunc(func() { close(stop); wg.Wait() })
			for i, s := range []*Store{confirming, plain} {
				wg.Go(func() {
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						case <-time.After(5 * time.Millisecond):
						}
						name := fmt.Sprintf("s%d-%d", i, n)
						err := s.CreateAccount(ctx, keystore.Account{Name: name})
						mu.Lock()
						outcomes[s] = append(outcomes[s], outcome{name, err})
						mu.Unlock()
					}
				})
			}
			defer stopWriting()
			waitUntil := func(what string, cond func() bool) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for !cond() {
					if time.Now().After(deadline) {
						t.Fatalf("waiting for %s", what)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			waitUntil("changes confirmed before the crash", func() bool { n, _ := done(confirming); return n >= 3 })

			old := setup.Primary()
			behind := setup.Replicas()
			for _, r := range behind {
				r.Pause()
			}
			must(t, old.Client().ClientKillByFilter(ctx, "TYPE", "replica").Err())
			// Changes the replicas miss: some reported done by the plain store, and at least two
			// made, whatever they were reported, by the confirming store.
			fromPlain, _ := done(plain)
			_, fromConfirming := done(confirming)
			waitUntil("changes the replicas miss", func() bool {
				n, _ := done(plain)
				_, made := done(confirming)
				return n >= fromPlain+3 && made >= fromConfirming+2
			})
			old.Kill()
			for _, r := range behind {
				r.Resume()
			}
			primary := setup.AwaitFailover(old)
			left := setup.Replicas()
			if len(left) != replicas-1 {
				t.Fatalf("%d replicas left after the failover, want %d", len(left), replicas-1)
			}

			// A change after the failover, once the client has learnt of it.
			deadline := time.Now().Add(10 * time.Second)
			var err error
			for {
				err = confirming.UpdateAccount(ctx, keystore.Account{Name: "probe", Disabled: true})
				if !errors.Is(err, keystore.ErrUnavailable) || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			switch {
			case len(left) > 0 && err != nil:
				t.Errorf("a change after the failover, a replica left: %v, want it confirmed", err)
			case len(left) == 0 && !errors.Is(err, keystore.ErrUnconfirmed):
				t.Errorf("a change after the failover, no replica left: %v, want ErrUnconfirmed", err)
			}
			for _, srv := range append([]*redistest.Server{primary}, left...) {
				if v, _ := srv.Client().HGet(ctx, confirming.accountKey("probe"), "disabled").Result(); v != "1" {
					t.Errorf("the change after the failover is not on %s (disabled=%q)", srv.Addr, v)
				}
			}
			stopWriting()

			// Read back from the new primary: what each store reported done.
			pc := primary.Client()
			var lost [2]int
			for i, s := range []*Store{confirming, plain} {
				for _, o := range outcomes[s] {
					if i == 0 && o.err != nil && !errors.Is(o.err, keystore.ErrUnconfirmed) && !errors.Is(o.err, keystore.ErrUnavailable) {
						t.Errorf("creating account %s: %v, want it done, ErrUnconfirmed or ErrUnavailable", o.name, o.err)
					}
					if o.err != nil {
						continue
					}
					n, err := pc.Exists(ctx, s.accountKey(o.name)).Result()
					must(t, err)
					if n == 0 {
						lost[i]++
					}
				}
			}
			t.Logf("confirming store: %d changes; plain store: %d changes, %d of those reported done lost", len(outcomes[confirming]), len(outcomes[plain]), lost[1])
			if lost[0] > 0 {
				t.Errorf("%d changes the confirming store reported done are not on the new primary", lost[0])
			}
			if lost[1] == 0 {
				t.Error("no change the plain store reported done was lost: this test no longer shows the loss it is about")
			}
		})
	}
}

// TestAPrimaryMadeAReplicaWhileWaitingIsUnconfirmed: a primary made a replica (REPLICAOF, as an
// operator or a hosted service's failover sends it) while a change waits for its replicas
// answers the WAIT with UNBLOCKED. The change was made on it and no replica confirmed it: that
// is ErrUnconfirmed, a 503 to check and repeat, not an error of unknown kind (a 500).
func TestAPrimaryMadeAReplicaWhileWaitingIsUnconfirmed(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	primary := redistest.Start(t)
	replica := primary.StartReplica(t)
	s, _ := openStore(t, primary.URL()+"?prefix=demoted&confirm_replicas=1&confirm_timeout=10s", Options{})
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "alice"}))

	replica.Pause()
	defer replica.Resume()
	result := make(chan error, 1)
	go func() { result <- s.UpdateAccount(ctx, keystore.Account{Name: "alice", Disabled: true}) }()
	pc := primary.Client()
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := pc.Info(ctx, "clients").Result()
		must(t, err)
		if strings.Contains(info, "blocked_clients:1") {
			break // the change was made, its WAIT waits
		}
		if time.Now().After(deadline) {
			t.Fatalf("the change does not wait for the paused replica:\n%s", info)
		}
		time.Sleep(5 * time.Millisecond)
	}
	must(t, pc.Do(ctx, "REPLICAOF", "127.0.0.1", strconv.Itoa(replica.Port())).Err())
	err := <-result
	if !errors.Is(err, keystore.ErrUnconfirmed) {
		t.Fatalf("a change whose primary was made a replica while it waited: %v, want ErrUnconfirmed", err)
	}
	if got := testutil.ToFloat64(s.metrics.unconfirmed); got != 1 {
		t.Errorf("regoauth_store_unconfirmed_writes_total = %v, want 1", got)
	}
	if v, _ := pc.HGet(ctx, s.accountKey("alice"), "disabled").Result(); v != "1" {
		t.Errorf("the change was not made on the former primary (disabled=%q)", v)
	}
}

// TestABatchWithAFailedRecordWaitsForTheOthers: a batch one record of which fails (an account
// that exists) still writes the others, and with confirm_replicas they are waited for as those
// of any batch: a replica that does not answer makes the batch report both facts, in one line,
// and one that answers confirms them.
func TestABatchWithAFailedRecordWaitsForTheOthers(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	primary := redistest.Start(t)
	replica := primary.StartReplica(t)
	patient, _ := openStore(t, primary.URL()+"?prefix=batch&confirm_replicas=1&confirm_timeout=10s", Options{})
	hasty, _ := openStore(t, primary.URL()+"?prefix=batch&confirm_replicas=1&confirm_timeout=200ms", Options{})
	must(t, patient.CreateAccount(ctx, keystore.Account{Name: "alice"}))
	batch := func(names ...string) []keystore.Record {
		recs := make([]keystore.Record, len(names))
		for i, n := range names {
			recs[i] = keystore.Record{Account: &keystore.Account{Name: n}}
		}
		return recs
	}

	replica.Pause()
	err := hasty.WriteBatch(ctx, batch("bob", "alice", "carol"))
	replica.Resume()
	if !errors.Is(err, keystore.ErrExists) || !errors.Is(err, keystore.ErrUnconfirmed) || strings.Contains(err.Error(), "\n") {
		t.Errorf("a batch with an account that exists, replica paused: %v, want one line saying alice exists and the others are unconfirmed", err)
	}
	if got := testutil.ToFloat64(hasty.metrics.unconfirmed); got != 1 {
		t.Errorf("regoauth_store_unconfirmed_writes_total = %v, want 1", got)
	}

	err = patient.WriteBatch(ctx, batch("dave", "alice", "erin"))
	if !errors.Is(err, keystore.ErrExists) || errors.Is(err, keystore.ErrUnconfirmed) {
		t.Errorf("a batch with an account that exists, replica answering: %v, want ErrExists alone", err)
	}
	// Confirmed: the replica holds them.
	rc := replica.Client()
	for _, name := range []string{"bob", "carol", "dave", "erin"} {
		if n, _ := rc.Exists(ctx, patient.accountKey(name)).Result(); n != 1 {
			t.Errorf("account %s is not on the replica", name)
		}
	}
}

// TestABatchWithoutAPrimaryIsUnavailable: with confirm_replicas a batch first takes a connection
// to the primary, which under Cluster needs the slot map; a cluster that cannot be reached makes
// the batch ErrUnavailable (an import stops with one line), where it used to panic.
func TestABatchWithoutAPrimaryIsUnavailable(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	url := fmt.Sprintf("redis+cluster://127.0.0.1:%d?confirm_replicas=1", redistest.FreePort(t))
	s, _ := openStore(t, url, Options{})
	err := s.WriteBatch(ctx, []keystore.Record{{Account: &keystore.Account{Name: "alice"}}})
	if !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("a batch on a cluster nobody answers for: %v, want ErrUnavailable", err)
	}
}
