// Package policy embeds Open Policy Agent: it loads Rego policies and data from a built-in
// library, bundle directories, bundle tarballs and bundle servers through OPA's own plugin
// manager (bundles, signature verification, decision logs, status), reloads local bundles when
// they change, prepares the decision queries once per policy revision and swaps revisions
// atomically, and turns a request's Input into a Decision. An undefined or malformed decision
// is a deny. It also explains decisions and evaluates a candidate policy beside the active one
// (dry run). It knows nothing about HTTP, and nothing about the key store: callers build the
// Input.
package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	opametrics "github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/plugins"
	bundleplugin "github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/plugins/discovery"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
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
	// Source says where the policy comes from.
	Source Source
	// ID names this instance in decision logs and status reports (OPA's labels.id); random
	// when empty.
	ID         string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// DecisionCacheBytes bounds, in bytes, the recent decisions of a deterministic policy that
	// are kept (0: none). See decisionCache for what an entry is counted as.
	DecisionCacheBytes int64
	// EvaluateAll evaluates every token decision, also while the active policy is the library
	// alone, configured by data, which is otherwise decided natively (native.go).
	EvaluateAll bool
}

// query indexes the prepared decision queries of a revision.
type query int

const (
	queryAuthz query = iota
	queryAdmin
	// queryAccess is the "access" of the token decision alone: what the server reads of it. A
	// policy that writes its decision key by key (the library does) then evaluates neither
	// the reasons nor anything else it holds; one that writes it whole evaluates it whole.
	queryAccess
	queryCount
)

func (q query) label() string {
	if q == queryAdmin {
		return "admin"
	}
	return "authz"
}

// Engine evaluates decisions against the active policy revision.
type Engine struct {
	opts    Options
	queries [queryCount]string
	paths   [queryCount]string
	// initErr is a configuration error found by New, reported by Start and LoadFS.
	initErr error

	// store holds the policy and its data; gate is the same store as the plugins and LoadFS
	// write it, refusing a transaction whose policy cannot be activated (see admit).
	store   storage.Store
	gate    *gatedStore
	draft   atomic.Pointer[draft]
	manager *plugins.Manager
	// bundles are the names of the configured bundles; a policy is complete (and the engine
	// ready) once every one of them is active.
	bundles []string
	// localDirs are the local (file://) bundles' paths, read before the plugins start: admit
	// refuses an activation while one of them holds a symbolic link (linkIn).
	localDirs []string
	logs      *logs.Plugin
	active    atomic.Pointer[revision]
	// generations counts the revisions activated.
	generations atomic.Uint64
	metrics     *metrics
	cache       *decisionCache
	native      nativeState
	status      *bundleStatus
	dryRun      atomic.Pointer[comparer]

	// loadMu serialises LoadFS; fsBundle is the bundle it activated last.
	loadMu   sync.Mutex
	fsBundle string

	startOnce sync.Once
	stopOnce  sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

// revision is one compiled policy with its prepared queries.
type revision struct {
	// bundles maps each active bundle to its manifest revision.
	bundles    map[string]string
	name       string
	generation uint64
	activated  time.Time
	compiler   *ast.Compiler
	prepared   preparedQueries
	// deterministic is true when no module calls a nondeterministic builtin: its decisions may
	// be cached.
	deterministic bool
}

// New returns an engine with no active policy; Ready is false until a policy is activated, by
// Start (from opts.Source) or LoadFS. New does not fail: a configuration it cannot use is
// reported by Start and by LoadFS.
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
	if opts.ID == "" {
		opts.ID = uuid.NewString()
	}
	e := &Engine{
		opts:    opts,
		queries: [queryCount]string{opts.DecisionQuery, opts.AdminQuery, opts.DecisionQuery},
		metrics: newMetrics(opts.Registerer),
		status:  newBundleStatus(),
		done:    make(chan struct{}),
		cache:   newDecisionCache(opts.DecisionCacheBytes),
	}
	e.initErr = e.init()
	return e
}

