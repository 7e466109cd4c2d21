package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
)

// redisCache keeps principals for a minute, so that only invalidation can explain a replica
// noticing a change within a second.
const redisCache = "{ttl: 1m, size: 1000}"

// twoReplicas runs two `regoauth serve` replicas sharing one new redis-server (under prefix),
// one signing key and one refresh token secret. The admin's key is a's.
func twoReplicas(t *testing.T, prefix string) (a, b *server) {
	t.Helper()
	storeURL := redistest.Start(t).URL() + "?prefix=" + prefix
	a = startServer(t, serveConfig{storeURL: storeURL, cache: redisCache, x5c: true})
	b = startServer(t, serveConfig{storeURL: storeURL, cache: redisCache, x5c: true, keyFile: a.keyFile, certFile: a.certFile, noAdmin: true})
	b.AdminKey = a.AdminKey
	return a, b
}

// TestRedisReplicasSeeChangesWithinASecond runs two `regoauth serve` replicas on one real
// redis-server, each caching principals for a minute. A key revoked, an account disabled or a
// grant removed through replica A is refused by replica B within one second; before each change
// B is shown to answer from its cache. How long B took is logged as a measurement.
func TestRedisReplicasSeeChangesWithinASecond(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t, "replicas")
	for _, tt := range []struct {
		name   string
		change func(t *testing.T, account, key string)
		// refused reports whether replica B's answer reflects the change.
		refused func(r tokenResponse) bool
	}{
		{"revoke the key", func(t *testing.T, account, key string) {
			id, _ := keystore.ParseAPIKey(key)
			a.admin(t, "keys", "revoke", id)
		}, func(r tokenResponse) bool { return r.status == http.StatusUnauthorized }},
		{"disable the account", func(t *testing.T, account, key string) {
			a.admin(t, "accounts", "disable", account)
		}, func(r tokenResponse) bool { return r.status == http.StatusUnauthorized }},
		{"remove the grant", func(t *testing.T, account, key string) {
			a.admin(t, "grants", "remove", "--account", account, "--repo", "shop/app")
		}, func(r tokenResponse) bool {
			return r.status == http.StatusOK && r.err == nil && len(r.access["repository:shop/app"]) == 0
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			account := fmt.Sprintf("user%d", time.Now().UnixNano()%1e9)
			key := a.account(t, account)
			a.admin(t, "grants", "add", "--account", account, "--repo", "shop/app", "--actions", "pull")
			time.Sleep(100 * time.Millisecond) // let the setup's own invalidations reach B
			hits := b.metric(t, "regoauth_store_cache_lookups_total", `result="hit"`)
			for range 3 {
				if got := b.actions(t, account, key, "repository:shop/app:pull"); !slices.Equal(got, []string{"pull"}) {
					t.Fatalf("before the change, replica B granted %v", got)
				}
			}
			if got := b.metric(t, "regoauth_store_cache_lookups_total", `result="hit"`); got < hits+2 {
				t.Fatalf("replica B cache hits went from %v to %v: it is not answering from its cache", hits, got)
			}
			tt.change(t, account, key)
			req := tokenRequest{user: account, key: key, scopes: []string{"repository:shop/app:pull"}}
			took := eventually(t, time.Second, "replica B refusing after "+tt.name, func() bool { return tt.refused(b.token(req)) })
			t.Logf("measured: replica B refused %s after the change through replica A", took.Round(time.Millisecond))
		})
	}
}

