package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/keystore/storetest"
)

var ctx = context.Background()

func openStore(t *testing.T, url string, opts Options) (*Store, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	s, err := Open(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, reg
}

// waitLive waits until a store's invalidation channel is up, as a replica is once it started.
// After a Redis restart the client redials with its own backoff, which a loaded machine
// stretches: the limit is generous, the wait usually a few hundred milliseconds.
func waitLive(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(s.metrics.listening) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("invalidation channel did not come up within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInvalidationReachesOtherReplicas: two stores share one Redis, both caching for a minute.
// A change made through one is refused by the other within a second. Before each change the
// test proves the other replica really serves from its cache (a change written behind the
// stores' back, without a message, goes unnoticed), so only invalidation explains the refusal.
func TestInvalidationReachesOtherReplicas(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	srv := redistest.Start(t)
	url := srv.URL() + "?prefix=replicas"
	a, _ := openStore(t, url, Options{CacheTTL: time.Minute})
	b, _ := openStore(t, url, Options{CacheTTL: time.Minute})
	waitLive(t, a)
	waitLive(t, b)
	raw := srv.Client()

	buyers := keystore.Subject{Kind: keystore.SubjectGroup, Name: "buyers"}
	must(t, a.CreateAccount(ctx, keystore.Account{Name: "seller"}))
	setup := func(t *testing.T, name string) (keystore.Key, string) {
		if err := a.CreateAccount(ctx, keystore.Account{Name: name, Groups: []string{"buyers"}}); err != nil && !errors.Is(err, keystore.ErrExists) {
			t.Fatal(err)
		}
		k, plain := storetest.NewKey(t, name)
		if err := a.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		for _, g := range []keystore.Grant{
			{Subject: buyers, Repository: "shop/app", Actions: []string{"pull"}},
			{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: name}, Repository: name + "/own", Actions: []string{"push"}},
		} {
			if err := a.PutGrant(ctx, g, keystore.Unguarded); err != nil {
				t.Fatal(err)
			}
		}
		return k, plain
	}
	// refusedWithin polls replica b until check says the change is seen.
	refusedWithin := func(t *testing.T, limit time.Duration, check func() bool) time.Duration {
		start := time.Now()
		for !check() {
			if time.Since(start) > limit {
				t.Fatalf("replica b still serves the old state after %s", limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	repos := func(p keystore.Principal) []string {
		var out []string
		for _, g := range p.Grants {
			out = append(out, g.Repository)
		}
		slices.Sort(out)
		return out
	}

	for _, tt := range []struct {
		name string
		// change makes it through a; seen reports whether b refuses now.
		change func(t *testing.T, k keystore.Key)
		seen   func(k keystore.Key, plain string) bool
	}{
		{"revoke a key",
			func(t *testing.T, k keystore.Key) { must(t, a.RevokeKey(ctx, k.ID)) },
			func(k keystore.Key, plain string) bool {
				_, err := keystore.Authenticate(ctx, b, k.Account, plain, time.Now())
				return errors.Is(err, keystore.ErrBadCredentials)
			}},
		{"disable an account",
			func(t *testing.T, k keystore.Key) {
				must(t, a.UpdateAccount(ctx, keystore.Account{Name: k.Account, Groups: []string{"buyers"}, Disabled: true}))
			},
			func(k keystore.Key, plain string) bool {
				_, err := keystore.Authenticate(ctx, b, k.Account, plain, time.Now())
				return errors.Is(err, keystore.ErrBadCredentials)
			}},
		{"remove an account's grant",
			func(t *testing.T, k keystore.Key) {
				must(t, a.RemoveGrant(ctx, keystore.Subject{Kind: keystore.SubjectAccount, Name: k.Account}, k.Account+"/own", nil, keystore.Unguarded))
			},
			func(k keystore.Key, plain string) bool {
				p, err := keystore.Authenticate(ctx, b, k.Account, plain, time.Now())
				return err == nil && !slices.Contains(repos(p), k.Account+"/own")
			}},
		{"remove a group's grant",
			func(t *testing.T, k keystore.Key) {
				must(t, a.RemoveGrant(ctx, buyers, "shop/app", nil, keystore.Unguarded))
			},
			func(k keystore.Key, plain string) bool {
				p, err := keystore.Authenticate(ctx, b, k.Account, plain, time.Now())
				return err == nil && !slices.Contains(repos(p), "shop/app")
			}},
		{"release a name granted to the account",
			func(t *testing.T, k keystore.Key) {
				// Owned by another account: only the message about the grantee can tell b.
				must(t, a.Reserve(ctx, keystore.Ownership{Repository: k.Account + "/own", Owner: "seller"}, 0))
				must(t, a.Release(ctx, k.Account+"/own", keystore.Unguarded))
			},
			func(k keystore.Key, plain string) bool {
				p, err := keystore.Authenticate(ctx, b, k.Account, plain, time.Now())
				return err == nil && !slices.Contains(repos(p), k.Account+"/own")
			}},
		{"release a name granted to a group",
			func(t *testing.T, k keystore.Key) {
				must(t, a.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "seller"}, 0))
				must(t, a.Release(ctx, "shop/app", keystore.Unguarded))
			},
			func(k keystore.Key, plain string) bool {
				p, err := keystore.Authenticate(ctx, b, k.Account, plain, time.Now())
				return err == nil && !slices.Contains(repos(p), "shop/app")
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("user%d", time.Now().UnixNano()%1e9)
			k, plain := setup(t, name)
			// Let the setup's own invalidations reach b, then warm b's cache.
			time.Sleep(100 * time.Millisecond)
			hits := testutil.ToFloat64(b.metrics.cache.WithLabelValues("hit"))
			for range 2 {
				if p, err := keystore.Authenticate(ctx, b, name, plain, time.Now()); err != nil || len(p.Grants) != 2 {
					t.Fatalf("before: %+v, %v", p, err)
				}
			}
			if testutil.ToFloat64(b.metrics.cache.WithLabelValues("hit")) != hits+1 {
				t.Fatal("replica b did not serve the second lookup from its cache")
			}
			// A grant written behind the stores' back, without a message, stays unseen by b: b
			// answers from its cache, so only the invalidation can explain what follows.
			raw.HSet(ctx, a.grantsKey("account:"+name), name+"/probe", "pull")
			time.Sleep(300 * time.Millisecond)
			if p, err := keystore.Authenticate(ctx, b, name, plain, time.Now()); err != nil || slices.Contains(repos(p), name+"/probe") {
				t.Fatalf("replica b saw an unannounced change (%v, %v): it is not serving from its cache, so this test proves nothing", repos(p), err)
			}
			tt.change(t, k)
			took := refusedWithin(t, time.Second, func() bool { return tt.seen(k, plain) })
			t.Logf("replica b refused %s after the change", took)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestFailsClosedAndRecovers stops the Redis server under a caching store: lookups fail with
// ErrUnavailable (the cache stops serving as soon as its channel is gone), the metrics say so,
// and when the server returns the store works again without being reopened.
func TestFailsClosedAndRecovers(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	srv := redistest.Start(t)
	s, _ := openStore(t, srv.URL(), Options{CacheTTL: time.Minute})
	waitLive(t, s)
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "alice"}))
	k, plain := storetest.NewKey(t, "alice")
	must(t, s.CreateKey(ctx, k))
	// The key's creation message reaches this store too and evicts the id once: warm the
	// cache until it serves.
	deadline := time.Now().Add(time.Second)
	for testutil.ToFloat64(s.metrics.cache.WithLabelValues("hit")) < 1 {
		if _, err := keystore.Authenticate(ctx, s, "alice", plain, time.Now()); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no cache hit within a second before the outage; the test needs a warm cache")
		}
		time.Sleep(5 * time.Millisecond)
	}

	srv.Stop()
	start := time.Now()
	for {
		_, err := keystore.Authenticate(ctx, s, "alice", plain, time.Now())
		if errors.Is(err, keystore.ErrUnavailable) {
			break
		}
		if err != nil {
			t.Fatalf("during the outage: %v, want ErrUnavailable", err)
		}
		if time.Since(start) > time.Second {
			t.Fatal("still authenticating from the cache 1s after Redis stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 5 {
		if _, err := s.LoadPrincipal(ctx, k.ID); !errors.Is(err, keystore.ErrUnavailable) {
			t.Fatalf("LoadPrincipal during the outage = %v, want ErrUnavailable", err)
		}
	}
	if err := s.Ping(ctx); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Ping during the outage = %v", err)
	}
	if up := testutil.ToFloat64(s.metrics.up); up != 0 {
		t.Fatalf("regoauth_store_up = %v during the outage", up)
	}
	if n := testutil.ToFloat64(s.metrics.unavailable.WithLabelValues("load principal")); n < 5 {
		t.Fatalf("unavailable_total{load principal} = %v", n)
	}

	srv.Restart()
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, err := keystore.Authenticate(ctx, s, "alice", plain, time.Now())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover within 10s of Redis returning: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if up := testutil.ToFloat64(s.metrics.up); up != 1 {
		t.Fatalf("regoauth_store_up = %v after recovery", up)
	}
	waitLive(t, s)
}

// TestListensAgainAfterRedisLoads restarts Redis with data to read: for a while it answers
// LOADING, to the listener's pings too, while the subscription it reconnected with stands. The
// listener must come back once Redis has loaded, and the cache serve again; a listener that took
// the error for a lost subscription and waited for a confirmation that never came stayed down
// (every lookup going to Redis) until its connection next dropped.
func TestListensAgainAfterRedisLoads(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	// key-load-delay is how long Redis sleeps per key it reads at start (µs): 12,000 keys, a few seconds.
	srv := redistest.Start(t, "--key-load-delay", "50")
	s, _ := openStore(t, srv.URL(), Options{CacheTTL: time.Minute})
	waitLive(t, s)
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "alice"}))
	k, plain := storetest.NewKey(t, "alice")
	must(t, s.CreateKey(ctx, k))
	raw := srv.Client()
	pipe := raw.Pipeline()
	for i := range 12000 {
		pipe.Set(ctx, fmt.Sprintf("filler:%d", i), "x", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	srv.Restart()
	loading := func() bool {
		info, err := raw.Info(ctx, "persistence").Result() // INFO is answered while loading
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(info, "loading:1")
	}
	if !loading() {
		t.Fatal("Redis was not loading right after the restart: the test needs a loading window")
	}
	deadline := time.Now().Add(30 * time.Second)
	for loading() {
		if time.Now().After(deadline) {
			t.Fatal("Redis did not finish loading within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(s.metrics.listening) != 1 || !s.live.Alive() {
		if time.Now().After(deadline) {
			t.Fatal("the invalidation channel was still down 5s after Redis finished loading")
		}
		time.Sleep(10 * time.Millisecond)
	}
	hits := testutil.ToFloat64(s.metrics.cache.WithLabelValues("hit"))
	deadline = time.Now().Add(time.Second)
	for testutil.ToFloat64(s.metrics.cache.WithLabelValues("hit")) == hits {
		if _, err := keystore.Authenticate(ctx, s, "alice", plain, time.Now()); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache did not serve within a second of the channel coming back")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWriteBatch: a batch writes records in order, each checked as a single write would be.
func TestWriteBatch(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := openStore(t, srv.URL()+"?prefix=batch", Options{})
	k, plain := storetest.NewKey(t, "alice")
	grant := keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}, Repository: "image", Actions: []string{"pull"}}
	own := keystore.Ownership{Repository: "alice/app", Owner: "alice"}
	must(t, s.WriteBatch(ctx, []keystore.Record{{Account: &keystore.Account{Name: "alice"}}, {Key: &k}, {Grant: &grant}, {Ownership: &own}}))
	p, err := keystore.Authenticate(ctx, s, "alice", plain, time.Now())
	if err != nil || len(p.Grants) != 1 || !slices.Equal(p.Owned, []string{"alice/app"}) {
		t.Fatalf("after the batch: %+v, %v", p, err)
	}
	orphan, _ := storetest.NewKey(t, "nobody")
	for _, tt := range []struct {
		name string
		recs []keystore.Record
		want error
	}{
		{"existing account", []keystore.Record{{Account: &keystore.Account{Name: "alice"}}}, keystore.ErrExists},
		{"key of a missing account", []keystore.Record{{Key: &orphan}}, keystore.ErrNotFound},
		{"invalid grant", []keystore.Record{{Grant: &keystore.Grant{Subject: grant.Subject, Repository: "Bad", Actions: []string{"pull"}}}}, keystore.ErrInvalid},
		{"empty record", []keystore.Record{{}}, keystore.ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.WriteBatch(ctx, tt.recs); !errors.Is(err, tt.want) {
				t.Fatalf("WriteBatch = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestPasswordsStayOutOfErrorsAndLogs: with the right password the store works; with a wrong
// one it is unavailable (so token requests fail closed), and neither password appears in the
// error or the log.
func TestPasswordsStayOutOfErrorsAndLogs(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right-hunter2")
	host := strings.TrimPrefix(srv.URL(), "redis://")
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	RouteClientLogs(logger)
	defer RouteClientLogs(slog.New(slog.DiscardHandler))

	good, _ := openStore(t, "redis://:right-hunter2@"+host, Options{Logger: logger})
	must(t, good.Ping(ctx))
	bad, _ := openStore(t, "redis://app:wrong-hunter2@"+host, Options{Logger: logger})
	err := bad.CreateAccount(ctx, keystore.Account{Name: "alice"})
	if !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("with a wrong password: %v, want ErrUnavailable", err)
	}
	if up := testutil.ToFloat64(bad.metrics.up); up != 0 {
		t.Fatalf("regoauth_store_up = %v with a wrong password", up)
	}
	for _, text := range []string{err.Error(), logs.String()} {
		if strings.Contains(text, "hunter2") {
			t.Fatalf("a password leaked: %s", text)
		}
	}
	if !strings.Contains(logs.String(), "redis store unreachable") {
		t.Fatalf("the refusal was not logged:\n%s", logs.String())
	}
}

// commandCounter counts the commands a client sends, pipelines included.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// TestLoadPrincipalIsOneRoundTrip counts what reaches Redis: one command per token lookup, for a
// principal with grants of its own, grants through two groups and an owned repository.
func TestLoadPrincipalIsOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	counter := &commandCounter{}
	client.AddHook(counter)
	s := New(client, Standalone, "roundtrip", Options{})
	t.Cleanup(func() { s.Close() })
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "alice", Groups: []string{"sellers", "staff"}}))
	k, _ := storetest.NewKey(t, "alice")
	must(t, s.CreateKey(ctx, k))
	for _, g := range []keystore.Grant{
		{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "alice"}, Repository: "a", Actions: []string{"pull"}},
		{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "sellers"}, Repository: "b", Actions: []string{"push"}},
		{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "staff"}, Repository: "c/**", Actions: []string{"pull"}},
	} {
		must(t, s.PutGrant(ctx, g, keystore.Unguarded))
	}
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "alice/app", Owner: "alice"}, 0))
	if _, err := s.LoadPrincipal(ctx, k.ID); err != nil { // loads the script into Redis' cache
		t.Fatal(err)
	}
	before := counter.n.Load()
	for range 10 {
		p, err := s.LoadPrincipal(ctx, k.ID)
		if err != nil || len(p.Grants) != 3 || len(p.Owned) != 1 {
			t.Fatalf("LoadPrincipal = %+v, %v", p, err)
		}
	}
	if n := counter.n.Load() - before; n != 10 {
		t.Fatalf("10 lookups sent %d commands to Redis, want 10", n)
	}
}

