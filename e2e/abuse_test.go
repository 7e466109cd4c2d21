package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
)

// from is an HTTP client whose connections leave from the loopback address ip (127.0.0.0/8 is
// all loopback), so that one test can be clients at several addresses.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return d.DialContext(ctx, "tcp4", "127.0.0.1:"+port)
		},
	}}
}

// tokenFrom asks for scope as user with key, from client; it fails the test on a transport
// error or an answer that is not JSON.
func tokenFrom(t *testing.T, s *server, client *http.Client, user, key, scope string) tokenResponse {
	t.Helper()
	r := s.token(tokenRequest{user: user, key: key, scopes: []string{scope}, client: client})
	if r.err != nil {
		t.Fatalf("token request as %s: HTTP %d %v", user, r.status, r.err)
	}
	return r
}

// wantThrottled checks a 429 in the registry error format, without a token.
func wantThrottled(t *testing.T, r tokenResponse, what string) {
	t.Helper()
	errs, _ := r.body["errors"].([]any)
	if r.status != http.StatusTooManyRequests || len(errs) != 1 || errs[0].(map[string]any)["code"] != "TOOMANYREQUESTS" ||
		r.body["token"] != nil {
		t.Fatalf("%s: want a 429 in the registry error format, got HTTP %d %s", what, r.status, r.raw)
	}
}

// retryAfter asks once more and returns the Retry-After of the (429) answer.
func retryAfter(t *testing.T, s *server, client *http.Client, user, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", s.realm()+"?scope=repository:image:pull&service="+s.Services[0], nil)
	req.SetBasicAuth(user, key)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || err != nil || n < 1 {
		t.Fatalf("HTTP %d with Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	return n
}

func randomKey(t *testing.T) string {
	plain, _, _, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

// TestServeThrottlesBruteForce runs `regoauth serve` with failure budgets of 40 per address and
// 10 per (account, address), refilled one a minute: wrong keys from one address are 401 until
// the budget is spent, then 429 with Retry-After and the registry error format, for the right
// key too, at no cost to the store; the same key from another address works throughout.
// Guessing one account from one address trips the tighter budget first, and locks neither the
// account elsewhere nor other accounts there.
func TestServeThrottlesBruteForce(t *testing.T) {
	s := startServer(t, serveConfig{extra: `limits:
  auth_failures:
    address: {burst: 40, every: 1m}
    account_address: {burst: 10, every: 1m}`})
	keys := map[string]string{}
	for _, name := range []string{"user1", "user2"} {
		keys[name] = s.account(t, name)
		s.admin(t, "grants", "add", "--account", name, "--repo", "image", "--actions", "pull")
	}
	attacker, victim, third := from("127.0.0.2"), from("127.0.0.3"), from("127.0.0.4")
	const scope = "repository:image:pull"
	good := func(c *http.Client, user, what string) {
		t.Helper()
		if r := tokenFrom(t, s, c, user, keys[user], scope); r.status != http.StatusOK || len(r.access["repository:image"]) != 1 {
			t.Fatalf("%s: HTTP %d %s", what, r.status, r.raw)
		}
	}
	mark := s.mark()

	for i := range 40 {
		if r := tokenFrom(t, s, attacker, fmt.Sprintf("guess%d", i), randomKey(t), scope); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: HTTP %d %s", i+1, r.status, r.raw)
		}
		if i%10 == 0 {
			good(victim, "user1", "the right key from another address during the burst")
		}
	}
	wantThrottled(t, tokenFrom(t, s, attacker, "guess40", randomKey(t), scope), "the 41st wrong key")
	wantThrottled(t, tokenFrom(t, s, attacker, "user1", keys["user1"], scope), "the right key from the attacker's address")
	if n := retryAfter(t, s, attacker, "user1", keys["user1"]); n > 60 {
		t.Fatalf("Retry-After %d for a budget refilled one a minute", n)
	}
	good(victim, "user1", "the right key from another address after the burst")

	// One account guessed from one address.
	for i := range 10 {
		if r := tokenFrom(t, s, third, "user1", randomKey(t), scope); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d for user1: HTTP %d", i+1, r.status)
		}
	}
	wantThrottled(t, tokenFrom(t, s, third, "user1", keys["user1"], scope), "user1's key after 10 guesses from its address")
	good(third, "user2", "another account from that address")
	good(victim, "user1", "user1 from elsewhere")

	if n := s.metric(t, "regoauth_auth_throttled_total", `by="address"`); n < 3 {
		t.Fatalf("regoauth_auth_throttled_total{by=address} = %v", n)
	}
	if n := s.metric(t, "regoauth_auth_throttled_total", `by="account_address"`); n < 1 {
		t.Fatalf("regoauth_auth_throttled_total{by=account_address} = %v", n)
	}
	if n := s.metric(t, "regoauth_token_requests_total", `outcome="throttled"`, `code="429"`); n < 4 {
		t.Fatalf("regoauth_token_requests_total{outcome=throttled} = %v", n)
	}
	throttled := 0
	for _, rec := range s.audit(mark) {
		if rec["outcome"] == "throttled" {
			throttled++
			if rec["client_ip"] != "127.0.0.2" && rec["client_ip"] != "127.0.0.4" {
				t.Fatalf("a throttled request from %v", rec["client_ip"])
			}
		}
	}
	if throttled < 4 {
		t.Fatalf("%d audit events with outcome throttled", throttled)
	}
}

// TestServeDefaultLimitsTolerateAFleet: with the default budgets, 200 failures at once from one
// address (a CI farm's NAT after a key rotation) are all answered 401, none 429.
func TestServeDefaultLimitsTolerateAFleet(t *testing.T) {
	s := startServer(t, serveConfig{})
	nat := from("127.0.0.5")
	for i := range 200 {
		if r := tokenFrom(t, s, nat, fmt.Sprintf("job%d", i%50), randomKey(t), "repository:image:pull"); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d from one address: HTTP %d %s", i+1, r.status, r.raw)
		}
	}
}

