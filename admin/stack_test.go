package admin_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	disttoken "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
	"github.com/regoauth/regoauth/tokens"
)

// A stack is the two HTTP boundaries an account can reach — the admin API and GET /token — on
// one httptest server, over a real store (a bbolt file, or a real redis-server), the built-in
// policy library (with a shipped bundle beside it when asked) and a real signer. Tokens are
// verified with distribution's own token code. Tests that try to reach what an account must not
// run on every backend.
type stack struct {
	t       testing.TB
	backend string
	store   keystore.Store
	server  *httptest.Server
	key     *tokens.Key
	admin   *admin.Client
	rootKey string // the admin key behind admin
	// primary and replica are the Redis server and its replica of a stack with
	// stackOptions.ConfirmReplicas.
	primary, replica *redistest.Server
	// clock is the time both endpoints see, in Unix nanoseconds; advance moves it.
	clock atomic.Int64
	// rawOwnership writes an ownership record past the store's validation, as data written by
	// an earlier version would be.
	rawOwnership func(repository, owner string)
}

type stackOptions struct {
	// Bundle is a directory of bundles/ loaded beside the library ("" for the library alone).
	Bundle string
	// BundleDir is a bundle directory loaded beside the library, when Bundle is "".
	BundleDir      string
	TrustedProxies []netip.Prefix
	// BeforeWrite, when set, is called by the admin API's store just before each grant write,
	// grant removal, release and account update it makes (op: "put grant", "remove grant",
	// "release", "update account"): after the operation was decided, before its write, where
	// another request's write may land.
	BeforeWrite func(op string)
	// MaxKeysPerAccount is the admin API's bound on live keys (0: none).
	MaxKeysPerAccount int
	// ConfirmReplicas gives the Redis server a replica, which every change waits for (2s at
	// most): stack.replica.
	ConfirmReplicas bool
}

// hookedStore is the store the admin API writes through when stackOptions.BeforeWrite is set.
type hookedStore struct {
	keystore.Store
	before func(op string)
}

func (h hookedStore) PutGrant(ctx context.Context, g keystore.Grant, guard keystore.Guard) error {
	h.before("put grant")
	return h.Store.PutGrant(ctx, g, guard)
}

func (h hookedStore) RemoveGrant(ctx context.Context, subject keystore.Subject, repository string, actions []string, guard keystore.Guard) error {
	h.before("remove grant")
	return h.Store.RemoveGrant(ctx, subject, repository, actions, guard)
}

func (h hookedStore) UpdateAccount(ctx context.Context, a keystore.Account) error {
	h.before("update account")
	return h.Store.UpdateAccount(ctx, a)
}

func (h hookedStore) ChangeAccount(ctx context.Context, name string, ch keystore.AccountChange) (keystore.Account, error) {
	h.before("update account")
	return h.Store.ChangeAccount(ctx, name, ch)
}

func (h hookedStore) Release(ctx context.Context, repository string, guard keystore.Guard) error {
	h.before("release")
	return h.Store.Release(ctx, repository, guard)
}

const service = "registry.example.com"

// backends runs fn once on a bolt store and once on a real redis-server.
func backends(t *testing.T, fn func(t *testing.T, backend string)) {
	for _, b := range []string{"bolt", "redis"} {
		t.Run(b, func(t *testing.T) { fn(t, b) })
	}
}

var redisPrefixes atomic.Int64

