// Package policy embeds Open Policy Agent: it loads Rego policies and data, prepares the
// decision queries once per policy revision, swaps revisions atomically, and turns a request's
// Input into a Decision. An undefined or malformed decision is a deny. It knows nothing about
// HTTP.
package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	stdstrings "strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Default decision paths.
const (
	DefaultDecisionQuery = "data.regoauth.authz.decision"
	DefaultAdminQuery    = "data.regoauth.admin.decision"
)

// ErrNotReady means no policy has been activated yet.
var ErrNotReady = errors.New("no policy is active")

// Options configure an Engine.
type Options struct {
	// DecisionQuery and AdminQuery are the paths of the token and admin decisions.
	DecisionQuery string
	AdminQuery    string
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// Engine evaluates decisions against the active policy revision.
type Engine struct {
	opts    Options
	active  atomic.Pointer[revision]
	metrics *metrics
}

// revision is one compiled policy with its prepared queries.
type revision struct {
	name     string
	compiler *ast.Compiler
	store    storage.Store
	authz    rego.PreparedEvalQuery
	admin    rego.PreparedEvalQuery
}

// New returns an engine with no active policy; Ready is false until a Load succeeds.
func New(opts Options) *Engine {
	if opts.DecisionQuery == "" {
		opts.DecisionQuery = DefaultDecisionQuery
	}
	if opts.AdminQuery == "" {
		opts.AdminQuery = DefaultAdminQuery
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Engine{opts: opts, metrics: newMetrics(opts.Registerer)}
}

// Ready reports whether a policy is active.
func (e *Engine) Ready() bool { return e.active.Load() != nil }

// Revision names the active policy, or "" when none is.
func (e *Engine) Revision() string {
	if r := e.active.Load(); r != nil {
		return r.name
	}
	return ""
}

// LoadFS compiles the Rego modules and JSON/YAML data in fsys (test files excluded), prepares
// the decision queries and makes the result active. On any error the previous revision stays
// active.
func (e *Engine) LoadFS(ctx context.Context, fsys fs.FS, name string) error {
	res, err := loader.NewFileLoader().WithFS(fsys).WithRegoVersion(ast.RegoV1).
		Filtered([]string{"."}, func(_ string, info fs.FileInfo, _ int) bool {
			return !info.IsDir() && stdstrings.HasSuffix(info.Name(), "_test.rego")
		})
	if err != nil {
		return e.failed(name, fmt.Errorf("loading policy %s: %w", name, err))
	}
	store, err := res.Store()
	if err != nil {
		return e.failed(name, err)
	}
	compiler := ast.NewCompiler().WithStrict(true)
	if compiler.Compile(res.ParsedModules()); compiler.Failed() {
		return e.failed(name, fmt.Errorf("compiling policy %s: %w", name, compiler.Errors))
	}
	return e.activate(ctx, name, compiler, store)
}

func (e *Engine) activate(ctx context.Context, name string, compiler *ast.Compiler, store storage.Store) error {
	r := &revision{name: name, compiler: compiler, store: store}
	var err error
	if r.authz, err = e.prepare(ctx, r, e.opts.DecisionQuery); err != nil {
		return e.failed(name, err)
	}
	if r.admin, err = e.prepare(ctx, r, e.opts.AdminQuery); err != nil {
		return e.failed(name, err)
	}
	e.active.Store(r)
	e.metrics.activations.WithLabelValues("success").Inc()
	e.opts.Logger.Info("policy activated", "revision", name)
	return nil
}

func (e *Engine) prepare(ctx context.Context, r *revision, query string) (rego.PreparedEvalQuery, error) {
	pq, err := rego.New(
		rego.Query(query),
		rego.Compiler(r.compiler),
		rego.Store(r.store),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
	if err != nil {
		return pq, fmt.Errorf("preparing %s: %w", query, err)
	}
	return pq, nil
}

func (e *Engine) failed(name string, err error) error {
	e.metrics.activations.WithLabelValues("failure").Inc()
	e.opts.Logger.Error("policy activation failed; the previous revision stays active", "revision", name, "error", err)
	return err
}

// Decide evaluates the token decision for in. A policy error is returned as an error (the
// caller fails closed); an undefined or malformed decision is a Decision that allows nothing.
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	r := e.active.Load()
	if r == nil {
		return Decision{}, ErrNotReady
	}
	d := Decision{ID: newDecisionID()}
	start := time.Now()
	rs, err := r.authz.Eval(ctx, rego.EvalParsedInput(in.value()))
	e.metrics.evalSeconds.WithLabelValues("authz").Observe(time.Since(start).Seconds())
	if err != nil {
		e.metrics.outcomes.WithLabelValues("authz", "error").Inc()
		return d, fmt.Errorf("evaluating %s: %w", e.opts.DecisionQuery, err)
	}
	doc, ok := single(rs)
	if !ok {
		e.metrics.outcomes.WithLabelValues("authz", "undefined").Inc()
		return d, nil
	}
	if err := parseDecision(doc, &d); err != nil {
		e.metrics.outcomes.WithLabelValues("authz", "malformed").Inc()
		e.opts.Logger.Warn("malformed policy decision treated as deny", "decision_id", d.ID, "error", err)
		return Decision{ID: d.ID}, nil
	}
	d.Defined = true
	e.metrics.outcomes.WithLabelValues("authz", "defined").Inc()
	return d, nil
}

// Authorize evaluates the admin decision for in. Anything but an explicit allow is a deny.
func (e *Engine) Authorize(ctx context.Context, in *AdminInput) (AdminDecision, error) {
	r := e.active.Load()
	if r == nil {
		return AdminDecision{}, ErrNotReady
	}
	d := AdminDecision{ID: newDecisionID()}
	start := time.Now()
	rs, err := r.admin.Eval(ctx, rego.EvalParsedInput(in.value()))
	e.metrics.evalSeconds.WithLabelValues("admin").Observe(time.Since(start).Seconds())
	if err != nil {
		e.metrics.outcomes.WithLabelValues("admin", "error").Inc()
		return d, fmt.Errorf("evaluating %s: %w", e.opts.AdminQuery, err)
	}
	doc, ok := single(rs)
	if !ok {
		e.metrics.outcomes.WithLabelValues("admin", "undefined").Inc()
		return d, nil
	}
	obj, _ := doc.(map[string]any)
	d.Allow, _ = obj["allow"].(bool)
	d.Reasons = stringList(obj["reasons"])
	e.metrics.outcomes.WithLabelValues("admin", "defined").Inc()
	return d, nil
}

func single(rs rego.ResultSet) (any, bool) {
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, false
	}
	return rs[0].Expressions[0].Value, true
}

// parseDecision reads {"access": [{"type","name","actions"}...], "reasons": [...]}.
func parseDecision(doc any, d *Decision) error {
	obj, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("decision is %T, want an object", doc)
	}
	entries, ok := obj["access"].([]any)
	if !ok {
		return errors.New(`decision has no "access" array`)
	}
	for _, raw := range entries {
		entry, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("access entry is %T, want an object", raw)
		}
		typ, _ := entry["type"].(string)
		name, _ := entry["name"].(string)
		actions, ok := entry["actions"].([]any)
		if typ == "" || name == "" || !ok {
			return fmt.Errorf("access entry %v needs type, name and an actions array", entry)
		}
		s := Scope{Type: typ, Name: name, Actions: make([]string, 0, len(actions))}
		for _, a := range actions {
			as, ok := a.(string)
			if !ok {
				return fmt.Errorf("action %v is not a string", a)
			}
			s.Actions = append(s.Actions, as)
		}
		d.Access = append(d.Access, s)
	}
	d.Reasons = stringList(obj["reasons"])
	return nil
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// newDecisionID returns a random UUID, the form OPA's decision logs use.
func newDecisionID() string { return uuid.NewString() }