// init builds OPA's plugin manager over an in-memory store, with the plugins the configuration
// enables, and initialises the store. Nothing runs until Start.
func (e *Engine) init() error {
	for i, q := range e.queries {
		ref, err := ast.ParseRef(q)
		if err != nil || !ref.HasPrefix(ast.DefaultRootRef) {
			return fmt.Errorf("%w: decision %q is not a data reference like data.regoauth.authz.decision", ErrConfig, q)
		}
		if query(i) == queryAccess {
			ref = ref.Append(keyAccess)
			e.queries[i] = ref.String()
		}
		e.paths[i] = dataPath(ref)
	}
	raw, names, err := e.opts.Source.opaConfig()
	if err != nil {
		return err
	}
	e.bundles = names
	// AST values on read: data reads during evaluation skip a conversion per request.
	e.store = inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	if err := storage.Txn(context.Background(), e.store, storage.WriteParams, func(txn storage.Transaction) error {
		if _, err := e.store.Register(context.Background(), txn, storage.TriggerConfig{OnCommit: e.native.onCommit}); err != nil {
			return err
		}
		if e.cache == nil {
			return nil
		}
		_, err := e.store.Register(context.Background(), txn, storage.TriggerConfig{OnCommit: e.cache.onCommit})
		return err
	}); err != nil {
		return fmt.Errorf("watching the policy store: %w", err)
	}
	e.gate = &gatedStore{Store: e.store, admit: e.admit, open: map[storage.Transaction]*storage.Context{}}
	// OPA's plugins log through the engine's logger (their lines carry "plugin"), and console
	// decision logs go to the same stream, one "Decision Log" line per decision.
	managerOpts := []func(*plugins.Manager){
		plugins.Logger(newOPALogger(e.opts.Logger)),
		plugins.ConsoleLogger(newOPALogger(e.opts.Logger)),
		plugins.WithParserOptions(ast.ParserOptions{ProcessAnnotation: true, RegoVersion: ast.RegoV1}),
	}
	if e.opts.Registerer != nil {
		// OPA's own metrics (status plugin with prometheus: true) join the server's registry
		// under the project's namespace.
		managerOpts = append(managerOpts, plugins.WithPrometheusRegister(prometheus.WrapRegistererWithPrefix("regoauth_opa_", e.opts.Registerer)))
	}
	m, err := plugins.New(raw, e.opts.ID, e.gate, managerOpts...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	e.manager = m
	m.RegisterCompilerTrigger(e.onCompile)
	if err := m.Init(context.Background()); err != nil {
		return fmt.Errorf("initialising the policy store: %w", err)
	}
	// Discovery instantiates the standard plugins (bundle, decision logs, status) from the
	// configuration, or from a discovery bundle when one is configured, as OPA itself does.
	d, err := discovery.New(m)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	m.Register(discovery.Name, d)
	if bp := bundleplugin.Lookup(m); bp != nil {
		bp.Register("regoauth", e.onBundleStatus)
	}
	e.logs = logs.Lookup(m)
	return nil
}

// dataPath turns data.a.b into a/b, the form OPA's decision logs use for a path.
func dataPath(ref ast.Ref) string {
	parts := make([]string, 0, len(ref)-1)
	for _, t := range ref[1:] {
		if s, ok := t.Value.(ast.String); ok {
			parts = append(parts, string(s))
		} else {
			parts = append(parts, t.String())
		}
	}
	return strings.Join(parts, "/")
}

// Ready reports whether a policy is active.
func (e *Engine) Ready() bool { return e.active.Load() != nil }

// Revision names the active policy (its bundles and their revisions), or "" when none is.
func (e *Engine) Revision() string {
	if r := e.active.Load(); r != nil {
		return r.name
	}
	return ""
}

// Start activates the built-in bundle, starts OPA's plugins (bundle downloads, decision logs,
// status) and the watchers of local bundles. It waits for the first load of every local bundle
// and fails if one cannot be activated; bundles from a server arrive in the background (the
// engine is not ready until they have). Stop ends what Start started.
func (e *Engine) Start(ctx context.Context) error {
	if e.initErr != nil {
		return e.initErr
	}
	var err error
	e.startOnce.Do(func() { err = e.start(ctx) })
	return err
}

func (e *Engine) start(ctx context.Context) error {
	if b := e.opts.Source.Builtin; b != nil {
		if err := e.LoadFS(ctx, b, BuiltinBundle); err != nil {
			return err
		}
	}
	local := e.localBundles()
	for _, path := range local {
		e.localDirs = append(e.localDirs, path)
	}
	// Checked here too, not only as a revision is admitted: OPA refuses some folders of links
	// itself before that, in words that do not say why (a ConfigMap's, or a folder that is a link).
	if err := e.linkedFolders(); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	w, err := newWatcher(e, local)
	if err != nil {
		return err
	}
	// The plugins' loops outlive ctx (which may only bound the start): they end with Stop, which
	// waits for the watcher only once it runs.
	runCtx, cancel := context.WithCancel(context.Background())
	if err := e.manager.Start(runCtx); err != nil {
		cancel()
		w.close()
		return fmt.Errorf("starting OPA plugins: %w", err)
	}
	e.cancel = cancel
	go func() {
		defer close(e.done)
		w.run(runCtx)
	}()
	for name := range local {
		if err := e.status.waitFirst(ctx, name); err != nil {
			if e.opts.Source.Builtin != nil && strings.Contains(err.Error(), "overlap") {
				return fmt.Errorf("policy bundle %s: %w (its .manifest roots must leave the built-in library's regoauth/authz and regoauth/admin alone; a bundle that replaces the library needs builtin: false)", name, err)
			}
			return fmt.Errorf("policy bundle %s: %w", name, err)
		}
	}
	return nil
}

// Run is Start as an actor: it runs until ctx ends, then stops the engine with a deadline so
// buffered decision logs are uploaded.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.Stop(stop)
	return nil
}

