package policy

import (
	"context"
	"sync"

	"github.com/hashicorp/golang-lru/v2"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
)

// A decision is a function of its input, the policy and the data in the store, unless the policy
// calls a nondeterministic builtin (time.now_ns, http.send, rand.intn, ...). For a deterministic
// revision the engine therefore keeps recent decisions: a repeated input (the same client asking
// for the same scopes with the same grants) is answered without evaluating. The cache is emptied
// by every commit to the store, which is every policy or data change, so it is never stale; and
// a revision that uses a nondeterministic builtin is never cached at all.
type decisionCache struct {
	mu    sync.Mutex
	epoch uint64
	lru   *lru.Cache[uint64, cachedDecision]
}

type cachedDecision struct {
	query int
	input ast.Value
	ev    evaluation
}

func newDecisionCache(size int) *decisionCache {
	if size <= 0 {
		return nil
	}
	c, _ := lru.New[uint64, cachedDecision](size)
	return &decisionCache{lru: c}
}

// key hashes the query with the input; entries also keep the input to rule out collisions.
func cacheKey(q query, input ast.Value) uint64 { return uint64(input.Hash())*31 + uint64(q) }

func (c *decisionCache) get(q query, input ast.Value, rev *revision) (evaluation, bool) {
	if c == nil || !rev.deterministic {
		return evaluation{}, false
	}
	d, ok := c.lru.Get(cacheKey(q, input))
	if !ok || d.query != int(q) || d.ev.rev != rev || d.input.Compare(input) != 0 {
		return evaluation{}, false
	}
	return d.ev, true
}

// epochNow is read before a store transaction is opened; put stores only if no commit came
// between, so a decision evaluated on data that has since changed is never kept.
func (c *decisionCache) epochNow() uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

func (c *decisionCache) put(q query, input ast.Value, ev evaluation, epoch uint64) {
	if c == nil || !ev.rev.deterministic {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch == epoch {
		c.lru.Add(cacheKey(q, input), cachedDecision{query: int(q), input: input, ev: ev})
	}
}

// onCommit runs inside every committing write transaction of the store.
func (c *decisionCache) onCommit(context.Context, storage.Transaction, storage.TriggerEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.lru.Purge()
}

// deterministic reports whether no module of the compiler calls a nondeterministic builtin.
func deterministic(compiler *ast.Compiler) bool {
	ok := true
	for _, m := range compiler.Modules {
		ast.WalkExprs(m, func(x *ast.Expr) bool {
			if !x.IsCall() {
				return false
			}
			name := x.Operator().String()
			if b, found := ast.BuiltinMap[name]; found && b.IsNondeterministic() {
				ok = false
			}
			return !ok
		})
	}
	return ok
}
