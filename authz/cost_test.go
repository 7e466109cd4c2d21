package authz_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/regoauth/regoauth/authz/input"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
)

// An account chooses its own key's restrictions, and every token request names up to 32
// scopes. These tests build the most expensive key the store accepts and hold what its
// requests cost — time, allocation, memory kept — to a small multiple of an ordinary key's, so
// that no account can spend the server's capacity for everyone.

// largestAccepted is the longest prefix of candidates (halving from all of them) that the key
// store's validation accepts as restrictions.
func largestAccepted(candidates []string, set func(*keystore.Restrictions, []string)) []string {
	for n := len(candidates); n > 0; n /= 2 {
		var r keystore.Restrictions
		set(&r, candidates[:n])
		if r.Validate() == nil {
			// Climb back up from the accepted size to the exact limit.
			for n < len(candidates) {
				var r keystore.Restrictions
				set(&r, candidates[:n+1])
				if r.Validate() != nil {
					break
				}
				n++
			}
			return candidates[:n]
		}
	}
	return nil
}

// worstCaseInputs are the policy inputs of two token requests of n scopes, built as the token
// endpoint builds them: one by an ordinary key, one by the key with the most restrictions the
// store accepts (patterns that match none of the scopes, so every pattern is tried on every
// scope; networks whose last one holds the client; an action ceiling).
func worstCaseInputs(variant, n int) (ordinary, worst *policy.Input) {
	patterns := make([]string, 5000)
	for i := range patterns {
		patterns[i] = fmt.Sprintf("a%05d/*x", i)
	}
	cidrs := make([]string, 5000)
	for i := range cidrs {
		cidrs[i] = fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
	}
	patterns = largestAccepted(patterns, func(r *keystore.Restrictions, v []string) { r.Repositories = v })
	cidrs = largestAccepted(cidrs, func(r *keystore.Restrictions, v []string) { r.CIDRs = v })
	cidrs[len(cidrs)-1] = "203.0.113.0/24"
	scopes := make([]policy.Scope, n)
	for i := range scopes {
		scopes[i] = policy.Scope{Type: "repository", Name: fmt.Sprintf("z%d/s%d", variant, i), Actions: []string{"delete", "pull", "push"}}
	}
	p := keystore.Principal{Account: keystore.Account{Name: "user1"}, Key: keystore.Key{ID: "k1", Account: "user1"},
		Grants: accountGrants("user1", 10), Owned: []string{"user1/app"}}
	client := policy.Client{IP: "203.0.113.7", ID: "docker", UserAgent: "docker/28"}
	ordinary = input.Token("registry.example.com", client, &p, scopes)
	p.Key.Restrictions = keystore.Restrictions{Actions: []string{"pull", "push"}, Repositories: patterns, CIDRs: cidrs}
	worst = input.Token("registry.example.com", client, &p, scopes)
	return ordinary, worst
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// TestWorstCaseKeyCostsLittleMore decides the worst-case key's request and an ordinary one
// alternately and holds the median cost of the first within 4 times the second's.
func TestWorstCaseKeyCostsLittleMore(t *testing.T) {
	e := policy.New(policy.Options{})
	if err := e.LoadFS(context.Background(), policies.FS, policy.BuiltinBundle); err != nil {
		t.Fatal(err)
	}
	ordinary, worst := worstCaseInputs(0, 32)
	t.Logf("worst-case key: %d repository patterns, %d networks, 32 scopes", len(worst.Principal.Key.Restrictions.Repositories), len(worst.Principal.Key.Restrictions.CIDRs))
	var o, w []time.Duration
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 15 || (i < 60 && time.Now().Before(deadline)); i++ {
		for _, x := range []struct {
			in  *policy.Input
			out *[]time.Duration
		}{{ordinary, &o}, {worst, &w}} {
			start := time.Now()
			if _, err := e.Decide(context.Background(), x.in); err != nil {
				t.Fatal(err)
			}
			*x.out = append(*x.out, time.Since(start))
		}
	}
	ratio := float64(median(w)) / float64(median(o))
	t.Logf("32-scope decision: ordinary key %s, worst-case key %s (%.2fx), %d rounds", median(o), median(w), ratio, len(o))
	if ratio > 4 {
		t.Fatalf("the worst-case key's decision costs %.1f times an ordinary one's (limit 4)", ratio)
	}
}

// TestWorstCaseExplainIsBounded holds the work of explaining the worst-case key's request
// (bytes allocated, time) to a small multiple of explaining an ordinary one.
func TestWorstCaseExplainIsBounded(t *testing.T) {
	e := policy.New(policy.Options{})
	if err := e.LoadFS(context.Background(), policies.FS, policy.BuiltinBundle); err != nil {
		t.Fatal(err)
	}
	ordinary, worst := worstCaseInputs(0, 32)
	cost := func(in *policy.Input) (time.Duration, uint64) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		if _, err := e.Explain(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		return took, after.TotalAlloc - before.TotalAlloc
	}
	cost(ordinary) // warm up
	ot, oa := cost(ordinary)
	wt, wa := cost(worst)
	t.Logf("explain of a 32-scope request: ordinary key %s, %d KiB allocated; worst-case key %s, %d KiB allocated",
		ot, oa>>10, wt, wa>>10)
	if wa > 8*oa || wa > 256<<20 {
		t.Fatalf("explaining the worst-case key allocates %d MiB, %.1f times an ordinary explain (limits 8x, 256 MiB)", wa>>20, float64(wa)/float64(oa))
	}
}