// Stop stops OPA's plugins (flushing decision logs within ctx's deadline) and the watchers.
func (e *Engine) Stop(ctx context.Context) {
	e.stopOnce.Do(func() {
		if c := e.dryRun.Load(); c != nil {
			c.stop()
		}
		if e.manager == nil {
			return
		}
		e.manager.Stop(ctx)
		if e.cancel != nil {
			e.cancel()
			<-e.done
		}
	})
}

// LoadFS activates the bundle in fsys (Rego modules, data files and an optional .manifest; test
// files excluded) under name, replacing the bundle LoadFS activated before. Its modules are
// compiled strictly. On any error the previous revision stays active.
func (e *Engine) LoadFS(ctx context.Context, fsys fs.FS, name string) error {
	if e.initErr != nil {
		return e.initErr
	}
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	loader, err := bundle.NewFSLoader(fsys)
	if err != nil {
		return e.failed(name, fmt.Errorf("loading policy %s: %w", name, err))
	}
	b, err := bundle.NewCustomReader(loader.WithFilter(skipTests)).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotations(true).
		WithBundleName(name).
		Read()
	if err != nil {
		return e.failed(name, fmt.Errorf("loading policy %s: %w", name, err))
	}
	params := storage.WriteParams
	params.Context = storage.NewContext()
	err = storage.Txn(ctx, e.gate, params, func(txn storage.Transaction) error {
		if prev := e.fsBundle; prev != "" && prev != name {
			if err := bundle.Deactivate(&bundle.DeactivateOpts{
				Ctx: ctx, Store: e.gate, Txn: txn, BundleNames: map[string]struct{}{prev: {}},
				ParserOptions: e.manager.ParserOptions(),
			}); err != nil {
				return err
			}
		}
		compiler := ast.NewCompiler().WithStrict(true).
			WithPathConflictsCheck(storage.NonEmpty(ctx, e.store, txn))
		if b.Manifest.Roots != nil {
			compiler = compiler.WithPathConflictsCheckRoots(*b.Manifest.Roots)
		}
		err := bundle.Activate(&bundle.ActivateOpts{
			Ctx: ctx, Store: e.gate, Txn: txn, TxnCtx: params.Context,
			Compiler: compiler, Metrics: opametrics.New(),
			Bundles:       map[string]*bundle.Bundle{name: &b},
			ParserOptions: e.manager.ParserOptions(),
		})
		// The manager hands this compiler to onCompile when the transaction commits.
		plugins.SetCompilerOnContext(params.Context, compiler)
		return err
	})
	if err != nil {
		return e.failed(name, fmt.Errorf("activating policy %s: %w", name, err))
	}
	e.fsBundle = name
	return nil
}