func newStack(t testing.TB, backend string, o stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, backend: backend}
	s.clock.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	// The store judges expiries and grant ends by the clock the endpoints see.
	now := func() time.Time { return time.Unix(0, s.clock.Load()).UTC() }
	switch backend {
	case "bolt":
		path := filepath.Join(t.TempDir(), "store.db")
		store, err := boltstore.OpenWith(path, boltstore.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		s.store = store
		s.rawOwnership = func(repo, owner string) {
			// bbolt allows one open handle per file: write beside the store through its own
			// handle is impossible, so reopen the file for the raw write.
			store.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				rec := fmt.Sprintf(`{"repository":%q,"owner":%q,"created":"2026-01-01T00:00:00Z"}`, repo, owner)
				if err := tx.Bucket([]byte("owners")).Put([]byte(repo), []byte(rec)); err != nil {
					return err
				}
				return tx.Bucket([]byte("owned_by")).Put([]byte(owner+"\x00"+repo), nil)
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			reopened, err := boltstore.OpenWith(path, boltstore.Options{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			*store = *reopened
		}
	case "redis":
		srv := redistest.Start(t)
		prefix := fmt.Sprintf("s%d", redisPrefixes.Add(1))
		url := srv.URL() + "?prefix=" + prefix
		if o.ConfirmReplicas {
			s.primary, s.replica = srv, srv.StartReplica(t)
			url += "&confirm_replicas=1&confirm_timeout=2s"
		}
		store, err := redisstore.Open(url, redisstore.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		s.store = store
		raw := srv.Client()
		s.rawOwnership = func(repo, owner string) {
			p := "{" + prefix + "}:"
			rec := fmt.Sprintf(`{"repository":%q,"owner":%q,"created":"2026-01-01T00:00:00Z"}`, repo, owner)
			_, err := raw.TxPipelined(t.Context(), func(pipe redis.Pipeliner) error {
				pipe.Set(t.Context(), p+"o:"+repo, rec, 0)
				pipe.SAdd(t.Context(), p+"oa:"+owner, repo)
				pipe.ZAdd(t.Context(), p+"repos", redis.Z{Member: repo})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	t.Cleanup(func() { s.store.Close() })

	src := policy.Source{Builtin: policies.FS}
	if o.BundleDir != "" {
		src.Dir = o.BundleDir
	}
	if o.Bundle != "" {
		src.Dir = bundleWithoutTests(t, o.Bundle)
	}
	engine := policy.New(policy.Options{Source: src})
	if err := engine.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Stop(t.Context()) })

	priv, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	cert, _ := tokens.SelfSignedCertificate(priv, "test", time.Now().Add(-24*time.Hour), 365*24*time.Hour)
	key, err := tokens.NewKey(priv, []*x509.Certificate{cert}, tokens.KIDThumbprint)
	if err != nil {
		t.Fatal(err)
	}
	s.key = key
	signer, err := tokens.NewSigner(key, tokens.SignerOptions{Issuer: "regoauth", TTL: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	token, err := authz.New(authz.Deps{Directory: s.store, Decider: engine, Issuer: signer}, authz.Options{
		Services: []string{service}, TrustedProxies: o.TrustedProxies,
		Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(), Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	var apiStore admin.Store = s.store
	if o.BeforeWrite != nil {
		apiStore = hookedStore{Store: s.store, before: o.BeforeWrite}
	}
	api, err := admin.New(admin.Deps{Store: apiStore, Authorizer: engine, Explainer: engine}, admin.Options{Now: now, TrustedProxies: o.TrustedProxies, MaxKeysPerAccount: o.MaxKeysPerAccount})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/token", token)
	// As the server does: the admin API gets its paths as sent, never cleaned by ServeMux.
	s.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, admin.Prefix+"/") {
			api.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.server.Close)

	if err := s.store.CreateAccount(t.Context(), keystore.Account{Name: "root", Roles: []string{"admin"}, Created: now()}); err != nil {
		t.Fatal(err)
	}
	plain, id, hash, _ := keystore.NewAPIKey(rand.Reader)
	if err := s.store.CreateKey(t.Context(), keystore.Key{ID: id, Account: "root", Hash: hash, Created: now()}); err != nil {
		t.Fatal(err)
	}
	s.admin, s.rootKey = s.client(plain), plain
	return s
}

// bundleWithoutTests copies bundles/NAME without its _test.rego files, as `opa build --ignore`
// would ship it.
func bundleWithoutTests(t testing.TB, name string) string {
	t.Helper()
	src := filepath.Join("..", "bundles", name)
	dst := filepath.Join(t.TempDir(), name)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.rego") {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, raw, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// must fails the test on err.
func (s *stack) must(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) advance(d time.Duration) { s.clock.Add(int64(d)) }

func (s *stack) client(key string) *admin.Client { return s.clientVia(key, "") }

// clientVia is a client whose requests carry X-Forwarded-For: forwardedFor (none when empty).
func (s *stack) clientVia(key, forwardedFor string) *admin.Client {
	s.t.Helper()
	var hc *http.Client
	if forwardedFor != "" {
		hc = &http.Client{Transport: forwarding{forwardedFor}}
	}
	c, err := admin.NewClient(s.server.URL, key, hc)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

type forwarding struct{ addr string }

func (f forwarding) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.addr)
	return http.DefaultTransport.RoundTrip(r)
}

// account creates an account through the admin API and returns a new key of it.
func (s *stack) account(name string, groups ...string) string {
	s.t.Helper()
	if _, err := s.admin.CreateAccount(s.t.Context(), admin.AccountRequest{Name: name, Groups: groups}); err != nil {
		s.t.Fatalf("creating account %s: %v", name, err)
	}
	return s.newKey(name, admin.KeyRequest{})
}

// role creates an account with roles and returns a new key of it.
func (s *stack) role(name string, roles ...string) string {
	s.t.Helper()
	if _, err := s.admin.CreateAccount(s.t.Context(), admin.AccountRequest{Name: name, Roles: roles}); err != nil {
		s.t.Fatalf("creating account %s: %v", name, err)
	}
	return s.newKey(name, admin.KeyRequest{})
}

// newKey creates a key of account through the admin API, as an admin.
func (s *stack) newKey(account string, req admin.KeyRequest) string {
	s.t.Helper()
	req.Account = account
	k, err := s.admin.CreateKey(s.t.Context(), req)
	if err != nil {
		s.t.Fatalf("creating a key of %s: %v", account, err)
	}
	return k.Secret
}

// access asks GET /token for scopes as user and returns, per requested repository, the actions
// the token carries (verified by distribution), sorted.
func (s *stack) access(user, key string, scopes ...string) map[string][]string {
	s.t.Helper()
	status, body := s.token(user, key, scopes...)
	if status != http.StatusOK {
		s.t.Fatalf("token request of %s: HTTP %d %s", user, status, body)
	}
	tk, err := disttoken.NewToken(body.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		s.t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.key.Chain[0])
	claims, err := tk.Verify(disttoken.VerifyOptions{TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{service}, Roots: roots})
	if err != nil {
		s.t.Fatalf("distribution rejected the token: %v", err)
	}
	out := map[string][]string{}
	for _, a := range claims.Access {
		acts := slices.Clone(a.Actions)
		slices.Sort(acts)
		out[a.Name] = acts
	}
	return out
}

type tokenBody struct {
	Token string `json:"token"`
	Error string `json:"error"`
}

func (s *stack) token(user, key string, scopes ...string) (int, tokenBody) {
	s.t.Helper()
	q := url.Values{"service": {service}, "scope": scopes}
	req, _ := http.NewRequestWithContext(s.t.Context(), "GET", s.server.URL+"/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body tokenBody
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// pulls reports whether user's key gets pull on repository.
func (s *stack) pulls(user, key, repository string) bool {
	s.t.Helper()
	return slices.Contains(s.access(user, key, "repository:"+repository+":pull")[repository], "pull")
}

// status is the HTTP status of an admin API error (200 for none).
func status(err error) int {
	var apiErr *admin.APIError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &apiErr):
		return apiErr.Status
	}
	return -1
}
