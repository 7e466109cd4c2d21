package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
)

// configured is a `regoauth serve` configured with the usual header (issuer, service
// registry.test, a free listener, the shared signing files), the store at storeURL, and the
// test's own sections in extra. It is started by start, after the test has seeded the store.
func configured(t *testing.T, storeURL, keyFile, certFile, extra string) *redisServe {
	t.Helper()
	s := &redisServe{Token: freeAddr(t), dir: t.TempDir()}
	cfg := fmt.Sprintf(`issuer: regoauth
services: [%s]
listen: {addr: %q}
signing: {key_file: %q, cert_file: %q}
refresh_tokens: {secrets: [{file: %q}]}
store:
  url: {env: TEST_STORE_URL}
  cache: {ttl: 1m, size: 1000, negative_ttl: 1m}
log: {format: json, level: info}
%s
`, redisService, s.Token, keyFile, certFile, filepath.Join(filepath.Dir(keyFile), "refresh-secret"), extra)
	if err := os.WriteFile(s.config(), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"TEST_STORE_URL=" + storeURL}
	if strings.HasPrefix(storeURL, "redis") {
		must(t, env, binary, "serve", "--config", s.config(), "--check-config")
	}
	return s
}

func (s *redisServe) config() string { return filepath.Join(s.dir, "regoauth.yaml") }

// start runs the server and waits until it is ready.
func (s *redisServe) start(t *testing.T, storeURL string) *redisServe {
	t.Helper()
	s.proc = startProcessEnv(t, "regoauth serve "+s.Token, []string{"TEST_STORE_URL=" + storeURL}, binary, "serve", "--config", s.config())
	s.proc.waitFor(t, "readiness", func() bool { return ready(s.Token) })
	return s
}

// bootstrap creates the admin account of a bolt store before the server holds the file.
func (s *redisServe) bootstrap(t *testing.T, storeURL string) string {
	t.Helper()
	return strings.TrimSpace(must(t, []string{"TEST_STORE_URL=" + storeURL}, binary, "bootstrap", "--config", s.config()))
}

// from is an HTTP client whose connections leave from the loopback address ip (127.0.0.0/8 is
// all loopback), so that one test can be several clients.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return d.DialContext(ctx, "tcp4", "127.0.0.1:"+port)
		},
	}}
}

// answer is one token response as a client sees it.
type answer struct {
	status     int
	retryAfter string
	body       map[string]any
	raw        string
}

func tokenFrom(t *testing.T, c *http.Client, addr, user, key, scope string) answer {
	t.Helper()
	q := url.Values{"service": {redisService}, "scope": {scope}}
	req, _ := http.NewRequest("GET", "http://"+addr+"/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, key)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), raw: string(raw)}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("HTTP %d with a body that is not JSON: %s", resp.StatusCode, raw)
	}
	return a
}

// wantThrottled checks a 429 in the registry error format, with Retry-After.
func wantThrottled(t *testing.T, a answer, what string) {
	t.Helper()
	errs, _ := a.body["errors"].([]any)
	if a.status != http.StatusTooManyRequests || len(errs) != 1 || errs[0].(map[string]any)["code"] != "TOOMANYREQUESTS" ||
		a.body["token"] != nil {
		t.Fatalf("%s: want a 429 in the registry error format, got HTTP %d %s", what, a.status, a.raw)
	}
	if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 {
		t.Fatalf("%s: Retry-After = %q", what, a.retryAfter)
	}
}