// TestRedisDownFailsClosed stops the redis-server under a running `regoauth serve`: token
// requests get a 503 JSON error and never a token, /readyz and the metrics say why, the log
// names the cause once. A second server started during the outage starts not ready and refuses
// tokens. When Redis comes back, both become ready by themselves (no request brings them back)
// and serve tokens without a restart.
func TestRedisDownFailsClosed(t *testing.T) {
	t.Parallel()
	redis := redistest.Start(t)
	storeURL := redis.URL() + "?prefix=down"
	s := startServer(t, serveConfig{storeURL: storeURL, x5c: true})
	key := s.account(t, "user1")
	s.admin(t, "grants", "add", "--account", "user1", "--repo", "image", "--actions", "pull")
	req := tokenRequest{user: "user1", key: key, scopes: []string{"repository:image:pull"}}
	for range 2 { // the second answer comes from the cache
		if got := s.actions(t, "user1", key, "repository:image:pull"); len(got) != 1 {
			t.Fatalf("before the outage: %v", got)
		}
	}

	redis.Stop()
	eventually(t, time.Second, "503 after Redis stopped", func() bool { return s.token(req).status == http.StatusServiceUnavailable })
	failsClosed := func(t *testing.T, s *server) {
		t.Helper()
		for range 5 {
			r := s.token(req)
			errs, _ := r.body["errors"].([]any)
			if r.status != http.StatusServiceUnavailable || r.body["token"] != nil || r.body["access_token"] != nil || len(errs) != 1 ||
				errs[0].(map[string]any)["code"] != "UNAVAILABLE" {
				t.Fatalf("during the outage: HTTP %d %s", r.status, r.raw)
			}
		}
		if code, body := s.readyz(); code != http.StatusServiceUnavailable || body["store"] != "unreachable" {
			t.Fatalf("/readyz during the outage: %d %v", code, body)
		}
		if up := s.metric(t, "regoauth_store_up"); up != 0 {
			t.Fatalf("regoauth_store_up = %v during the outage", up)
		}
	}
	failsClosed(t, s)
	if n := s.metric(t, "regoauth_token_requests_total", `outcome="unavailable"`); n < 6 {
		t.Fatalf("regoauth_token_requests_total{outcome=unavailable} = %v", n)
	}
	if n := s.metric(t, "regoauth_store_unavailable_total"); n < 6 {
		t.Fatalf("regoauth_store_unavailable_total = %v", n)
	}
	if logs := s.logs(); strings.Count(logs, "redis store unreachable") != 1 || !strings.Contains(logs, "connection refused") {
		t.Fatalf("want the outage logged once with its cause:\n%s", logs)
	}

	// A server started now starts, not ready, and refuses tokens.
	late := startServer(t, serveConfig{storeURL: storeURL, x5c: true, keyFile: s.keyFile, certFile: s.certFile, noAdmin: true, anyReadiness: true})
	failsClosed(t, late)

	redis.Restart()
	// Ready again before any token request: behind a load balancer a server that is not ready
	// gets no requests, so only its own checks can find Redis back.
	for _, srv := range []*server{s, late} {
		eventually(t, 10*time.Second, "/readyz after Redis returned, with no token request", func() bool { code, _ := srv.readyz(); return code == http.StatusOK })
	}
	for _, srv := range []*server{s, late} {
		eventually(t, 10*time.Second, "tokens after Redis returned", func() bool { return srv.token(req).status == http.StatusOK })
		if got := srv.actions(t, "user1", key, "repository:image:pull"); len(got) != 1 {
			t.Fatalf("after recovery: %v", got)
		}
		if up := srv.metric(t, "regoauth_store_up"); up != 1 {
			t.Fatalf("regoauth_store_up = %v after recovery", up)
		}
		if !strings.Contains(srv.logs(), "redis store reachable again") {
			t.Fatal("the recovery was not logged")
		}
	}
}