// TestRedisReplicasShareFailureBudgets runs two `regoauth serve` replicas on one real
// redis-server with a budget of 10 failures per address: failures sent to both spend one
// budget, after which both refuse that address within a second, and both still serve the right
// key from another address.
func TestRedisReplicasShareFailureBudgets(t *testing.T) {
	storeURL := redistest.Start(t).URL() + "?prefix=budgets"
	const limits = "limits: {auth_failures: {address: {burst: 10, every: 1m}, account_address: {burst: 100, every: 1m}}}"
	a := startServer(t, serveConfig{storeURL: storeURL, cache: redisCache, extra: limits})
	b := startServer(t, serveConfig{storeURL: storeURL, cache: redisCache, extra: limits, keyFile: a.keyFile, certFile: a.certFile, noAdmin: true})
	key := a.account(t, "user1")
	a.admin(t, "grants", "add", "--account", "user1", "--repo", "image", "--actions", "pull")

	attacker, user := from("127.0.0.6"), from("127.0.0.7")
	const scope = "repository:image:pull"
	for i := range 10 {
		if r := tokenFrom(t, []*server{a, b}[i%2], attacker, "user1", randomKey(t), scope); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: HTTP %d %s", i+1, r.status, r.raw)
		}
	}
	for name, s := range map[string]*server{"A": a, "B": b} {
		took := eventually(t, time.Second, "replica "+name+" refusing the address", func() bool {
			return tokenFrom(t, s, attacker, "user1", key, scope).status == http.StatusTooManyRequests
		})
		wantThrottled(t, tokenFrom(t, s, attacker, "user1", key, scope), "replica "+name)
		if r := tokenFrom(t, s, user, "user1", key, scope); r.status != http.StatusOK || len(r.access["repository:image"]) != 1 {
			t.Fatalf("replica %s, the right key from another address: HTTP %d %s", name, r.status, r.raw)
		}
		if n := s.metric(t, "regoauth_auth_throttled_total", `by="address"`); n < 1 {
			t.Fatalf("replica %s: regoauth_auth_throttled_total{by=address} = %v", name, n)
		}
		t.Logf("replica %s refused the address %s after the 10th failure", name, took.Round(time.Millisecond))
	}
}