func wrongKey(t *testing.T) string {
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
// account elsewhere nor other accounts there. The admin API spends the same budgets.
func TestServeThrottlesBruteForce(t *testing.T) {
	keyFile, certFile := signingFiles(t)
	storeURL := "bolt://" + filepath.Join(t.TempDir(), "store.db")
	s := configured(t, storeURL, keyFile, certFile, `limits:
  auth_failures:
    address: {burst: 40, every: 1m}
    account_address: {burst: 10, every: 1m}
`)
	adminKey := s.bootstrap(t, storeURL)
	s.start(t, storeURL)
	keys := map[string]string{}
	for _, name := range []string{"user1", "user2"} {
		s.cli(t, adminKey, "accounts", "create", name)
		keys[name] = strings.TrimSpace(s.cli(t, adminKey, "keys", "create", "--account", name))
		s.cli(t, adminKey, "grants", "add", "--account", name, "--repo", "image", "--actions", "pull")
	}
	attacker, victim, third := from("127.0.0.2"), from("127.0.0.3"), from("127.0.0.4")
	const scope = "repository:image:pull"
	good := func(c *http.Client, user, what string) {
		t.Helper()
		if a := tokenFrom(t, c, s.Token, user, keys[user], scope); a.status != http.StatusOK || !strings.Contains(a.raw, `"token"`) {
			t.Fatalf("%s: HTTP %d %s", what, a.status, a.raw)
		}
	}

	for i := range 40 {
		if a := tokenFrom(t, attacker, s.Token, fmt.Sprintf("guess%d", i), wrongKey(t), scope); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: HTTP %d %s", i+1, a.status, a.raw)
		}
		if i%10 == 0 {
			good(victim, "user1", "the right key from another address during the burst")
		}
	}
	wantThrottled(t, tokenFrom(t, attacker, s.Token, "guess40", wrongKey(t), scope), "the 41st wrong key")
	wantThrottled(t, tokenFrom(t, attacker, s.Token, "user1", keys["user1"], scope), "the right key from the attacker's address")
	good(victim, "user1", "the right key from another address after the burst")

	// One account guessed from one address.
	for i := range 10 {
		if a := tokenFrom(t, third, s.Token, "user1", wrongKey(t), scope); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d for user1: HTTP %d", i+1, a.status)
		}
	}
	wantThrottled(t, tokenFrom(t, third, s.Token, "user1", keys["user1"], scope), "user1's key after 10 guesses from its address")
	good(third, "user2", "another account from that address")
	good(victim, "user1", "user1 from elsewhere")

	if n := s.metric(t, "regoauth_auth_throttled_total", `by="address"`); n < 2 {
		t.Fatalf("regoauth_auth_throttled_total{by=address} = %v", n)
	}
	if n := s.metric(t, "regoauth_auth_throttled_total", `by="account_address"`); n < 1 {
		t.Fatalf("regoauth_auth_throttled_total{by=account_address} = %v", n)
	}
	if n := s.metric(t, "regoauth_token_requests_total", `outcome="throttled"`, `code="429"`); n < 3 {
		t.Fatalf("regoauth_token_requests_total{outcome=throttled} = %v", n)
	}
	throttled := 0
	for _, rec := range s.proc.out.records("token request") {
		if rec["outcome"] == "throttled" {
			throttled++
			if rec["client_ip"] != "127.0.0.2" && rec["client_ip"] != "127.0.0.4" {
				t.Fatalf("a throttled request from %v", rec["client_ip"])
			}
		}
	}
	if throttled < 3 {
		t.Fatalf("%d audit events with outcome throttled", throttled)
	}
}

// TestServeDefaultLimitsTolerateAFleet: with the default budgets, 200 failures at once from one
// address (a CI farm's NAT after a key rotation) are all answered 401, none 429.
func TestServeDefaultLimitsTolerateAFleet(t *testing.T) {
	keyFile, certFile := signingFiles(t)
	storeURL := "bolt://" + filepath.Join(t.TempDir(), "store.db")
	s := configured(t, storeURL, keyFile, certFile, "")
	s.bootstrap(t, storeURL)
	s.start(t, storeURL)
	nat := from("127.0.0.5")
	for i := range 200 {
		if a := tokenFrom(t, nat, s.Token, fmt.Sprintf("job%d", i%50), wrongKey(t), "repository:image:pull"); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d from one address: HTTP %d %s", i+1, a.status, a.raw)
		}
	}
}