// skipTests keeps *_test.rego files out of a loaded bundle: tests stay beside the policy in
// the source tree without taking part in decisions.
func skipTests(_ string, info fs.FileInfo, _ int) bool {
	return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
}

// onCompile runs when a transaction that changed the policy commits, while the store's write
// lock is still held: every evaluation opens its read transaction before it loads the active
// revision, so it sees either the old policy with the old data or the new with the new, never
// a mix, and never waits longer than this swap. The policy was admitted before the commit
// (admit); one that was not, and does not prepare now, leaves no policy active: decisions
// fail closed until a bundle that prepares arrives.
func (e *Engine) onCompile(txn storage.Transaction) {
	ctx := context.Background()
	compiler := e.manager.GetCompiler()
	d := e.draft.Swap(nil)
	if compiler == nil || len(compiler.Modules) == 0 {
		return
	}
	active, complete, err := e.complete(ctx, txn)
	if err != nil {
		e.opts.Logger.Error("reading the active bundles", "error", err)
		return
	}
	if !complete {
		e.opts.Logger.Info("policy not complete yet: waiting for bundles", "active", slices.Sorted(maps.Keys(active)), "configured", e.bundles)
		return
	}
	r := &revision{bundles: active, activated: time.Now().UTC(), compiler: compiler, name: revisionName(active), deterministic: deterministic(compiler)}
	r.generation = e.generations.Add(1)
	if d != nil && d.compiler == compiler {
		r.prepared = d.prepared
	} else if r.prepared, err = e.prepare(ctx, compiler, txn); err != nil {
		e.active.Store(nil)
		e.metrics.activations.WithLabelValues("failure").Inc()
		e.opts.Logger.Error("preparing the decision queries failed; no policy is active until one that prepares is", "error", err)
		return
	}
	e.active.Store(r)
	e.metrics.activations.WithLabelValues("success").Inc()
	e.metrics.activeGeneration.Set(float64(r.generation))
	e.opts.Logger.Info("policy activated", "revision", r.name, "generation", r.generation)
}

// revisionName is "name@revision" for each active bundle (just the name when the bundle has no
// revision), sorted.
func revisionName(bundles map[string]string) string {
	parts := make([]string, 0, len(bundles))
	for _, n := range slices.Sorted(maps.Keys(bundles)) {
		if rev := bundles[n]; rev != "" {
			parts = append(parts, n+"@"+rev)
		} else {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, ",")
}

func (e *Engine) failed(name string, err error) error {
	e.metrics.activations.WithLabelValues("failure").Inc()
	e.opts.Logger.Error("policy activation failed; the previous revision stays active", "bundle", name, "error", err)
	return err
}

// evaluation is the result of one query against one revision.
type evaluation struct {
	rev *revision
	// value is the document as OPA made it: the server reads its decisions from it without
	// converting them to Go values first.
	value   ast.Value
	defined bool
}

// doc is the document as JSON-like Go values (maps, slices, json.Number), the form OPA's
// decision logs, explanations and the admin API show; nil when it is undefined.
func (ev evaluation) doc() any {
	if !ev.defined {
		return nil
	}
	v, err := ast.JSON(ev.value)
	if err != nil {
		return nil
	}
	return v
}

// evalOptions are the options of every evaluation: OPA's own metrics are not collected (they
// would cost a map and timers per evaluation), and the result stays an OPA value.
var evalOptions = []rego.EvalOption{
	rego.EvalMetrics(opametrics.NoOp()),
	rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }),
}

