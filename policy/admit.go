package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// gatedStore is the policy store as OPA's plugins and LoadFS write it: a transaction that
// activates a bundle commits only if admit accepts the policy it would make active. A refusal
// aborts the transaction, so the bundle's data and modules never reach the store, and the
// bundle plugin reports the error in the bundle's status as it does for a bundle that does not
// compile; the previous revision keeps deciding over its own data.
//
// Evaluations read the underlying store directly.
type gatedStore struct {
	storage.Store
	admit func(ctx context.Context, txn storage.Transaction, tctx *storage.Context) error

	mu sync.Mutex
	// open holds the context of each open write transaction, where the bundle plugin and
	// LoadFS put the compiler of the policy they activate.
	open map[storage.Transaction]*storage.Context
}

func (s *gatedStore) NewTransaction(ctx context.Context, params ...storage.TransactionParams) (storage.Transaction, error) {
	txn, err := s.Store.NewTransaction(ctx, params...)
	if err == nil && len(params) > 0 && params[0].Write && params[0].Context != nil {
		s.mu.Lock()
		s.open[txn] = params[0].Context
		s.mu.Unlock()
	}
	return txn, err
}

func (s *gatedStore) take(txn storage.Transaction) *storage.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	tctx := s.open[txn]
	delete(s.open, txn)
	return tctx
}

func (s *gatedStore) Commit(ctx context.Context, txn storage.Transaction) error {
	if tctx := s.take(txn); tctx != nil {
		if err := s.admit(ctx, txn, tctx); err != nil {
			s.Store.Abort(ctx, txn)
			return err
		}
	}
	return s.Store.Commit(ctx, txn)
}

func (s *gatedStore) Abort(ctx context.Context, txn storage.Transaction) {
	s.take(txn)
	s.Store.Abort(ctx, txn)
}

// MakeDir keeps the underlying store's own MakeDir, which storage.MakeDir looks for.
func (s *gatedStore) MakeDir(ctx context.Context, txn storage.Transaction, path storage.Path) error {
	return storage.MakeDir(ctx, s.Store, txn, path)
}

// isTestFile says whether a module (its store ID, bundle name and path) is a test file.
func isTestFile(id string) bool { return strings.HasSuffix(id, "_test.rego") }

// draft is a policy admitted in a transaction that has not committed yet: onCompile, which
// runs as it commits, activates it without preparing its queries again.
type draft struct {
	compiler *ast.Compiler
	prepared preparedQueries
}

// admit decides whether the transaction may commit the policy compiled on its context.
//
//   - Test files (*_test.rego) never take part in decisions: OPA's bundle plugin loads a
//     bundle whole (and `opa build` keeps test files), so they are removed from the store here
//     and the policy is compiled again without them.
//   - Once every configured bundle is active, the policy must have Rego modules (when one is
//     active already) and its decision queries must prepare; otherwise the transaction is
//     refused.
//
// A transaction with no compiler on its context (a bundle removed from the configuration) is
// not checked here; onCompile fails closed if its policy cannot be prepared.
func (e *Engine) admit(ctx context.Context, txn storage.Transaction, tctx *storage.Context) error {
	compiler := plugins.GetCompilerOnContext(tctx)
	if compiler == nil {
		return nil
	}
	if err := e.linkedFolders(); err != nil {
		return err
	}
	var tests []string
	for id := range compiler.Modules {
		if isTestFile(id) {
			tests = append(tests, id)
		}
	}
	if len(tests) > 0 {
		slices.Sort(tests)
		var err error
		if compiler, err = e.withoutTests(ctx, txn, compiler, tests); err != nil {
			return err
		}
		plugins.SetCompilerOnContext(tctx, compiler)
		e.opts.Logger.Info("test files left out of the policy", "files", tests)
	}
	if _, complete, err := e.complete(ctx, txn); err != nil || !complete {
		return err
	}
	if len(compiler.Modules) == 0 {
		if e.active.Load() == nil {
			return nil // nothing decides yet, and nothing will until a policy arrives
		}
		return errors.New("the policy would have no Rego modules: a bundle that replaces the policy must hold one")
	}
	prepared, err := e.prepare(ctx, compiler, txn)
	if err != nil {
		return err
	}
	e.draft.Store(&draft{compiler: compiler, prepared: prepared})
	return nil
}

