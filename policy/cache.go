package policy

import (
	"context"
	"hash/maphash"
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
//
// A decision is kept the second time its input is seen within a while, not the first: most
// inputs are never repeated (a random repository, a pull that needs one token), and keeping
// each of them would fill the cache with entries that are never read, costing a copy per
// request and a heap the collector scans again and again while they age out. The inputs seen
// once are remembered only by their hash, one word each in a fixed table.
type decisionCache struct {
	mu    sync.Mutex
	epoch uint64
	lru   *lru.Cache[uint64, cachedDecision]
	// seen holds the keys of inputs evaluated once, each in the slot its low bits name; a
	// later key in the same slot replaces it.
	seen []uint64
	// bytes is what the entries hold, by estimate; max bounds it.
	bytes, max int64
}

type cachedDecision struct {
	query int
	// key is the input's canonical encoding (appendKey).
	key  string
	ev   evaluation
	size int64
}

// The cache is bounded by bytes, not entries: an input's size is chosen by its caller (a key's
// restrictions, an account's groups), so a count of entries bounds nothing. An entry's size is
// an estimate of what its input and decision keep on the heap, on the high side (shared terms
// are counted once per entry); an entry over a sixty-fourth of the budget is not kept at all, so
// that no single caller can empty the cache of everyone else's decisions in a few requests.
func newDecisionCache(maxBytes int64) *decisionCache {
	if maxBytes <= 0 {
		return nil
	}
	c := &decisionCache{max: maxBytes, seen: make([]uint64, seenSlots(maxBytes))}
	// The entry count is no limit of its own: entries of at least minEntryBytes fill the budget
	// before it.
	l, _ := lru.NewWithEvict(int(max(maxBytes/minEntryBytes, 1)), func(_ uint64, d cachedDecision) { c.bytes -= d.size })
	c.lru = l
	return c
}

// minEntryBytes is the smallest size estimate of an entry (its bookkeeping).
const minEntryBytes = 256

// seenSlots is the size of the table of inputs seen once: about one slot per KiB of budget
// (an entry counts 1-2 KiB), a power of two between 1,024 and 262,144 (8 KiB to 2 MiB).
func seenSlots(maxBytes int64) int {
	n := 1024
	for n < 1<<18 && int64(n) < maxBytes>>10 {
		n <<= 1
	}
	return n
}

// keySeed makes the hashes of inputs this process's own: a caller cannot choose inputs whose
// hashes collide, to push others' decisions out of the table of inputs seen once.
var keySeed = maphash.MakeSeed()

// cacheKey hashes the query with the input's canonical encoding (appendKey); entries also keep
// the encoding to rule out collisions.
func cacheKey(q query, key []byte) uint64 { return maphash.Bytes(keySeed, key)*31 + uint64(q) }

func (c *decisionCache) get(q query, key []byte, rev *revision) (evaluation, bool) {
	if c == nil || !rev.deterministic {
		return evaluation{}, false
	}
	d, ok := c.lru.Get(cacheKey(q, key))
	if !ok || d.query != int(q) || d.ev.rev != rev || d.key != string(key) {
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

func (c *decisionCache) put(q query, input []byte, ev evaluation, epoch uint64) {
	if c == nil || !ev.rev.deterministic {
		return
	}
	key := cacheKey(q, input)
	if !c.seenBefore(key) {
		return
	}
	size := minEntryBytes + 16 + int64(len(input)) + valueSize(ev.value)
	if size > c.max/64 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	c.lru.Remove(key) // a replaced entry gives its bytes back through the eviction callback
	c.lru.Add(key, cachedDecision{query: int(q), key: string(input), ev: ev, size: size})
	c.bytes += size
	for c.bytes > c.max {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
}

// seenBefore reports whether key was seen since its slot last changed, and remembers it.
func (c *decisionCache) seenBefore(key uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	slot := &c.seen[key&uint64(len(c.seen)-1)]
	if *slot == key {
		return true
	}
	*slot = key
	return false
}

// size reports the bytes the entries hold, by estimate.
func (c *decisionCache) size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// valueSize estimates the heap an OPA value holds: its strings, and the terms, elements and
// hash-table entries around them (figures from the ast types' layouts, rounded up).
func valueSize(v ast.Value) int64 {
	switch x := v.(type) {
	case ast.String:
		return 32 + int64(len(x))
	case ast.Number:
		return 32 + int64(len(x))
	case *ast.Array:
		n := int64(64)
		x.Foreach(func(t *ast.Term) { n += 64 + valueSize(t.Value) })
		return n
	case ast.Object:
		n := int64(128)
		x.Foreach(func(k, v *ast.Term) { n += 160 + valueSize(k.Value) + valueSize(v.Value) })
		return n
	case ast.Set:
		n := int64(128)
		x.Foreach(func(t *ast.Term) { n += 128 + valueSize(t.Value) })
		return n
	}
	return 32
}

// onCommit runs inside every committing write transaction of the store.
func (c *decisionCache) onCommit(context.Context, storage.Transaction, storage.TriggerEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.lru.Purge()
}

// readsTheClock are builtins that read the clock without OPA marking them nondeterministic:
// given no time, the x509 chain checks verify against time.Now. A decision calling one is no
// function of its input and data: kept, it would still permit once a certificate expired.
var readsTheClock = map[string]bool{
	ast.CryptoX509ParseAndVerifyCertificates.Name:            true,
	ast.CryptoX509ParseAndVerifyCertificatesWithOptions.Name: true,
}

// deterministic reports whether no module of the compiler calls a nondeterministic builtin,
// or one that reads the clock (readsTheClock).
func deterministic(compiler *ast.Compiler) bool {
	ok := true
	for _, m := range compiler.Modules {
		ast.WalkExprs(m, func(x *ast.Expr) bool {
			if !x.IsCall() {
				return false
			}
			name := x.Operator().String()
			if b, found := ast.BuiltinMap[name]; found && (b.IsNondeterministic() || readsTheClock[name]) {
				ok = false
			}
			return !ok
		})
	}
	return ok
}
