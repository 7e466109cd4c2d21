package authz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/regoauth/regoauth/authz/input"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
)

// The decision's cost is reported as a ratio to raw ES256 signing measured in the same run (the
// one other CPU-bound step of every token request), so the figures compare across machines.

var (
	es256Once sync.Once
	es256Cost float64 // ns per raw ES256 signature
)

// es256NsPerOp measures one raw ES256 signature (P-256, SHA-256 digest), once per process, by
// timing a few thousand (testing.Benchmark cannot run inside a benchmark).
func es256NsPerOp() float64 {
	es256Once.Do(func() {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		digest := sha256.Sum256([]byte("header.payload"))
		const n = 4000
		start := time.Now()
		for range n {
			if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
				panic(err)
			}
		}
		es256Cost = float64(time.Since(start).Nanoseconds()) / n
	})
	return es256Cost
}

// BenchmarkES256Sign is the baseline itself.
func BenchmarkES256Sign(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("header.payload"))
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// accountGrants are n grants of account: mostly exact names, one in ten a glob.
func accountGrants(account string, n int) []keystore.Grant {
	out := make([]keystore.Grant, n)
	for i := range out {
		repo := fmt.Sprintf("%s/app%d", account, i)
		if i%10 == 9 {
			repo = fmt.Sprintf("team%d/*", i)
		}
		out[i] = keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: account}, Repository: repo, Actions: []string{"pull", "push"}}
	}
	return out
}

// benchScopes are three scopes for an account with n grants: one granted by an exact name,
// one by a glob, one by nothing.
func benchScopes(account string, n int) []policy.Scope {
	return []policy.Scope{
		{Type: "repository", Name: fmt.Sprintf("%s/app%d", account, n/2), Actions: []string{"pull", "push"}},
		{Type: "repository", Name: fmt.Sprintf("team%d/service", n-1), Actions: []string{"pull"}},
		{Type: "repository", Name: "elsewhere/app", Actions: []string{"pull", "push"}},
	}
}

// benchInput is the input the token path builds for p (see input.Token).
func benchInput(p keystore.Principal) *policy.Input {
	client := policy.Client{IP: "203.0.113.7", ID: "docker", UserAgent: "docker/28"}
	return input.Token("registry.example.com", client, &p, benchScopes(p.Account.Name, len(p.Grants)))
}

func checkBenchDecision(b *testing.B, d policy.Decision) {
	b.Helper()
	if len(d.Access) != 3 || len(d.Access[0].Actions) != 2 || len(d.Access[1].Actions) != 1 || len(d.Access[2].Actions) != 0 {
		b.Fatalf("decision = %+v", d)
	}
}

// BenchmarkDecide is the decide stage of a token request with the built-in library: 3 scopes,
// and 10, 100 or 1,000 grants for the account, of which the token path hands the policy those
// that can match (see input.Relevant). The library alone is decided natively.
func BenchmarkDecide(b *testing.B) {
	benchDecide(b, policy.Options{}, false)
}

// BenchmarkDecideEvaluated is the same decision evaluated by OPA, as every decision of a
// policy with an extension is.
func BenchmarkDecideEvaluated(b *testing.B) {
	benchDecide(b, policy.Options{EvaluateAll: true}, false)
}

// BenchmarkDecideCached is the evaluated decision answered by the decision cache: the input
// is still built and hashed, and the decision log and metrics still written.
func BenchmarkDecideCached(b *testing.B) {
	benchDecide(b, policy.Options{DecisionCacheBytes: 1 << 20, EvaluateAll: true}, true)
}

// benchDecide times one decision per iteration with an engine made with opts; with
// buildInput, each iteration builds the input again, as the token path does.
func benchDecide(b *testing.B, opts policy.Options, buildInput bool) {
	e := policy.New(opts)
	if err := e.LoadFS(context.Background(), policies.FS, policy.BuiltinBundle); err != nil {
		b.Fatal(err)
	}
	base := es256NsPerOp()
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			p := keystore.Principal{Account: keystore.Account{Name: "user1"}, Key: keystore.Key{ID: "k1"}, Grants: accountGrants("user1", n)}
			in := benchInput(p)
			d, err := e.Decide(context.Background(), in)
			if err != nil {
				b.Fatal(err)
			}
			checkBenchDecision(b, d)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if buildInput {
					in = benchInput(p)
				}
				if _, err := e.Decide(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x_es256_sign")
		})
	}
}

// storeOf returns a bolt store holding total grants: the 1,000 of user1 and the rest spread
// over other accounts, 100 each. Stores are built once per process; the big one takes a
// minute, so it is skipped with -short.
type benchStore struct {
	*boltstore.Store
	keyID string // user1's key
}

var (
	storesMu sync.Mutex
	stores   = map[int]benchStore{}
)

func storeOf(b *testing.B, total int) benchStore {
	storesMu.Lock()
	defer storesMu.Unlock()
	if s, ok := stores[total]; ok {
		return s
	}
	dir := os.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dir = "/dev/shm" // the store's fsyncs cost nothing in memory
	}
	path := filepath.Join(dir, fmt.Sprintf("regoauth-bench-%d-%d.db", os.Getpid(), total))
	s, err := boltstore.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	os.Remove(path) // the open file lives until the process ends
	ctx := context.Background()
	put := func(g keystore.Grant) {
		if err := s.PutGrant(ctx, g, keystore.Unguarded); err != nil {
			b.Fatal(err)
		}
	}
	mustDo := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	mustDo(s.CreateAccount(ctx, keystore.Account{Name: "user1"}))
	_, id, hash, err := keystore.NewAPIKey(rand.Reader)
	mustDo(err)
	mustDo(s.CreateKey(ctx, keystore.Key{ID: id, Account: "user1", Hash: hash}))
	for _, g := range accountGrants("user1", 1000) {
		put(g)
	}
	for i := 0; i < total-1000; i++ {
		other := fmt.Sprintf("other%d", i/100)
		put(keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: other}, Repository: fmt.Sprintf("%s/app%d", other, i%100), Actions: []string{"pull"}})
	}
	stores[total] = benchStore{Store: s, keyID: id}
	return stores[total]
}

// BenchmarkStoreSize is the data and decide stages of a token request (LoadPrincipal, then
// Decide) for an account with 1,000 grants, in stores of 1,000 and 1,000,000 grants: only the
// principal's grants reach the policy, so the cost stays flat.
func BenchmarkStoreSize(b *testing.B) {
	e := policy.New(policy.Options{})
	if err := e.LoadFS(context.Background(), policies.FS, policy.BuiltinBundle); err != nil {
		b.Fatal(err)
	}
	base := es256NsPerOp()
	for _, total := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("grants=%d", total), func(b *testing.B) {
			if total > 1000 && testing.Short() {
				b.Skip("building a store of a million grants takes a minute")
			}
			s := storeOf(b, total)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p, err := s.LoadPrincipal(ctx, s.keyID)
				if err != nil {
					b.Fatal(err)
				}
				d, err := e.Decide(ctx, benchInput(p))
				if err != nil {
					b.Fatal(err)
				}
				checkBenchDecision(b, d)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x_es256_sign")
		})
	}
}