// withoutTests deletes the test modules from the transaction and compiles the rest again,
// each module parsed as the rego version it was compiled with, as OPA compiles a policy it
// reads back from its store.
func (e *Engine) withoutTests(ctx context.Context, txn storage.Transaction, compiled *ast.Compiler, tests []string) (*ast.Compiler, error) {
	for _, id := range tests {
		if err := e.store.DeletePolicy(ctx, txn, id); err != nil {
			return nil, fmt.Errorf("leaving out test file %s: %w", id, err)
		}
	}
	popts := e.manager.ParserOptions()
	modules := make(map[string]*ast.Module, len(compiled.Modules)-len(tests))
	for id, m := range compiled.Modules {
		if isTestFile(id) {
			continue
		}
		raw, err := e.store.GetPolicy(ctx, txn, id)
		if err != nil {
			return nil, fmt.Errorf("reading module %s: %w", id, err)
		}
		opts := popts
		opts.RegoVersion = m.RegoVersion()
		if modules[id], err = ast.ParseModuleWithOpts(id, string(raw), opts); err != nil {
			return nil, fmt.Errorf("module %s: %w", id, err)
		}
	}
	c := ast.NewCompiler().
		WithPathConflictsCheck(storage.NonEmpty(ctx, e.store, txn)).
		WithEnablePrintStatements(e.manager.EnablePrintStatements()).
		WithDefaultRegoVersion(popts.RegoVersion)
	if c.Compile(modules); c.Failed() {
		return nil, fmt.Errorf("compiling the policy without its test files: %w", c.Errors)
	}
	return c, nil
}

// complete returns the active bundles (name to revision) and whether every configured bundle
// is among them.
func (e *Engine) complete(ctx context.Context, txn storage.Transaction) (map[string]string, bool, error) {
	names, err := bundle.ReadBundleNamesFromStore(ctx, e.store, txn)
	if err != nil && !storage.IsNotFound(err) {
		return nil, false, fmt.Errorf("reading the active bundles: %w", err)
	}
	active := make(map[string]string, len(names))
	for _, n := range names {
		active[n], _ = bundle.ReadBundleRevisionFromStore(ctx, e.store, txn, n)
	}
	for _, want := range e.bundles {
		if _, ok := active[want]; !ok {
			return active, false, nil
		}
	}
	return active, true, nil
}

// preparedQueries are a revision's decision queries, prepared.
type preparedQueries struct {
	queries [queryCount]rego.PreparedEvalQuery
	// wholeAccess is true when the policy's decision has no "access" the type checker lets a
	// query name (a decision that is a number, say): queryAccess then evaluates the whole
	// decision, which the server reads as malformed, as before.
	wholeAccess bool
}

// prepare prepares the engine's decision queries against a compiled policy and the data of
// txn.
func (e *Engine) prepare(ctx context.Context, compiler *ast.Compiler, txn storage.Transaction) (preparedQueries, error) {
	var prepared preparedQueries
	for i, q := range e.queries {
		pq, err := e.prepareQuery(ctx, q, compiler, txn)
		if err != nil && query(i) == queryAccess {
			pq, err = e.prepareQuery(ctx, e.queries[queryAuthz], compiler, txn)
			prepared.wholeAccess = true
		}
		if err != nil {
			return prepared, fmt.Errorf("decision %s: %w", q, err)
		}
		prepared.queries[i] = pq
	}
	return prepared, nil
}

func (e *Engine) prepareQuery(ctx context.Context, q string, compiler *ast.Compiler, txn storage.Transaction) (rego.PreparedEvalQuery, error) {
	return rego.New(
		rego.Query(q),
		rego.Compiler(compiler),
		rego.Store(e.store),
		rego.Transaction(txn),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
}
