package authz_test

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
	"github.com/regoauth/regoauth/throttle"
	"github.com/regoauth/regoauth/tokens"
)

// Benchmarks of the token path, stage by stage and whole. Run them beside the signing baseline
// in one process: go test -run '^$' -bench . ./authz ./tokens ./policy ./keystore/...
// (bench/load.sh measures the same path over HTTP under load.)

// BenchmarkTokenRequest is the whole request path in process: parse, API key check against the
// bolt store, the default Rego policy over 100 grants, intersection, ES256 signing, JSON.
// Compare it with tokens.BenchmarkRawES256 measured in the same run.
func BenchmarkTokenRequest(b *testing.B) {
	e := newEnv(b)
	for i := range 100 {
		e.Grant("user1", fmt.Sprintf("team%d/*", i), "pull")
	}
	query := q("repository:image2:push,pull", "repository:team7/app:pull", "repository:other:pull")
	key := e.keys["user1"]
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := httptest.NewRequest("GET", "/token?"+query, nil)
		r.SetBasicAuth("user1", key)
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkHandler is one token request through the handler as `regoauth serve` wires it: a
// bolt store with its principal cache, the built-in library (with public/* public) behind its
// decision cache, ES256 with x5c, the JSON audit line (written nowhere) and metrics. The
// account has 100 grants, one in ten a glob. Each sub-benchmark is a kind of request:
//
//   - cold: 3 scopes (one granted by name, one by a glob, one denied) for repositories no
//     earlier request named, so the policy evaluates every time; the principal comes from the
//     cache. This is the target of "allocations per cold token request with 3 scopes".
//   - cold-store: the same with the principal cache off, so every request also decodes the
//     key, the account and the grants from the store.
//   - cached: one request repeated; both caches answer.
//   - cached-budgets: the same with the failure budgets of `regoauth serve`'s default (in
//     process): what checking them costs a valid request.
//   - anonymous: 3 scopes of public repositories without credentials: the handler's wall
//     (parse, policy, sign, respond) without authentication.
//
// Requests are built before the timer starts and the response writer is reused, so the
// figures are the handler's own.
func BenchmarkHandler(b *testing.B) {
	for _, tc := range []struct {
		name       string
		storeCache time.Duration
		distinct   bool
		anonymous  bool
		budgets    bool
		// evaluated: every decision evaluated by OPA (as with an extension), not native.
		evaluated bool
	}{
		{"cold", time.Minute, true, false, false, false},
		{"cold-evaluated", time.Minute, true, false, false, true},
		{"cold-store", 0, true, false, false, false},
		{"cached", time.Minute, false, false, false, false},
		{"cached-evaluated", time.Minute, false, false, false, true},
		{"cached-budgets", time.Minute, false, false, true, false},
		{"anonymous", time.Minute, false, true, false, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, auth := newBenchHandler(b, tc.storeCache, tc.budgets, tc.evaluated)
			// More distinct requests than the decision cache holds, taken in turn: a
			// least-recently-used cache never answers, as with random repositories.
			n := 1
			if tc.distinct {
				n = 4 * benchDecisionCache
			}
			reqs := make([]*http.Request, n)
			for i := range reqs {
				query := q(fmt.Sprintf("repository:user1/app%d:push,pull", i%90),
					fmt.Sprintf("repository:team%d/svc%d:pull", 10*(i%10)+9, i),
					fmt.Sprintf("repository:elsewhere/app%d:pull", i))
				if tc.anonymous {
					query = q("repository:public/app:pull", "repository:public/base:pull", "repository:public/tools:pull")
				}
				reqs[i] = httptest.NewRequest("GET", "/token?"+query, nil)
				reqs[i].RemoteAddr = "203.0.113.7:41000"
				if !tc.anonymous {
					reqs[i].Header.Set("Authorization", auth)
				}
			}
			w := &discardWriter{header: http.Header{}}
			warm := min(n, benchDecisionCache) // a warm process; the timed loop starts after these
			for _, r := range reqs[:warm] {
				h.ServeHTTP(w.reset(), r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := warm
			for b.Loop() {
				h.ServeHTTP(w.reset(), reqs[i%n])
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
				i++
			}
		})
	}
}

// benchDecisionCache is how many requests warm the benchmark's engine; its decision cache,
// bounded by bytes, holds fewer than 4x as many of these decisions (each counts ~2 KiB or more),
// so the distinct requests taken in turn are never answered from it.
const (
	benchDecisionCache      = 1024
	benchDecisionCacheBytes = 2 << 20
)

func newBenchHandler(b *testing.B, storeCache time.Duration, budgets, evaluated bool) (http.Handler, string) {
	b.Helper()
	store, err := boltstore.OpenWith(filepath.Join(b.TempDir(), "store.db"), boltstore.Options{CacheTTL: storeCache, CacheSize: 10000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	if err := store.CreateAccount(ctx, keystore.Account{Name: "user1"}); err != nil {
		b.Fatal(err)
	}
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	if err := store.CreateKey(ctx, keystore.Key{ID: id, Account: "user1", Hash: hash, Created: time.Now()}); err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		repo := fmt.Sprintf("user1/app%d", i)
		if i%10 == 9 {
			repo = fmt.Sprintf("team%d/*", i)
		}
		g := keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "user1"}, Repository: repo, Actions: []string{"pull", "push"}}
		if err := store.PutGrant(ctx, g, keystore.Unguarded); err != nil {
			b.Fatal(err)
		}
	}

	engine := policy.New(policy.Options{DecisionCacheBytes: benchDecisionCacheBytes, EvaluateAll: evaluated})
	if err := engine.LoadFS(ctx, withPublicRepositories(b), "builtin"); err != nil {
		b.Fatal(err)
	}
	priv, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	cert, _ := tokens.SelfSignedCertificate(priv, "regoauth", time.Now().Add(-time.Hour), 24*time.Hour)
	key, err := tokens.NewKey(priv, []*x509.Certificate{cert}, tokens.KIDThumbprint)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := tokens.NewSigner(key, tokens.SignerOptions{Issuer: "regoauth", TTL: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	deps := authz.Deps{Directory: store, Decider: engine, Issuer: signer}
	if budgets {
		limits := throttle.Limits{
			Address:        throttle.Limit{Burst: 200, Every: 500 * time.Millisecond},
			AccountAddress: throttle.Limit{Burst: 30, Every: 10 * time.Second},
			Account:        throttle.Limit{Burst: 600, Every: time.Second},
		}
		deps.Throttle = throttle.NewGuard(throttle.NewMemory(100_000, limits.Refill(), nil), limits, prometheus.NewRegistry(), nil)
	}
	h, err := authz.New(deps, authz.Options{
		Services:   []string{service},
		Logger:     slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.SetBasicAuth("user1", plain)
	return h, req.Header.Get("Authorization")
}

// withPublicRepositories is the built-in library with data that makes public/* public.
func withPublicRepositories(b *testing.B) fs.FS {
	b.Helper()
	m := fstest.MapFS{"data.json": {Data: []byte(`{"regoauth": {"config": {"public_repositories": ["public/*"]}}}`)}}
	err := fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == ".manifest" {
			return err
		}
		data, err := fs.ReadFile(policies.FS, path)
		m[path] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// discardWriter is a ResponseWriter that keeps only the status; its header map is reused, as
// a server's connection reuses its own.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) reset() *discardWriter {
	clear(w.header)
	w.status = 0
	return w
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}

func (w *discardWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}