// evalCalls is how many scripts Redis has run (EVALSHA and EVAL), from INFO commandstats.
func evalCalls(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				var calls int
				fmt.Sscanf(rest, "%d", &calls)
				n += calls
			}
		}
	}
	return n
}

// TestNegativeCacheAcrossReplicas: a key id Redis does not have is looked up once per negative
// TTL, however often a client repeats it (Redis's own command count shows it); when the key is
// then created through another replica, this one serves it at once.
func TestNegativeCacheAcrossReplicas(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	srv := redistest.Start(t)
	url := srv.URL() + "?prefix=negative"
	a, _ := openStore(t, url, Options{CacheTTL: time.Minute, NegativeTTL: time.Minute})
	b, reg := openStore(t, url, Options{NegativeTTL: time.Minute}) // the principal cache off: only the negative one
	waitLive(t, a)
	waitLive(t, b)
	raw := srv.Client()
	if err := a.CreateAccount(ctx, keystore.Account{Name: "late"}); err != nil {
		t.Fatal(err)
	}
	k, _ := storetest.NewKey(t, "late")
	// Load the script into Redis first, so that each lookup is one EVALSHA.
	warm, _ := storetest.NewKey(t, "late")
	b.LoadPrincipal(ctx, warm.ID)

	before := evalCalls(t, raw)
	for range 50 {
		if _, err := b.LoadPrincipal(ctx, k.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
	}
	if n := evalCalls(t, raw) - before; n != 1 {
		t.Fatalf("50 lookups of one unknown key ran %d scripts in Redis, want 1", n)
	}
	if n := cacheLookups(t, reg, "negative_hit"); n != 49 {
		t.Fatalf("negative hits = %v, want 49", n)
	}

	if err := a.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		p, err := b.LoadPrincipal(ctx, k.ID)
		if err == nil && p.Key.ID == k.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a second after the key was created through replica A, replica B says: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The creating replica forgets the id at once, without waiting for its own message.
	c, _ := storetest.NewKey(t, "late")
	if _, err := a.LoadPrincipal(ctx, c.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatal(err)
	}
	if err := a.CreateKey(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := a.LoadPrincipal(ctx, c.ID); err != nil {
		t.Fatalf("the replica that created the key: %v", err)
	}
}

// cacheLookups is regoauth_store_cache_lookups_total{result}.
func cacheLookups(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if f.GetName() == "regoauth_store_cache_lookups_total" && m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestDeletedKeysLeaveEveryReplica: two stores share one Redis, both caching for a minute. Dead
// keys that replica b serves from its cache are removed through a: a forgets them at once, and
// b within a second — one message per key, or a message emptying the cache when many go at once.
func TestDeletedKeysLeaveEveryReplica(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	srv := redistest.Start(t)
	url := srv.URL() + "?prefix=deleted"
	a, _ := openStore(t, url, Options{CacheTTL: time.Minute})
	b, reg := openStore(t, url, Options{CacheTTL: time.Minute})
	waitLive(t, a)
	waitLive(t, b)
	must(t, a.CreateAccount(ctx, keystore.Account{Name: "alice"}))

	for _, n := range []int{1, 40} {
		t.Run(fmt.Sprintf("%d keys", n), func(t *testing.T) {
			var ids []string
			for i := range n {
				k, _ := storetest.NewKey(t, "alice")
				if i%2 == 1 {
					k.Expires = time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
				}
				must(t, a.CreateKey(ctx, k))
				if i%2 == 0 {
					must(t, a.RevokeKey(ctx, k.ID))
				}
				ids = append(ids, k.ID)
			}
			// Let the writes' own invalidations reach b, then fill both caches.
			time.Sleep(100 * time.Millisecond)
			hits := cacheLookups(t, reg, "hit")
			for range 2 {
				for _, id := range ids {
					for _, s := range []*Store{a, b} {
						if _, err := s.LoadPrincipal(ctx, id); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if got := cacheLookups(t, reg, "hit") - hits; got != float64(n) {
				t.Fatalf("replica b served %v of the %d second lookups from its cache: this test proves nothing", got, n)
			}

			must(t, a.DeleteKeys(ctx, ids))
			for _, id := range ids {
				if _, err := a.LoadPrincipal(ctx, id); !errors.Is(err, keystore.ErrNotFound) {
					t.Fatalf("the replica that removed the key still loads it: %v", err)
				}
			}
			start := time.Now()
			for _, id := range ids {
				for {
					_, err := b.LoadPrincipal(ctx, id)
					if errors.Is(err, keystore.ErrNotFound) {
						break
					}
					if time.Since(start) > time.Second {
						t.Fatalf("a second after the removal replica b still loads the key: %v", err)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			t.Logf("replica b forgot %d removed keys within %s", n, time.Since(start))
		})
	}
}

// TestDeleteScriptChecksWhatItRemoves: the script removing keys checks each in the step that
// removes it, whatever the store read before: a key neither revoked nor said expired, or one that
// is no longer the record read, stops the whole removal.
func TestDeleteScriptChecksWhatItRemoves(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := openStore(t, srv.URL()+"?prefix=deletescript", Options{})
	must(t, s.CreateAccount(ctx, keystore.Account{Name: "alice"}))
	dead, _ := storetest.NewKey(t, "alice")
	live, _ := storetest.NewKey(t, "alice")
	must(t, s.CreateKey(ctx, dead))
	must(t, s.RevokeKey(ctx, dead.ID))
	must(t, s.CreateKey(ctx, live))
	record := func(id string) string {
		v, err := srv.Client().HGet(ctx, s.keyKey(id), "json").Result()
		must(t, err)
		return v
	}
	run := func(liveJSON, liveExpired string) int {
		keys := []string{s.allKeysKey(), s.keyKey(dead.ID), s.keysOfKey("alice"), s.keyKey(live.ID), s.keysOfKey("alice")}
		n, err := deleteKeys.Run(ctx, s.client, keys, s.channel, dead.ID, record(dead.ID), "0", live.ID, liveJSON, liveExpired).Int()
		must(t, err)
		return n
	}
	for name, n := range map[string]int{
		"a live key":                run(record(live.ID), "0"),
		"a key no longer that read": run(`{"id":"other"}`, "1"),
	} {
		if n != -2 {
			t.Errorf("removing %s beside a dead one: %d, want -2 (the second key refused)", name, n)
		}
	}
	for _, id := range []string{dead.ID, live.ID} {
		if _, err := s.GetKey(ctx, id); err != nil {
			t.Fatalf("a refused removal removed %s: %v", id, err)
		}
	}
	if n := run(record(live.ID), "1"); n != 2 {
		t.Fatalf("removing a revoked key and one read expired: %d, want 2", n)
	}
}

// TestAHangUpIsNotAnOutage: a request whose client hung up fails closed, but tells nothing of
// Redis: the store is not reported unreachable (regoauth_store_up stays 1, nothing logged), so
// clients hanging up on purpose cannot make it flap or its alert fire.
func TestAHangUpIsNotAnOutage(t *testing.T) {
	RouteClientLogs(slog.New(slog.DiscardHandler))
	srv := redistest.Start(t)
	s, reg := openStore(t, srv.URL()+"?prefix=hangup", Options{})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.LoadPrincipal(cancelled, "abcdefghijklmnop"); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("a lookup whose client hung up: %v, want ErrUnavailable (fail closed)", err)
	}
	if up := testutil.ToFloat64(s.metrics.up); up != 1 {
		t.Fatalf("regoauth_store_up = %v after a client hung up, want 1", up)
	}
	if n, _ := testutil.GatherAndCount(reg, "regoauth_store_unavailable_total"); n != 0 {
		t.Fatalf("regoauth_store_unavailable_total has %d series after a client hung up, want none", n)
	}
}