// TestRedisReplicasShareFailureBudgets runs two `regoauth serve` replicas on one real
// redis-server with a budget of 10 failures per address: failures sent to both spend one
// budget, after which both refuse that address within a second, and both still serve the right
// key from another address.
func TestRedisReplicasShareFailureBudgets(t *testing.T) {
	srv := redistest.Start(t)
	storeURL := srv.URL() + "?prefix=budgets"
	adminKey := seedAdmin(t, storeURL)
	keyFile, certFile := signingFiles(t)
	const limits = "limits: {auth_failures: {address: {burst: 10, every: 1m}, account_address: {burst: 100, every: 1m}}}"
	a := configured(t, storeURL, keyFile, certFile, limits).start(t, storeURL)
	b := configured(t, storeURL, keyFile, certFile, limits).start(t, storeURL)
	a.cli(t, adminKey, "accounts", "create", "user1")
	key := strings.TrimSpace(a.cli(t, adminKey, "keys", "create", "--account", "user1"))
	a.cli(t, adminKey, "grants", "add", "--account", "user1", "--repo", "image", "--actions", "pull")

	attacker, user := from("127.0.0.6"), from("127.0.0.7")
	const scope = "repository:image:pull"
	for i := range 10 {
		r := []*redisServe{a, b}[i%2]
		if got := tokenFrom(t, attacker, r.Token, "user1", wrongKey(t), scope); got.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: HTTP %d %s", i+1, got.status, got.raw)
		}
	}
	for name, r := range map[string]*redisServe{"A": a, "B": b} {
		took := within(t, time.Second, "replica "+name+" refusing the address", func() bool {
			return tokenFrom(t, attacker, r.Token, "user1", key, scope).status == http.StatusTooManyRequests
		})
		wantThrottled(t, tokenFrom(t, attacker, r.Token, "user1", key, scope), "replica "+name)
		if got := access(t, tokenResponseOf(tokenFrom(t, user, r.Token, "user1", key, scope)), certFile, "image"); len(got) != 1 {
			t.Fatalf("replica %s, the right key from another address: %v", name, got)
		}
		if n := r.metric(t, "regoauth_auth_throttled_total", `by="address"`); n < 1 {
			t.Fatalf("replica %s: regoauth_auth_throttled_total{by=address} = %v", name, n)
		}
		t.Logf("replica %s refused the address %s after the 10th failure", name, took.Round(time.Millisecond))
	}
}

func tokenResponseOf(a answer) tokenResponse {
	return tokenResponse{status: a.status, body: a.body, raw: a.raw}
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

// TestRedisUnknownKeyCostsOneLookup: a client repeating a key id that does not exist costs one
// lookup in Redis per negative-cache window (Redis's own log of commands shows it); when a key
// with that id is then created (here by `regoauth import`, as in a restore), the replica
// serves it within a second.
func TestRedisUnknownKeyCostsOneLookup(t *testing.T) {
	srv := redistest.Start(t)
	storeURL := srv.URL() + "?prefix=negative"
	adminKey := seedAdmin(t, storeURL)
	keyFile, certFile := signingFiles(t)
	s := configured(t, storeURL, keyFile, certFile, "").start(t, storeURL)
	s.cli(t, adminKey, "accounts", "create", "late")
	s.cli(t, adminKey, "grants", "add", "--account", "late", "--repo", "image", "--actions", "pull")

	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := srv.Client()
	if err := raw.ConfigSet(context.Background(), "slowlog-log-slower-than", "0").Err(); err != nil {
		t.Fatal(err)
	}
	raw.ConfigSet(context.Background(), "slowlog-max-len", "100000")
	raw.SlowLogReset(context.Background())
	client := from("127.0.0.8")
	for range 25 {
		if a := tokenFrom(t, client, s.Token, "late", plain, "repository:image:pull"); a.status != http.StatusUnauthorized {
			t.Fatalf("a key that does not exist yet: HTTP %d %s", a.status, a.raw)
		}
	}
	if n := lookupsOf(t, raw, id); n != 1 {
		t.Fatalf("25 requests with one unknown key made %d lookups of it in Redis, want 1", n)
	}
	if n := s.metric(t, "regoauth_store_cache_lookups_total", `result="negative_hit"`); n < 24 {
		t.Fatalf("regoauth_store_cache_lookups_total{result=negative_hit} = %v", n)
	}

	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	now := time.Now().UTC().Truncate(time.Second)
	enc.Encode(keystore.Record{Header: &keystore.ExportHeader{Format: keystore.ExportFormat, Version: keystore.ExportVersion}})
	enc.Encode(keystore.Record{Key: &keystore.Key{ID: id, Account: "late", Name: "restored", Hash: hash, Created: now}})
	file := filepath.Join(t.TempDir(), "restore.jsonl")
	os.WriteFile(file, in.Bytes(), 0o600)
	must(t, []string{"REGOAUTH_STORE_URL=" + storeURL}, binary, "import", file)
	took := within(t, time.Second, "the replica serving the restored key", func() bool {
		return tokenFrom(t, client, s.Token, "late", plain, "repository:image:pull").status == http.StatusOK
	})
	if got := access(t, tokenResponseOf(tokenFrom(t, client, s.Token, "late", plain, "repository:image:pull")), certFile, "image"); len(got) != 1 {
		t.Fatalf("the restored key grants %v", got)
	}
	t.Logf("the replica served the restored key %s after the import", took.Round(time.Millisecond))
}
