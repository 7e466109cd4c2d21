package admin_test

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/regoauth/regoauth/admin"
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
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	engine := policy.New(policy.Options{})
	if err := engine.LoadFS(ctx, policies.FS, "default"); err != nil {
		t.Fatal(err)
	}
	limits := throttle.Limits{Address: throttle.Limit{Burst: 4, Every: time.Minute}, AccountAddress: throttle.Limit{Burst: 2, Every: time.Minute}}
	guard := throttle.NewGuard(throttle.NewMemory(100, limits.Refill(), nil), limits, nil, nil)
	// The requests come through a trusted proxy (httptest's peer, 192.0.2.1), which names the
	// client in X-Forwarded-For: the budgets are the client's, as on the token endpoint.
	api, err := admin.New(admin.Deps{Store: store, Authorizer: engine, Throttle: guard},
		admin.Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
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
