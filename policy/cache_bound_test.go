package policy

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/regoauth/regoauth/policies"
)

// largeInput is a token input as large as the key store lets a caller make it (16 repository
// patterns and 16 networks on its key), for one scope named after variant.
func largeInput(variant int) *Input {
	in := storyInput()
	r := &Restrictions{Actions: []string{"pull", "push"}}
	for i := range 16 {
		r.Repositories = append(r.Repositories, fmt.Sprintf("a%05d/some-long-repository-name-%d/*x", i, variant))
		r.CIDRs = append(r.CIDRs, fmt.Sprintf("10.%d.%d.0/24", variant%256, i))
	}
	in.Principal.Key.Restrictions = r
	in.Scopes = []Scope{{Type: "repository", Name: fmt.Sprintf("z%d/s", variant), Actions: []string{"delete", "pull", "push"}}}
	return in
}

// TestDecisionCacheMemoryIsBounded fills decision caches with large inputs' decisions, several
// times over their budget, and holds the heap they keep to the budget. (The server's default,
// 64 MiB, is the same mechanism; filling it takes 20,000 decisions and about a minute.)
func TestDecisionCacheMemoryIsBounded(t *testing.T) {
	for _, tt := range []struct {
		name      string
		budget    int64
		decisions int
	}{
		{"1 MiB", 1 << 20, 3000},
		{"4 MiB", 4 << 20, 4000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The library evaluated, as a bundle with an extension is: native decisions are
			// not cached.
			e := New(Options{DecisionCacheBytes: tt.budget, EvaluateAll: true})
			if err := e.LoadFS(ctx, policies.FS, "builtin"); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := range tt.decisions {
				// Twice: the cache keeps a decision the second time its input is seen.
				for range 2 {
					if _, err := e.Decide(ctx, largeInput(i)); err != nil {
						t.Fatal(err)
					}
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("%d decisions of large inputs: the cache counts %d KiB, the heap kept %d KiB (budget %d KiB)",
				tt.decisions, e.cache.size()>>10, kept>>10, tt.budget>>10)
			if e.cache.size() > tt.budget || kept > tt.budget {
				t.Fatalf("the decision cache keeps %d KiB (heap %d KiB), over its %d KiB budget", e.cache.size()>>10, kept>>10, tt.budget>>10)
			}
			if e.cache.lru.Len() == 0 {
				t.Fatal("nothing was cached: the test proves nothing")
			}
			runtime.KeepAlive(e)
		})
	}
}
