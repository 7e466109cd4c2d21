package policy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// dryRunQueue bounds the decisions waiting for the candidate: when the candidate falls behind,
// comparisons are dropped (and counted), never the requests.
const dryRunQueue = 1024

// DryRun makes candidate evaluate every decision this engine makes, off the request path, and
// log and count where the two disagree. Tokens and admin calls are decided by this engine
// alone. The candidate is started and stopped by the caller; Stop on this engine ends the
// comparisons. DryRun may be called once.
func (e *Engine) DryRun(candidate *Engine) {
	c := &comparer{engine: e, candidate: candidate, jobs: make(chan comparison, dryRunQueue), quit: make(chan struct{}), done: make(chan struct{})}
	if !e.dryRun.CompareAndSwap(nil, c) {
		return
	}
	go c.run()
}

// comparison is one decision to evaluate again with the candidate.
type comparison struct {
	q     query
	id    string
	input ast.Value
	// key is the input's canonical encoding, for the candidate's decision cache.
	key    string
	active evaluation
}

type comparer struct {
	engine    *Engine
	candidate *Engine
	// jobs is never closed: a decision made while the server shuts down must not panic.
	jobs     chan comparison
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// compare queues a decision for the candidate, if there is one. The input value is not
// changed after the decision, so the worker may read it; key is its canonical encoding. A
// decision the cache answered just as the candidate arrived has no input value, and is not
// compared.
func (e *Engine) compare(q query, id string, input ast.Value, key []byte, ev evaluation) {
	c := e.dryRun.Load()
	if c == nil {
		return
	}
	if input == nil {
		e.metrics.dryRun.WithLabelValues(q.label(), "dropped").Inc()
		return
	}
	select {
	case c.jobs <- comparison{q: q, id: id, input: input, key: string(key), active: ev}:
	default:
		e.metrics.dryRun.WithLabelValues(q.label(), "dropped").Inc()
	}
}

// stop finishes the comparisons already queued, then ends the worker.
func (c *comparer) stop() {
	c.stopOnce.Do(func() {
		close(c.quit)
		<-c.done
	})
}

func (c *comparer) run() {
	defer close(c.done)
	for {
		select {
		case job := <-c.jobs:
			c.check(job)
		case <-c.quit:
			for {
				select {
				case job := <-c.jobs:
					c.check(job)
				default:
					return
				}
			}
		}
	}
}

func (c *comparer) check(job comparison) {
	e := c.engine
	label := job.q.label()
	cand, hit, epoch, err := c.candidate.lookup(job.q, []byte(job.key))
	if err == nil && !hit {
		cand, err = c.candidate.eval(context.Background(), job.q, job.input, []byte(job.key), epoch)
	}
	if err != nil {
		e.metrics.dryRun.WithLabelValues(label, "error").Inc()
		e.opts.Logger.Warn("dry-run candidate failed", "decision_id", job.id, "query", label, "error", err)
		return
	}
	active, candidate := outcome(job.q, job.active), outcome(job.q, cand)
	if active == candidate {
		e.metrics.dryRun.WithLabelValues(label, "agree").Inc()
		return
	}
	e.metrics.dryRun.WithLabelValues(label, "disagree").Inc()
	attrs := []any{"decision_id", job.id, "query", label, "active", active, "candidate", candidate,
		"active_revision", job.active.rev.name, "candidate_revision", cand.rev.name}
	attrs = append(attrs, inputSummary(job.input)...)
	e.opts.Logger.Warn("dry-run disagreement", attrs...)
}

// outcome renders what a decision does, leaving out reasons: "repository:a:pull,push;
// repository:b:" for a token decision, "allow" or "deny" for an admin decision. Two decisions
// that grant the same agree.
func outcome(q query, ev evaluation) string {
	if q == queryAdmin {
		var d AdminDecision
		if !ev.defined || parseAdminDecision(ev.value, &d) != nil || !d.Allow {
			return "deny"
		}
		if d.MaxOwned > 0 {
			return fmt.Sprintf("allow (max_owned %d)", d.MaxOwned)
		}
		return "allow"
	}
	var d Decision
	if !ev.defined || parseQuery(q, ev, &d) != nil {
		return "deny all"
	}
	allowed := map[string]map[string]bool{}
	for _, s := range d.Access {
		key := s.Type + ":" + s.Name
		if allowed[key] == nil {
			allowed[key] = map[string]bool{}
		}
		for _, a := range s.Actions {
			allowed[key][a] = true
		}
	}
	parts := make([]string, 0, len(allowed))
	for _, key := range slices.Sorted(maps.Keys(allowed)) {
		parts = append(parts, key+":"+strings.Join(slices.Sorted(maps.Keys(allowed[key])), ","))
	}
	return strings.Join(parts, " ")
}

// inputSummary is who asked for what, for a disagreement's log line; the full input is in the
// decision log under the same decision_id.
func inputSummary(input ast.Value) []any {
	obj, ok := input.(ast.Object)
	if !ok {
		return nil
	}
	var out []any
	if p := obj.Get(ast.StringTerm("principal")); p != nil {
		if acc := p.Get(ast.StringTerm("account")); acc != nil {
			out = append(out, "account", strings.Trim(acc.String(), `"`))
		}
	}
	for _, key := range []string{"scopes", "operation", "target"} {
		if v := obj.Get(ast.StringTerm(key)); v != nil {
			out = append(out, key, fmt.Sprint(v))
		}
	}
	return out
}
