package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	disttoken "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/tokens"
)

const redisService = "registry.test"

// redisServe is one `regoauth serve` process, a token-server replica, with its own listener and
// a shared store.
type redisServe struct {
	Token string // localhost:PORT
	dir   string
	proc  *process
}

func (s *redisServe) Logs() string { return s.proc.out.String() }

// signingFiles makes one signing key and certificate that every replica of a test shares.
func signingFiles(t *testing.T) (key, cert string) {
	t.Helper()
	dir := t.TempDir()
	key, cert = filepath.Join(dir, "signing-key.pem"), filepath.Join(dir, "signing-cert.pem")
	if _, err := secretfile.EnsureSigningKey(key, cert, jose.ES256, "regoauth", time.Now()); err != nil {
		t.Fatal(err)
	}
	// Replicas given the same signing files share the refresh token secret beside them.
	if err := os.WriteFile(filepath.Join(dir, "refresh-secret"), []byte(strings.Repeat("r", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// startRedisServe runs `regoauth serve` against storeURL with the principal cache on for a minute,
// so that only invalidation can explain a replica noticing a change within a second.
func startRedisServe(t *testing.T, storeURL, keyFile, certFile string) *redisServe {
	t.Helper()
	s := &redisServe{Token: freeAddr(t), dir: t.TempDir()}
	cfg := fmt.Sprintf(`issuer: regoauth
services: [%s]
listen: {addr: %q}
signing: {key_file: %q, cert_file: %q}
refresh_tokens: {secrets: [{file: %q}]}
store:
  url: {env: TEST_STORE_URL}
  cache: {ttl: 1m, size: 1000}
log: {format: json, level: info}
`, redisService, s.Token, keyFile, certFile, filepath.Join(filepath.Dir(keyFile), "refresh-secret"))
	path := filepath.Join(s.dir, "regoauth.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.proc = startProcessEnv(t, "regoauth serve "+s.Token, []string{"TEST_STORE_URL=" + storeURL}, binary, "serve", "--config", path)
	s.proc.waitFor(t, "readiness", func() bool { return ready(s.Token) })
	return s
}

// seedAdmin imports an admin account and key into the store with `regoauth import`, the way an
// operator bootstraps a Redis store, and returns the key.
func seedAdmin(t *testing.T, storeURL string) string {
	t.Helper()
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, r := range []keystore.Record{
		{Header: &keystore.ExportHeader{Format: keystore.ExportFormat, Version: keystore.ExportVersion}},
		{Account: &keystore.Account{Name: "admin", Roles: []string{"admin"}, Created: now}},
		{Key: &keystore.Key{ID: id, Account: "admin", Name: "bootstrap", Hash: hash, Created: now}},
	} {
		enc.Encode(r)
	}
	file := filepath.Join(t.TempDir(), "seed.jsonl")
	os.WriteFile(file, in.Bytes(), 0o600)
	must(t, []string{"REGOAUTH_STORE_URL=" + storeURL}, binary, "import", file)
	return plain
}

func (s *redisServe) cliEnv(key string) []string {
	return []string{"REGOAUTH_SERVER=http://" + s.Token, "REGOAUTH_KEY=" + key, "REGOAUTH_KEY_FILE="}
}

func (s *redisServe) cli(t *testing.T, key string, args ...string) string {
	t.Helper()
	return must(t, s.cliEnv(key), binary, args...)
}

// tokenResponse is what GET /token answered.
type tokenResponse struct {
	status int
	body   map[string]any
	raw    string
}

func (s *redisServe) token(t *testing.T, user, key string, scopes ...string) tokenResponse {
	t.Helper()
	q := url.Values{"service": {redisService}, "scope": scopes}
	req, _ := http.NewRequest("GET", "http://"+s.Token+"/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := tokenResponse{status: resp.StatusCode, raw: string(raw)}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		t.Fatalf("token response is not JSON (HTTP %d): %s", resp.StatusCode, raw)
	}
	return r
}

// access verifies a token with distribution's own code and returns the actions it grants on
// repository.
func access(t *testing.T, r tokenResponse, certFile, repository string) []string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("token request: HTTP %d %s", r.status, r.raw)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := tokens.ParseCertificatesPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[0])
	tk, err := disttoken.NewToken(r.body["token"].(string), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := tk.Verify(disttoken.VerifyOptions{TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{redisService}, Roots: roots})
	if err != nil {
		t.Fatalf("distribution rejected the token: %v", err)
	}
	for _, a := range claims.Access {
		if a.Type == "repository" && a.Name == repository {
			return a.Actions
		}
	}
	return nil
}

// metric returns the sum of the samples of a metric family whose labels contain every one
// of the given label pairs.
func (s *redisServe) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.Token + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var sum float64
	for line := range strings.SplitSeq(string(raw), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				match = false
			}
		}
		if match {
			var v float64
			fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
			sum += v
		}
	}
	return sum
}

// within polls check until it holds, failing after limit, and returns how long it took.
func within(t *testing.T, limit time.Duration, what string, check func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !check() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// twoReplicas runs two `regoauth serve` replicas sharing one new redis-server (under prefix)
// and one signing key, and returns them with the admin's key and the signing certificate.
func twoReplicas(t *testing.T, prefix string) (a, b *redisServe, adminKey, certFile string) {
	t.Helper()
	srv := redistest.Start(t)
	storeURL := srv.URL() + "?prefix=" + prefix
	adminKey = seedAdmin(t, storeURL)
	keyFile, certFile := signingFiles(t)
	return startRedisServe(t, storeURL, keyFile, certFile), startRedisServe(t, storeURL, keyFile, certFile), adminKey, certFile
}

// TestRedisReplicasSeeChangesWithinASecond runs two `regoauth serve` replicas on one real
// redis-server, each caching principals for a minute. A key revoked, an account disabled or a
// grant removed through replica A is refused by replica B within one second; before each change
// B is shown to answer from its cache.
func TestRedisReplicasSeeChangesWithinASecond(t *testing.T) {
	a, b, adminKey, certFile := twoReplicas(t, "replicas")

	for _, tt := range []struct {
		name   string
		change func(t *testing.T, account, key string)
		// refused reports whether replica B's answer reflects the change.
		refused func(r tokenResponse) bool
	}{
		{"revoke the key", func(t *testing.T, account, key string) {
			id, _ := keystore.ParseAPIKey(key)
			a.cli(t, adminKey, "keys", "revoke", id)
		}, func(r tokenResponse) bool { return r.status == http.StatusUnauthorized }},
		{"disable the account", func(t *testing.T, account, key string) {
			a.cli(t, adminKey, "accounts", "disable", account)
		}, func(r tokenResponse) bool { return r.status == http.StatusUnauthorized }},
		{"remove the grant", func(t *testing.T, account, key string) {
			a.cli(t, adminKey, "grants", "remove", "--account", account, "--repo", "shop/app")
		}, func(r tokenResponse) bool {
			return r.status == http.StatusOK && len(access(t, r, certFile, "shop/app")) == 0
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			account := fmt.Sprintf("user%d", time.Now().UnixNano()%1e9)
			a.cli(t, adminKey, "accounts", "create", account)
			key := strings.TrimSpace(a.cli(t, adminKey, "keys", "create", "--account", account))
			a.cli(t, adminKey, "grants", "add", "--account", account, "--repo", "shop/app", "--actions", "pull")
			time.Sleep(100 * time.Millisecond) // let the setup's own invalidations reach B
			hits := b.metric(t, "regoauth_store_cache_lookups_total", `result="hit"`)
			for range 3 {
				if got := access(t, b.token(t, account, key, "repository:shop/app:pull"), certFile, "shop/app"); len(got) != 1 || got[0] != "pull" {
					t.Fatalf("before the change, replica B granted %v", got)
				}
			}
			if got := b.metric(t, "regoauth_store_cache_lookups_total", `result="hit"`); got < hits+2 {
				t.Fatalf("replica B cache hits went from %v to %v: it is not answering from its cache", hits, got)
			}
			tt.change(t, account, key)
			took := within(t, time.Second, "replica B refusing after "+tt.name, func() bool {
				return tt.refused(b.token(t, account, key, "repository:shop/app:pull"))
			})
			t.Logf("replica B refused %s after the change through replica A", took.Round(time.Millisecond))
		})
	}
}

// TestRedisDownFailsClosed stops the redis-server under a running `regoauth serve`: token
// requests get a 503 JSON error and never a token, /readyz and the metrics say why, the log
// names the cause once; when the same server comes back, tokens flow again without a restart.
func TestRedisDownFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	storeURL := srv.URL() + "?prefix=down"
	adminKey := seedAdmin(t, storeURL)
	keyFile, certFile := signingFiles(t)
	s := startRedisServe(t, storeURL, keyFile, certFile)
	s.cli(t, adminKey, "accounts", "create", "user1")
	key := strings.TrimSpace(s.cli(t, adminKey, "keys", "create", "--account", "user1"))
	s.cli(t, adminKey, "grants", "add", "--account", "user1", "--repo", "image", "--actions", "pull")
	for range 2 { // the second answer comes from the cache
		if got := access(t, s.token(t, "user1", key, "repository:image:pull"), certFile, "image"); len(got) != 1 {
			t.Fatalf("before the outage: %v", got)
		}
	}

	srv.Stop()
	within(t, time.Second, "503 after Redis stopped", func() bool {
		return s.token(t, "user1", key, "repository:image:pull").status == http.StatusServiceUnavailable
	})
	for range 5 {
		r := s.token(t, "user1", key, "repository:image:pull")
		errs, _ := r.body["errors"].([]any)
		if r.status != http.StatusServiceUnavailable || r.body["token"] != nil || r.body["access_token"] != nil || len(errs) != 1 ||
			errs[0].(map[string]any)["code"] != "UNAVAILABLE" {
			t.Fatalf("during the outage: HTTP %d %s", r.status, r.raw)
		}
	}
	resp, err := http.Get("http://" + s.Token + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(raw), `"store":"unreachable"`) {
		t.Fatalf("/readyz during the outage: %d %s", resp.StatusCode, raw)
	}
	if up := s.metric(t, "regoauth_store_up"); up != 0 {
		t.Fatalf("regoauth_store_up = %v during the outage", up)
	}
	if n := s.metric(t, "regoauth_token_requests_total", `outcome="unavailable"`); n < 6 {
		t.Fatalf("regoauth_token_requests_total{outcome=unavailable} = %v", n)
	}
	if n := s.metric(t, "regoauth_store_unavailable_total"); n < 6 {
		t.Fatalf("regoauth_store_unavailable_total = %v", n)
	}
	if logs := s.Logs(); strings.Count(logs, "redis store unreachable") != 1 || !strings.Contains(logs, "connection refused") {
		t.Fatalf("want the outage logged once with its cause:\n%s", logs)
	}

	srv.Restart()
	within(t, 10*time.Second, "tokens after Redis returned", func() bool {
		return s.token(t, "user1", key, "repository:image:pull").status == http.StatusOK
	})
	if got := access(t, s.token(t, "user1", key, "repository:image:pull"), certFile, "image"); len(got) != 1 {
		t.Fatalf("after recovery: %v", got)
	}
	within(t, 5*time.Second, "/readyz after Redis returned", func() bool { return ready(s.Token) })
	if up := s.metric(t, "regoauth_store_up"); up != 1 {
		t.Fatalf("regoauth_store_up = %v after recovery", up)
	}
	if !strings.Contains(s.Logs(), "redis store reachable again") {
		t.Fatal("the recovery was not logged")
	}
}

// TestRedisSelfService is the marketplace lifecycle through the CLI against a Redis-backed
// server: an admin reserves a repository for a seller, the seller sells pull on it to a buyer
// and takes it back, and the buyer manages its own keys — none of them with admin rights.
func TestRedisSelfService(t *testing.T) {
	srv := redistest.Start(t)
	storeURL := srv.URL() + "?prefix=market"
	adminKey := seedAdmin(t, storeURL)
	keyFile, certFile := signingFiles(t)
	s := startRedisServe(t, storeURL, keyFile, certFile)
	for _, name := range []string{"seller", "buyer"} {
		s.cli(t, adminKey, "accounts", "create", name)
	}
	seller := strings.TrimSpace(s.cli(t, adminKey, "keys", "create", "--account", "seller"))
	buyer := strings.TrimSpace(s.cli(t, adminKey, "keys", "create", "--account", "buyer"))
	s.cli(t, adminKey, "repos", "reserve", "shop/app", "--owner", "seller")

	pull := func(key string) []string {
		return access(t, s.token(t, "buyer", key, "repository:shop/app:pull"), certFile, "shop/app")
	}
	if got := access(t, s.token(t, "seller", seller, "repository:shop/app:push,pull,delete"), certFile, "shop/app"); strings.Join(got, ",") != "delete,pull,push" {
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
	if got := access(t, s.token(t, "buyer", buyer, "repository:shop/app:push"), certFile, "shop/app"); len(got) != 0 {
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
	if r := s.token(t, "buyer", second, "repository:shop/app:pull"); r.status != http.StatusUnauthorized {
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
	a, b, adminKey, certFile := twoReplicas(t, "refresh")
	a.cli(t, adminKey, "accounts", "create", "buyer")
	key := strings.TrimSpace(a.cli(t, adminKey, "keys", "create", "--account", "buyer"))
	a.cli(t, adminKey, "grants", "add", "--account", "buyer", "--repo", "shop/app", "--actions", "pull")

	q := url.Values{"service": {redisService}, "offline_token": {"true"}, "client_id": {"docker"}}
	req, _ := http.NewRequest("GET", "http://"+a.Token+"/token?"+q.Encode(), nil)
	req.SetBasicAuth("buyer", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if body.RefreshToken == "" {
		t.Fatal("replica A issued no refresh token")
	}
	refresh := func(s *redisServe) tokenResponse {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body.RefreshToken},
			"service": {redisService}, "scope": {"repository:shop/app:pull"}, "client_id": {"docker"}}
		resp, err := http.PostForm("http://"+s.Token+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		r := tokenResponse{status: resp.StatusCode, raw: string(raw)}
		json.Unmarshal(raw, &r.body)
		return r
	}
	for range 3 {
		if got := access(t, refresh(b), certFile, "shop/app"); len(got) != 1 || got[0] != "pull" {
			t.Fatalf("replica B's token from the refresh token grants %v", got)
		}
	}
	id, _ := keystore.ParseAPIKey(key)
	a.cli(t, adminKey, "keys", "revoke", id)
	took := within(t, time.Second, "replica B refusing the refresh token of a revoked key", func() bool {
		return refresh(b).status == http.StatusUnauthorized
	})
	t.Logf("replica B refused the refresh token %s after the revocation through replica A", took.Round(time.Millisecond))
}