// lookup answers query q from the decision cache, by key, its input's canonical encoding
// (appendKey). epoch is the cache's epoch before the lookup, for eval to keep a decision under.
// It returns ErrNotReady while no policy is active.
func (e *Engine) lookup(q query, key []byte) (ev evaluation, hit bool, epoch uint64, err error) {
	epoch = e.cache.epochNow()
	r := e.active.Load()
	if r == nil {
		return evaluation{}, false, epoch, ErrNotReady
	}
	if ev, ok := e.cache.get(q, key, r); ok {
		e.metrics.cache.WithLabelValues(q.label(), "hit").Inc()
		return ev, true, epoch, nil
	}
	return evaluation{}, false, epoch, nil
}

// eval evaluates query q on input within one read transaction of the store: the revision it
// loads is the one that matches the data it reads (see onCompile). With a key (the input's
// canonical encoding, after a lookup that missed at epoch) the decision may be kept in the
// cache; evaluations with extra options (a tracer) are never kept.
func (e *Engine) eval(ctx context.Context, q query, input ast.Value, key []byte, epoch uint64, extra ...rego.EvalOption) (evaluation, error) {
	// The active revision may end (onCompile fails closed) between any two loads: each load is
	// checked.
	cacheable := key != nil && len(extra) == 0
	txn, err := e.store.NewTransaction(ctx)
	if err != nil {
		return evaluation{}, fmt.Errorf("opening a policy store transaction: %w", err)
	}
	defer e.store.Abort(ctx, txn)
	r := e.active.Load()
	if r == nil {
		return evaluation{}, ErrNotReady
	}
	opts := slices.Concat(evalOptions, []rego.EvalOption{rego.EvalParsedInput(input), rego.EvalTransaction(txn)}, extra)
	start := time.Now()
	rs, err := r.prepared.queries[q].Eval(ctx, opts...)
	e.metrics.evalSeconds.WithLabelValues(q.label()).Observe(time.Since(start).Seconds())
	ev := evaluation{rev: r}
	if err != nil {
		e.metrics.outcomes.WithLabelValues(q.label(), "error").Inc()
		return ev, fmt.Errorf("evaluating %s: %w", e.queries[q], err)
	}
	ev.value, ev.defined = single(rs)
	if cacheable && e.cache != nil {
		e.metrics.cache.WithLabelValues(q.label(), "miss").Inc()
		e.cache.put(q, key, ev, epoch)
	}
	return ev, nil
}

// keyBuffers hold the canonical encodings of inputs while they are looked up.
var keyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// decide answers query q for the input whose canonical encoding is key: from the decision cache
// when it holds the answer, otherwise by evaluating the input's value, which value builds. The
// value is built on a hit too when a decision log or a dry run will read it; otherwise a hit
// builds no OPA value at all, and returns a nil input.
func (e *Engine) decide(ctx context.Context, q query, key []byte, value func() ast.Value) (evaluation, ast.Value, error) {
	ev, hit, epoch, err := e.lookup(q, key)
	if err != nil {
		return ev, nil, err
	}
	if hit {
		if e.logs == nil && e.dryRun.Load() == nil {
			return ev, nil, nil
		}
		return ev, value(), nil
	}
	input := value()
	ev, err = e.eval(ctx, q, input, key, epoch)
	return ev, input, err
}

