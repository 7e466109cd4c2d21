package admin_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/internal/testenv"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
	"github.com/regoauth/regoauth/throttle"
)

// TestAdminBruteForceIsThrottled: the admin API spends the same failure budgets as the token
// endpoint, so guessing keys there is no way around them; the right key from another address
// keeps working.
func TestAdminBruteForceIsThrottled(t *testing.T) {
	// The requests come through a trusted proxy (httptest's peer, 192.0.2.1), which names the
	// client in X-Forwarded-For: the budgets are the client's, as on the token endpoint.
	store, api := throttledAPI(t, throttle.Limits{Address: throttle.Limit{Burst: 4, Every: time.Minute}, AccountAddress: throttle.Limit{Burst: 2, Every: time.Minute}},
		admin.Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err := store.CreateAccount(ctx, keystore.Account{Name: "admin", Roles: []string{"admin"}}); err != nil {
		t.Fatal(err)
	}
	plain, id, hash, _ := keystore.NewAPIKey(rand.Reader)
	if err := store.CreateKey(ctx, keystore.Key{ID: id, Account: "admin", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	call := func(client, user, key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", admin.Prefix+"/whoami", nil)
		r.Header.Set("X-Forwarded-For", client)
		if user != "" {
			r.SetBasicAuth(user, key)
		} else {
			r.Header.Set("Authorization", "Bearer "+key)
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		return w
	}
	wrong, _, _, _ := keystore.NewAPIKey(rand.Reader)
	for range 2 {
		if w := call("203.0.113.1", "admin", wrong); w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong key: %d", w.Code)
		}
	}
	w := call("203.0.113.1", "admin", plain)
	var body map[string]any
	json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || body["code"] != "too_many_requests" {
		t.Fatalf("after the (account, address) budget: %d %v %s", w.Code, w.Header(), w.Body)
	}
	// Bearer keys name no account: they spend the address's budget.
	for range 2 {
		if w := call("203.0.113.1", "", wrong); w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong bearer key: %d", w.Code)
		}
	}
	if w := call("203.0.113.1", "", plain); w.Code != http.StatusTooManyRequests {
		t.Fatalf("after the address budget: %d %s", w.Code, w.Body)
	}
	if w := call("198.51.100.1", "admin", plain); w.Code != http.StatusOK {
		t.Fatalf("the right key from another address: %d %s", w.Code, w.Body)
	}
}

// TestBearerGuessesAtAKnownKeyHaveABudget: a Bearer key names no account, but its id names
// the key (ids are in logs and listings). Guesses at the secret of a key whose id is known
// spend that key's budgets at the address and from anywhere, as Basic guesses spend the
// account's: an address does not get its whole address budget of guesses at one key.
func TestBearerGuessesAtAKnownKeyHaveABudget(t *testing.T) {
	store, api := throttledAPI(t, throttle.Limits{Address: throttle.Limit{Burst: 100, Every: time.Minute}, AccountAddress: throttle.Limit{Burst: 2, Every: time.Minute}}, admin.Options{})
	for _, a := range []string{"admin", "other"} {
		if err := store.CreateAccount(ctx, keystore.Account{Name: a, Roles: []string{"admin"}}); err != nil {
			t.Fatal(err)
		}
	}
	newKey := func(account string) (plain, id string) {
		plain, id, hash, _ := keystore.NewAPIKey(rand.Reader)
		if err := store.CreateKey(ctx, keystore.Key{ID: id, Account: account, Hash: hash}); err != nil {
			t.Fatal(err)
		}
		return plain, id
	}
	plain, id := newKey("admin")
	otherKey, _ := newKey("other")
	// A guess at the secret of the key whose id is known.
	guess := func() string {
		wrong, _, _, _ := keystore.NewAPIKey(rand.Reader)
		n := len("rak_") + len(id) + 1 // rak_ID_
		return plain[:n] + wrong[n:]
	}
	bearer := func(key string) int {
		r := httptest.NewRequest("GET", admin.Prefix+"/whoami", nil)
		r.RemoteAddr = "203.0.113.40:1"
		r.Header.Set("Authorization", "Bearer "+key)
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		return w.Code
	}
	for range 2 {
		if code := bearer(guess()); code != http.StatusUnauthorized {
			t.Fatalf("guess: %d", code)
		}
	}
	checked := 0
	for range 10 {
		if bearer(guess()) != http.StatusTooManyRequests {
			checked++
		}
	}
	if checked > 0 {
		t.Fatalf("%d more guesses at the key were checked after its budget at the address was spent", checked)
	}
	if code := bearer(plain); code != http.StatusTooManyRequests {
		t.Fatalf("the right key from the address whose guesses spent its budget: %d, want 429 (answering would tell the guess right)", code)
	}
	if code := bearer(otherKey); code != http.StatusOK {
		t.Fatalf("another key from the same address: %d, want 200", code)
	}
}

// throttledAPI is the admin API over a new bolt store and the built-in library, spending
// in-memory failure budgets of limits.
func throttledAPI(t *testing.T, limits throttle.Limits, opts admin.Options) (*boltstore.Store, *admin.API) {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	engine := policy.New(policy.Options{})
	if err := engine.LoadFS(ctx, policies.FS, "default"); err != nil {
		t.Fatal(err)
	}
	guard := throttle.NewGuard(throttle.NewMemory(1000, limits.Refill(), nil), limits, nil, nil)
	api, err := admin.New(admin.Deps{Store: store, Authorizer: engine, Throttle: guard}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return store, api
}

// heldStore makes the key check slow: every principal lookup waits until let is closed.
type heldStore struct {
	*boltstore.Store
	let   chan struct{}
	began atomic.Int64
}

func (s *heldStore) LoadPrincipal(ctx context.Context, id string) (keystore.Principal, error) {
	s.began.Add(1)
	<-s.let
	return s.Store.LoadPrincipal(ctx, id)
}

// TestConcurrentGuessesAtTheAdminAPIAreBounded: guesses sent at once, Bearer ones at the secret
// of a known key id and Basic ones at an account, are checked against the budget with those
// still in flight counted as spent: no more reach the key check than the key's (or account's)
// budget at the address holds, and the others are answered 429 with its Retry-After once those
// failed. Before, every one of them was checked.
func TestConcurrentGuessesAtTheAdminAPIAreBounded(t *testing.T) {
	const atOnce, budget = 12, 2
	limits := throttle.Limits{Address: throttle.Limit{Burst: 100, Every: time.Minute}, AccountAddress: throttle.Limit{Burst: budget, Every: time.Minute}}
	for _, basic := range []bool{false, true} {
		t.Run(map[bool]string{false: "bearer", true: "basic"}[basic], func(t *testing.T) {
			bolt, err := boltstore.Open(filepath.Join(t.TempDir(), "store.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bolt.Close() })
			if err := bolt.CreateAccount(ctx, keystore.Account{Name: "admin", Roles: []string{"admin"}}); err != nil {
				t.Fatal(err)
			}
			plain, id, hash, _ := keystore.NewAPIKey(rand.Reader)
			if err := bolt.CreateKey(ctx, keystore.Key{ID: id, Account: "admin", Hash: hash}); err != nil {
				t.Fatal(err)
			}
			store := &heldStore{Store: bolt, let: make(chan struct{})}
			engine := policy.New(policy.Options{})
			if err := engine.LoadFS(ctx, policies.FS, "default"); err != nil {
				t.Fatal(err)
			}
			guard := throttle.NewGuard(throttle.NewMemory(1000, limits.Refill(), nil), limits, nil, nil)
			api, err := admin.New(admin.Deps{Store: store, Authorizer: engine, Throttle: guard}, admin.Options{})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(api)
			t.Cleanup(srv.Close)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: atOnce}}
			t.Cleanup(client.CloseIdleConnections)

			attempts := make([]func() (int, string), atOnce)
			for i := range attempts {
				attempts[i] = func() (int, string) {
					wrong, _, _, _ := keystore.NewAPIKey(rand.Reader)
					n := len("rak_") + len(id) + 1 // rak_ID_
					guess := plain[:n] + wrong[n:]
					r, _ := http.NewRequest("GET", srv.URL+admin.Prefix+"/whoami", nil)
					if basic {
						r.SetBasicAuth("admin", guess)
					} else {
						r.Header.Set("Authorization", "Bearer "+guess)
					}
					resp, err := client.Do(r)
					if err != nil {
						t.Error(err)
						return 0, ""
					}
					resp.Body.Close()
					return resp.StatusCode, resp.Header.Get("Retry-After")
				}
			}
			testenv.Burst(t, budget, store.began.Load, func() { close(store.let) }, attempts)
		})
	}
}
