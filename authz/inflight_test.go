package authz_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/internal/testenv"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/throttle"
)

// heldDirectory makes the credential check slow: every principal lookup waits until let is
// closed (or sleeps pause when let is nil). began counts the lookups that started, inFlight
// those running now, most the most that ran at once.
type heldDirectory struct {
	authz.Directory
	let      chan struct{}
	pause    time.Duration
	began    atomic.Int64
	inFlight atomic.Int64
	most     atomic.Int64
}

func (d *heldDirectory) LoadPrincipal(ctx context.Context, id string) (keystore.Principal, error) {
	d.began.Add(1)
	n := d.inFlight.Add(1)
	defer d.inFlight.Add(-1)
	for m := d.most.Load(); n > m && !d.most.CompareAndSwap(m, n); m = d.most.Load() {
	}
	if d.let != nil {
		<-d.let
	} else {
		time.Sleep(d.pause)
	}
	return d.Directory.LoadPrincipal(ctx, id)
}

// backends are the two places budgets are kept: this process, and a real redis-server.
var backends = map[string]func(t *testing.T, limits throttle.Limits) throttle.Backend{
	"memory": func(t *testing.T, limits throttle.Limits) throttle.Backend {
		return throttle.NewMemory(1000, limits.Refill(), nil)
	},
	"redis": func(t *testing.T, limits throttle.Limits) throttle.Backend {
		srv := redistest.Start(t)
		client := srv.Client()
		b := throttle.NewRedis(client, throttle.RedisOptions{Prefix: "{test}:", Forget: limits.Refill()})
		t.Cleanup(func() { b.Close() })
		deadline := time.Now().Add(5 * time.Second)
		for !b.Live() {
			if time.Now().After(deadline) {
				t.Fatal("the budgets' subscription is not live after 5s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return b
	},
}

// inFlightServer is the token endpoint over a real HTTP server (every client is 127.0.0.1),
// its credential check made slow by dir, its failures limited by limits in backend.
func inFlightServer(t *testing.T, e *env, dir *heldDirectory, limits throttle.Limits, backend throttle.Backend) *httptest.Server {
	t.Helper()
	dir.Directory = e.Store
	guard := throttle.NewGuard(backend, limits, prometheus.NewRegistry(), nil)
	h := e.newHandler(authz.Deps{Directory: dir, Refresh: e.refresh, Throttle: guard}, authz.Options{
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil)),
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status     int
	retryAfter string
}

// tokenRequests sends one token request per (user, key) at once and returns the answers.
func tokenRequests(t *testing.T, srv *httptest.Server, users, keys []string) []answer {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: len(users)}}
	t.Cleanup(client.CloseIdleConnections)
	out := make([]answer, len(users))
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() { out[i].status, out[i].retryAfter = tokenRequest(t, client, srv, users[i], keys[i])() })
	}
	wg.Wait()
	return out
}

// tokenRequest is one token request as user with key, answering its status and Retry-After.
func tokenRequest(t *testing.T, client *http.Client, srv *httptest.Server, user, key string) func() (int, string) {
	return func() (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/token?"+q("repository:image:pull"), nil)
		req.SetBasicAuth(user, key)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("token request of %s: %v", user, err)
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
}

// TestConcurrentGuessesAreBoundedByTheBudget: wrong keys sent at once from one address are
// checked against the budget with the attempts still in flight counted as spent, so no more of
// them reach the credential check than the budget holds; the others wait for those to end and,
// once they failed and spent the budget, are answered 429 with the budget's Retry-After without
// being checked. Before, every one of them saw the budget unspent and all were checked.
func TestConcurrentGuessesAreBoundedByTheBudget(t *testing.T) {
	const atOnce = 24
	cases := []struct {
		name   string
		limits throttle.Limits
		users  func(i int) string
		budget int
	}{
		{"address", throttle.Limits{Address: throttle.Limit{Burst: 5, Every: time.Minute}}, func(i int) string { return "guess" + strconv.Itoa(i) }, 5},
		{"account at address", throttle.Limits{
			Address:        throttle.Limit{Burst: 100, Every: time.Minute},
			AccountAddress: throttle.Limit{Burst: 3, Every: time.Minute},
			Account:        throttle.Limit{Burst: 100, Every: time.Minute},
		}, func(int) string { return "user1" }, 3},
	}
	for backendName, newBackend := range backends {
		for _, c := range cases {
			t.Run(backendName+"/"+c.name, func(t *testing.T) {
				e := newEnv(t)
				dir := &heldDirectory{let: make(chan struct{})}
				srv := inFlightServer(t, e, dir, c.limits, newBackend(t, c.limits))
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: atOnce}}
				t.Cleanup(client.CloseIdleConnections)
				attempts := make([]func() (int, string), atOnce)
				for i := range attempts {
					attempts[i] = tokenRequest(t, client, srv, c.users(i), wrongKey(t))
				}
				testenv.Burst(t, c.budget, dir.began.Load, func() { close(dir.let) }, attempts)
			})
		}
	}
}

// TestConcurrentValidRequestsAreNotRefused: a client sending many more requests at once than its
// budgets hold, all with the right key, gets every token, also when an earlier failure already
// spent part of its budgets: a success holds a unit of the budget only while its check runs and
// gives it back, so requests beyond the budget wait for a check to end, not for a refill.
func TestConcurrentValidRequestsAreNotRefused(t *testing.T) {
	const atOnce = 64
	limits := throttle.Limits{
		Address:        throttle.Limit{Burst: 5, Every: time.Minute},
		AccountAddress: throttle.Limit{Burst: 3, Every: time.Minute},
		Account:        throttle.Limit{Burst: 8, Every: time.Minute},
	}
	for backendName, newBackend := range backends {
		t.Run(backendName, func(t *testing.T) {
			e := newEnv(t)
			dir := &heldDirectory{pause: 2 * time.Millisecond}
			srv := inFlightServer(t, e, dir, limits, newBackend(t, limits))
			users, keys := make([]string, atOnce), make([]string, atOnce)
			for i := range atOnce {
				users[i], keys[i] = "user1", e.keys["user1"]
			}
			// One earlier failure: the account's budget at the address holds 2 more.
			if got := tokenRequests(t, srv, []string{"user1"}, []string{wrongKey(t)}); got[0].status != http.StatusUnauthorized {
				t.Fatalf("wrong key: HTTP %d", got[0].status)
			}
			start := time.Now()
			for i, a := range tokenRequests(t, srv, users, keys) {
				if a.status != http.StatusOK {
					t.Fatalf("right key %d of %d at once: HTTP %d (Retry-After %q)", i+1, atOnce, a.status, a.retryAfter)
				}
			}
			// They were checked at most 2 at a time: the room the failure left.
			if most := dir.most.Load(); most > 2 {
				t.Fatalf("%d checked at once; the budget's room is 2", most)
			}
			t.Logf("%d right keys at once: %s, at most %d checked at once", atOnce, time.Since(start), dir.most.Load())
		})
	}
}