// TestRedisSelfService is the marketplace lifecycle through the CLI against a Redis-backed
// server: an admin reserves a repository for a seller, the seller sells pull on it to a buyer
// and takes it back, and the buyer manages its own keys — none of them with admin rights.
func TestRedisSelfService(t *testing.T) {
	t.Parallel()
	s := startServer(t, serveConfig{storeURL: redistest.Start(t).URL() + "?prefix=market", x5c: true})
	seller, buyer := s.account(t, "seller"), s.account(t, "buyer")
	s.admin(t, "repos", "reserve", "shop/app", "--owner", "seller")

	pull := func(key string) []string { return s.actions(t, "buyer", key, "repository:shop/app:pull") }
	if got := s.actions(t, "seller", seller, "repository:shop/app:push,pull,delete"); strings.Join(got, ",") != "delete,pull,push" {
		t.Fatalf("the owner holds %v on its reservation", got)
	}
	if got := pull(buyer); len(got) != 0 {
		t.Fatalf("buyer holds %v before buying", got)
	}

	for _, tt := range []struct {
		name string
		key  string
		args []string
		want string // "" means success
	}{
		{"owner sells pull", seller, []string{"grants", "add", "--account", "buyer", "--repo", "shop/app", "--actions", "pull"}, ""},
		{"owner may not sell push", seller, []string{"grants", "add", "--account", "buyer", "--repo", "shop/app", "--actions", "push"}, "forbidden"},
		{"buyer may not resell", buyer, []string{"grants", "add", "--account", "seller", "--repo", "shop/app", "--actions", "pull"}, "forbidden"},
		{"buyer lists its keys", buyer, []string{"keys", "list", "--account", "buyer"}, ""},
		{"buyer may not list the seller's keys", buyer, []string{"keys", "list", "--account", "seller"}, "forbidden"},
		{"buyer may not make keys for the seller", buyer, []string{"keys", "create", "--account", "seller"}, "forbidden"},
		{"owner lists grants on its repository", seller, []string{"grants", "list", "--repo", "shop/app"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, s.cliEnv(tt.key), binary, tt.args...)
			if tt.want == "" && res.code != 0 || tt.want != "" && (res.code == 0 || !strings.Contains(res.out, tt.want)) {
				t.Fatalf("exit %d:\n%s\nwant %q", res.code, res.out, tt.want)
			}
		})
	}
	if got := pull(buyer); len(got) != 1 || got[0] != "pull" {
		t.Fatalf("after the purchase the buyer holds %v", got)
	}
	if got := s.actions(t, "buyer", buyer, "repository:shop/app:push"); len(got) != 0 {
		t.Fatalf("the buyer may push: %v", got)
	}

	// The buyer makes a second key, sees it listed without its secret, revokes it.
	second := strings.TrimSpace(s.cli(t, buyer, "keys", "create", "--name", "ci"))
	id, _ := keystore.ParseAPIKey(second)
	list := s.cli(t, buyer, "keys", "list", "--account", "buyer", "-o", "json")
	if !strings.Contains(list, id) || strings.Contains(list, second) || strings.Contains(list, `"hash"`) {
		t.Fatalf("keys list:\n%s", list)
	}
	if got := pull(second); len(got) != 1 {
		t.Fatalf("the second key holds %v", got)
	}
	s.cli(t, buyer, "keys", "revoke", id)
	if r := s.token(tokenRequest{user: "buyer", key: second, scopes: []string{"repository:shop/app:pull"}}); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked key: HTTP %d", r.status)
	}

	// The seller takes the sale back; the reservation shows in the listing.
	s.cli(t, seller, "grants", "remove", "--account", "buyer", "--repo", "shop/app", "--actions", "pull")
	if got := pull(buyer); len(got) != 0 {
		t.Fatalf("after the refund the buyer holds %v", got)
	}
	if out := s.cli(t, seller, "repos", "list", "--owner", "seller"); !strings.Contains(out, "shop/app") {
		t.Fatalf("repos list:\n%s", out)
	}
}

// TestRedisReplicasRefreshTokenRevocation: a refresh token obtained from one replica works on
// another, and revoking its key through the first kills it on the second within a second.
func TestRedisReplicasRefreshTokenRevocation(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t, "refresh")
	key := a.account(t, "buyer")
	a.admin(t, "grants", "add", "--account", "buyer", "--repo", "shop/app", "--actions", "pull")

	refreshToken := a.token(tokenRequest{user: "buyer", key: key, offline: true}).refreshToken
	if refreshToken == "" {
		t.Fatal("replica A issued no refresh token")
	}
	req := tokenRequest{refresh: refreshToken, scopes: []string{"repository:shop/app:pull"}}
	for range 3 {
		if r := b.token(req); r.err != nil || !slices.Equal(r.access["repository:shop/app"], []string{"pull"}) {
			t.Fatalf("replica B's token from the refresh token: HTTP %d %v %v", r.status, r.err, r.access)
		}
	}
	id, _ := keystore.ParseAPIKey(key)
	a.admin(t, "keys", "revoke", id)
	took := eventually(t, time.Second, "replica B refusing the refresh token of a revoked key", func() bool {
		return b.token(req).status == http.StatusUnauthorized
	})
	t.Logf("measured: replica B refused the refresh token %s after the revocation through replica A", took.Round(time.Millisecond))
}