// Decide evaluates the token decision for in. A policy error is returned as an error (the
// caller fails closed); an undefined or malformed decision is a Decision that allows nothing.
// Either way the decision has an ID, the decision_id of its decision log entry.
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	d := Decision{ID: newDecisionID()}
	// The library alone decides natively (native.go) unless the decision is logged or
	// compared, which needs the whole decision as OPA makes it.
	if r := e.active.Load(); r != nil && !e.opts.EvaluateAll && e.logs == nil && e.dryRun.Load() == nil {
		if lib := e.nativeFor(ctx, r); lib != nil {
			if access, err := lib.decide(in); err == nil {
				e.metrics.nativeDecisions.Inc()
				e.metrics.authzDefined.Inc()
				d.Access, d.Defined = access, true
				return d, nil
			}
		}
	}
	buf := keyBuffers.Get().(*[]byte)
	defer keyBuffers.Put(buf)
	*buf = in.appendKey((*buf)[:0])
	// The server reads only the decision's access; a decision log records the whole decision,
	// reasons included.
	q := queryAccess
	if e.logs != nil {
		q = queryAuthz
	}
	start := time.Now()
	ev, input, err := e.decide(ctx, q, *buf, in.value)
	if errors.Is(err, ErrNotReady) {
		return d, err
	}
	e.logDecision(ctx, q, d.ID, start, input, ev, err)
	if err != nil {
		return d, err
	}
	e.compare(q, d.ID, input, *buf, ev)
	if q == queryAccess && !ev.defined && !ev.rev.prepared.wholeAccess {
		// No access: the decision is undefined, or malformed; only the whole decision tells
		// which, for the metrics and the log. Either way it allows nothing.
		if input == nil {
			input = in.value()
		}
		if ev, err = e.eval(ctx, queryAuthz, input, nil, 0); err != nil {
			return d, err
		}
		q = queryAuthz
	}
	if !ev.defined {
		e.metrics.outcomes.WithLabelValues("authz", "undefined").Inc()
		return d, nil
	}
	if err := parseQuery(q, ev, &d); err != nil {
		e.metrics.outcomes.WithLabelValues("authz", "malformed").Inc()
		e.opts.Logger.Warn("malformed policy decision treated as deny", "decision_id", d.ID, "error", err)
		return Decision{ID: d.ID}, nil
	}
	d.Defined = true
	e.metrics.outcomes.WithLabelValues("authz", "defined").Inc()
	return d, nil
}

// parseQuery reads what query q answered: a whole token decision, or its access alone.
func parseQuery(q query, ev evaluation, d *Decision) error {
	if q == queryAccess && !ev.rev.prepared.wholeAccess {
		return parseAccess(ev.value, d)
	}
	return parseDecision(ev.value, d)
}

// Authorize evaluates the admin decision for in. Anything but an explicit allow is a deny.
func (e *Engine) Authorize(ctx context.Context, in *AdminInput) (AdminDecision, error) {
	d := AdminDecision{ID: newDecisionID()}
	buf := keyBuffers.Get().(*[]byte)
	defer keyBuffers.Put(buf)
	*buf = in.appendKey((*buf)[:0])
	start := time.Now()
	ev, input, err := e.decide(ctx, queryAdmin, *buf, in.value)
	if errors.Is(err, ErrNotReady) {
		return d, err
	}
	e.logDecision(ctx, queryAdmin, d.ID, start, input, ev, err)
	if err != nil {
		return d, err
	}
	e.compare(queryAdmin, d.ID, input, *buf, ev)
	if !ev.defined {
		e.metrics.outcomes.WithLabelValues("admin", "undefined").Inc()
		return d, nil
	}
	if err := parseAdminDecision(ev.value, &d); err != nil {
		e.metrics.outcomes.WithLabelValues("admin", "malformed").Inc()
		e.opts.Logger.Warn("malformed admin decision treated as deny", "decision_id", d.ID, "error", err)
		return AdminDecision{ID: d.ID, Reasons: []string{"the admin policy's decision is malformed"}}, nil
	}
	e.metrics.outcomes.WithLabelValues("admin", "defined").Inc()
	return d, nil
}

