package authz_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/throttle"
)

// countingDirectory counts the principal lookups that reach the store.
type countingDirectory struct {
	authz.Directory
	n atomic.Int64
}

func (d *countingDirectory) LoadPrincipal(ctx context.Context, id string) (keystore.Principal, error) {
	d.n.Add(1)
	return d.Directory.LoadPrincipal(ctx, id)
}

// throttledEnv is env's handler with a failure budget of 5 per address, 3 per (account,
// address) and 8 per account, each refilled one a minute.
func throttledEnv(t *testing.T) (*env, *countingDirectory) {
	t.Helper()
	e := newEnv(t)
	limits := throttle.Limits{
		Address:        throttle.Limit{Burst: 5, Every: time.Minute},
		AccountAddress: throttle.Limit{Burst: 3, Every: time.Minute},
		Account:        throttle.Limit{Burst: 8, Every: time.Minute},
	}
	guard := throttle.NewGuard(throttle.NewMemory(1000, limits.Refill(), nil), limits, prometheus.NewRegistry(), nil)
	dir := &countingDirectory{Directory: e.Store}
	e.handler = e.newHandler(authz.Deps{Directory: dir, Refresh: e.refresh, Throttle: guard}, authz.Options{
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil)),
	})
	return e, dir
}

func (e *env) from(addr, user, pass string) result {
	e.t.Helper()
	r := httptest.NewRequest("GET", "/token?"+q("repository:image:pull"), nil)
	r.RemoteAddr = addr + ":40000"
	if user != "" {
		r.SetBasicAuth(user, pass)
	}
	return e.do(r)
}

func wantTooMany(t *testing.T, res result) {
	t.Helper()
	errs, _ := res.body["errors"].([]any)
	if res.status != http.StatusTooManyRequests || len(errs) != 1 || errs[0].(map[string]any)["code"] != "TOOMANYREQUESTS" ||
		res.body["details"] == "" || res.body["token"] != nil {
		t.Fatalf("want a 429 in the registry error format, got %d %s", res.status, res.raw)
	}
	// The budgets refill one failure a minute; a failure answered 429 by the account's budget
	// is counted too (every failure is), so the wait may be two.
	secs, err := strconv.Atoi(res.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 120 {
		t.Fatalf("Retry-After = %q", res.header.Get("Retry-After"))
	}
}

func wrongKey(t *testing.T) string {
	plain, _, _, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

// TestBruteForceFromOneAddress: a burst of wrong keys from one address is answered 401 until
// the address's budget is spent, then 429 with Retry-After, without reaching the store; the
// right key from another address keeps working all along.
func TestBruteForceFromOneAddress(t *testing.T) {
	e, dir := throttledEnv(t)
	const attacker, user = "203.0.113.7", "198.51.100.20"
	accounts := []string{"user1", "user2", "nobody", "user1", "user2"}
	for i, acct := range accounts {
		if res := e.from(attacker, acct, wrongKey(t)); res.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: HTTP %d %s", i+1, res.status, res.raw)
		}
		// The owner of the key, elsewhere, is unaffected.
		wantAccess(t, e.access(e.from(user, "user1", e.keys["user1"])), access("image", "pull"))
	}
	lookups := dir.n.Load()
	for range 20 {
		wantTooMany(t, e.from(attacker, "user1", wrongKey(t)))
		wantTooMany(t, e.from(attacker, "user2", e.keys["user2"])) // the address is spent, whoever it names
		wantAccess(t, e.access(e.from(user, "user1", e.keys["user1"])), access("image", "pull"))
	}
	if n := dir.n.Load() - lookups; n != 20 {
		t.Fatalf("%d store lookups for 40 throttled and 20 good requests; throttled ones must cost none", n)
	}
	// Anonymous requests carry no credentials to guess with and are not limited.
	if res := e.from(attacker, "", ""); res.status != http.StatusOK {
		t.Fatalf("anonymous from the throttled address: %d", res.status)
	}
}

// TestBruteForceOneAccountFromOneAddress: the (account, address) budget is spent before the
// address's; other accounts from that address, and the account from elsewhere, still work.
func TestBruteForceOneAccountFromOneAddress(t *testing.T) {
	e, _ := throttledEnv(t)
	const attacker = "203.0.113.8"
	for range 3 {
		if res := e.from(attacker, "user1", wrongKey(t)); res.status != http.StatusUnauthorized {
			t.Fatalf("HTTP %d", res.status)
		}
	}
	wantTooMany(t, e.from(attacker, "user1", e.keys["user1"]))
	wantAccess(t, e.access(e.from(attacker, "user2", e.keys["user2"])), access("image"))
	wantAccess(t, e.access(e.from("198.51.100.21", "user1", e.keys["user1"])), access("image", "pull"))
}

// TestDistributedGuessingCannotLockOut: wrong keys for one account from many addresses spend
// the account's own budget, after which its failures are 429, but its right key, from any
// address (an attacker's included), still gets its token.
func TestDistributedGuessingCannotLockOut(t *testing.T) {
	e, _ := throttledEnv(t)
	for i := range 8 {
		if res := e.from("10.0.0."+strconv.Itoa(i+1), "user1", wrongKey(t)); res.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: HTTP %d", i+1, res.status)
		}
	}
	wantTooMany(t, e.from("10.0.1.1", "user1", wrongKey(t)))
	wantAccess(t, e.access(e.from("10.0.1.2", "user1", e.keys["user1"])), access("image", "pull"))
	wantAccess(t, e.access(e.from("10.0.0.1", "user1", e.keys["user1"])), access("image", "pull"))
}

// TestRefreshTokenGuessesCount: forged refresh tokens spend the address's budget too.
func TestRefreshTokenGuessesCount(t *testing.T) {
	e, _ := throttledEnv(t)
	post := func() result {
		r := formRequest(refreshForm("rrt_forged.sig", "docker", "repository:image:pull"))
		r.RemoteAddr = "203.0.113.9:1"
		return e.do(r)
	}
	for range 5 {
		if res := post(); res.status != http.StatusUnauthorized {
			t.Fatalf("HTTP %d", res.status)
		}
	}
	wantTooMany(t, post())
}