// lookupsOf counts the scripts Redis ran on the key record of id (each principal lookup is
// one), from its slow log set to record every command.
func lookupsOf(t *testing.T, c *redis.Client, id string) int {
	t.Helper()
	entries, err := c.SlowLogGet(context.Background(), -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if len(e.Args) < 4 || !strings.HasPrefix(strings.ToLower(e.Args[0]), "eval") {
			continue // the commands a script runs are logged too
		}
		if strings.HasSuffix(e.Args[3], "}:k:"+id) {
			n++
		}
	}
	return n
}

// importRecords writes records to the store at storeURL with `regoauth import`, as an operator
// restoring a backup does.
func importRecords(t *testing.T, storeURL string, recs ...keystore.Record) {
	t.Helper()
	var in bytes.Buffer
	if err := keystore.WriteExport(&in, recs); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, filepath.Join(t.TempDir(), "records.jsonl"), in.String(), 0o600)
	must(t, []string{"REGOAUTH_STORE_URL=" + storeURL}, binary, "import", file)
}

// TestRedisUnknownKeyCostsOneLookup: a client repeating a key id that does not exist costs one
// lookup in Redis per negative-cache window (Redis's own log of commands shows it); when a key
// with that id is then created (here by `regoauth import`, as in a restore), the replica
// serves it within a second.
func TestRedisUnknownKeyCostsOneLookup(t *testing.T) {
	srv := redistest.Start(t)
	storeURL := srv.URL() + "?prefix=negative"
	s := startServer(t, serveConfig{storeURL: storeURL, cache: "{ttl: 1m, size: 1000, negative_ttl: 1m}"})
	s.admin(t, "accounts", "create", "late")
	s.admin(t, "grants", "add", "--account", "late", "--repo", "image", "--actions", "pull")

	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := srv.Client()
	ctx := context.Background()
	if err := raw.ConfigSet(ctx, "slowlog-log-slower-than", "0").Err(); err != nil {
		t.Fatal(err)
	}
	raw.ConfigSet(ctx, "slowlog-max-len", "100000")
	raw.SlowLogReset(ctx)
	client := from("127.0.0.8")
	for range 25 {
		if r := tokenFrom(t, s, client, "late", plain, "repository:image:pull"); r.status != http.StatusUnauthorized {
			t.Fatalf("a key that does not exist yet: HTTP %d %s", r.status, r.raw)
		}
	}
	if n := lookupsOf(t, raw, id); n != 1 {
		t.Fatalf("25 requests with one unknown key made %d lookups of it in Redis, want 1", n)
	}
	if n := s.metric(t, "regoauth_store_cache_lookups_total", `result="negative_hit"`); n < 24 {
		t.Fatalf("regoauth_store_cache_lookups_total{result=negative_hit} = %v", n)
	}

	importRecords(t, storeURL, keystore.Record{Key: &keystore.Key{ID: id, Account: "late", Name: "restored", Hash: hash, Created: time.Now().UTC().Truncate(time.Second)}})
	took := eventually(t, time.Second, "the replica serving the restored key", func() bool {
		return tokenFrom(t, s, client, "late", plain, "repository:image:pull").status == http.StatusOK
	})
	if got := s.actions(t, "late", plain, "repository:image:pull"); len(got) != 1 {
		t.Fatalf("the restored key grants %v", got)
	}
	t.Logf("the replica served the restored key %s after the import", took.Round(time.Millisecond))
}