// parseAdminDecision reads {"allow": bool, "reasons": [...], "max_owned": N}. A limit that is
// present but not a positive whole number makes the decision malformed: a limit the server
// cannot read must not read as no limit.
func parseAdminDecision(doc ast.Value, d *AdminDecision) error {
	obj, _ := doc.(ast.Object)
	if obj == nil {
		return nil
	}
	if allow, ok := field(obj, keyAllow).(ast.Boolean); ok {
		d.Allow = bool(allow)
	}
	d.Reasons = stringList(field(obj, keyReasons))
	if raw := field(obj, keyMaxOwned); raw != nil {
		n, ok := raw.(ast.Number)
		v, isInt := n.Int64()
		if !ok || !isInt || v < 1 || v > 1<<31 {
			return fmt.Errorf("max_owned %v is not a positive whole number", raw)
		}
		d.MaxOwned = int(v)
	}
	return nil
}

func single(rs rego.ResultSet) (ast.Value, bool) {
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, false
	}
	v, ok := rs[0].Expressions[0].Value.(ast.Value)
	return v, ok
}

// field is obj's value at key (a string term), or nil.
func field(obj ast.Object, key *ast.Term) ast.Value {
	if t := obj.Get(key); t != nil {
		return t.Value
	}
	return nil
}

// elements are the members of an array, or of a set (which JSON shows as an array), in the
// order JSON shows them; ok is false for anything else. An array's are read in place.
func elements(v ast.Value) (n int, at func(int) *ast.Term, ok bool) {
	switch x := v.(type) {
	case *ast.Array:
		return x.Len(), x.Elem, true
	case ast.Set:
		terms := x.Slice()
		return len(terms), func(i int) *ast.Term { return terms[i] }, true
	}
	return 0, nil, false
}

// parseDecision reads {"access": [{"type","name","actions"}...], "reasons": [...]}.
func parseDecision(doc ast.Value, d *Decision) error {
	obj, ok := doc.(ast.Object)
	if !ok {
		return fmt.Errorf("decision is %v, want an object", ast.ValueName(doc))
	}
	return parseAccess(field(obj, keyAccess), d)
}

// parseAccess reads a decision's "access": an array of {"type", "name", "actions"}.
func parseAccess(v ast.Value, d *Decision) error {
	n, entryAt, ok := elements(v)
	if !ok {
		return errors.New(`decision has no "access" array`)
	}
	d.Access = make([]Scope, 0, n)
	for i := range n {
		raw := entryAt(i)
		entry, ok := raw.Value.(ast.Object)
		if !ok {
			return fmt.Errorf("access entry is %v, want an object", ast.ValueName(raw.Value))
		}
		typ, _ := field(entry, keyType).(ast.String)
		name, _ := field(entry, keyName).(ast.String)
		m, action, ok := elements(field(entry, keyActions))
		if typ == "" || name == "" || !ok {
			return fmt.Errorf("access entry %v needs type, name and an actions array", entry)
		}
		s := Scope{Type: string(typ), Name: string(name), Actions: make([]string, 0, m)}
		for j := range m {
			as, ok := action(j).Value.(ast.String)
			if !ok {
				return fmt.Errorf("action %v is not a string", action(j))
			}
			s.Actions = append(s.Actions, string(as))
		}
		d.Access = append(d.Access, s)
	}
	return nil
}

func stringList(v ast.Value) []string {
	n, at, _ := elements(v)
	out := make([]string, 0, n)
	for i := range n {
		if s, ok := at(i).Value.(ast.String); ok {
			out = append(out, string(s))
		}
	}
	return out
}

// newDecisionID returns a random UUID, the form OPA's decision logs use.
func newDecisionID() string { return uuid.NewString() }
