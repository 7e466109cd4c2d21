package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/gobwas/glob"
	"github.com/gobwas/glob/syntax"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
)

// The library's token decision, written in Go.
//
// When the active policy is the library's token module byte for byte, configured by data alone
// (data.regoauth.config, no extensions), a token's access is computed by nativeLibrary instead
// of evaluating the module: the same rules over the same input, without OPA's evaluator, which
// costs most of a token otherwise. Anything else is evaluated as before: a module of any other
// content in package regoauth.authz, any module that writes into data.regoauth.config or
// data.regoauth.extensions (or above them), extension data, a configuration whose shape the
// library would read in a way not written here (a field of another type, a malformed pattern),
// a decision logged or compared by a dry run, a custom decision query. Per request, an input
// this code does not settle exactly (a grant pattern that does not compile, a network or
// address that does not parse, an empty scope name) is evaluated too: declining is always
// safe, answering differently never is.
//
// nativeAuthzSHA256 pins the module this code implements: editing policies/authz.rego turns
// the native decision off (TestNativeLibraryIsTheShippedModule fails until both agree again),
// and TestNativeMatchesEvaluation compares the two on random configurations and inputs.
const nativeAuthzSHA256 = "070e758ed0b8c296f6f1e1d1280bcac7b8f6bdc1761394240d0a2d08f710e7c6"

var (
	pathConfig     = storage.MustParsePath("/regoauth/config")
	pathExtensions = storage.MustParsePath("/regoauth/extensions")
	refAuthz       = ast.MustParseRef("data.regoauth.authz")
	// refsRead are the documents the token module reads besides the input: a module whose
	// package is one of them, inside one, or above one could change the decision.
	refsRead = []ast.Ref{refAuthz, ast.MustParseRef("data.regoauth.config"), ast.MustParseRef("data.regoauth.extensions")}
)

// native is what the engine decided about one revision (with the data it had when it looked):
// lib is nil when its token decisions are evaluated.
type native struct {
	rev *revision
	lib *nativeLibrary
}

// nativeState holds the native decision of the active revision, made again after every
// commit to the store (a data change keeps the revision but may change the configuration).
type nativeState struct {
	current atomic.Pointer[native]
	// building is held by the one request that reads the store for a new revision; the
	// others evaluate meanwhile.
	building sync.Mutex
}

// onCommit runs inside every committing write transaction of the store.
func (s *nativeState) onCommit(context.Context, storage.Transaction, storage.TriggerEvent) {
	s.current.Store(nil)
}

// nativeFor returns the native decision of revision r, or nil when its decisions are evaluated.
func (e *Engine) nativeFor(ctx context.Context, r *revision) *nativeLibrary {
	if n := e.native.current.Load(); n != nil && n.rev == r {
		return n.lib
	}
	if !e.native.building.TryLock() {
		return nil
	}
	defer e.native.building.Unlock()
	// The store's read transaction holds off commits (and their onCommit) until the decision
	// about r and its data is kept: what is kept is never older than the data.
	txn, err := e.store.NewTransaction(ctx)
	if err != nil {
		return nil
	}
	defer e.store.Abort(ctx, txn)
	if e.active.Load() != r {
		return nil
	}
	lib, why := e.nativeLibrary(ctx, txn, r)
	if lib == nil {
		e.opts.Logger.Debug("token decisions are evaluated", "revision", r.name, "why", why)
	}
	e.native.current.Store(&native{rev: r, lib: lib})
	if lib != nil {
		e.metrics.native.Set(1)
	} else {
		e.metrics.native.Set(0)
	}
	return lib
}

// nativeLibrary returns the native decision for revision r with the data of txn, or nil and
// the reason it does not apply.
func (e *Engine) nativeLibrary(ctx context.Context, txn storage.Transaction, r *revision) (*nativeLibrary, string) {
	if e.queries[queryAuthz] != DefaultDecisionQuery {
		return nil, "a custom decision query"
	}
	var authzID string
	for id, m := range r.compiler.Modules {
		pkg := m.Package.Path
		if pkg.Equal(refAuthz) && authzID == "" {
			authzID = id
			continue
		}
		for _, ref := range refsRead {
			if pkg.HasPrefix(ref) || ref.HasPrefix(pkg) {
				return nil, "module " + id + " is in package " + pkg.String()
			}
		}
	}
	if authzID == "" {
		return nil, "no module in package regoauth.authz"
	}
	raw, err := e.store.GetPolicy(ctx, txn, authzID)
	if err != nil {
		return nil, "reading " + authzID + ": " + err.Error()
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != nativeAuthzSHA256 {
		return nil, "module " + authzID + " is not the library's"
	}
	if v, err := readDoc(ctx, e.store, txn, pathExtensions); err != nil {
		return nil, "reading data.regoauth.extensions: " + err.Error()
	} else if obj, ok := v.(ast.Object); v != nil && (!ok || obj.Len() > 0) {
		return nil, "data.regoauth.extensions holds extensions"
	}
	v, err := readDoc(ctx, e.store, txn, pathConfig)
	if err != nil {
		return nil, "reading data.regoauth.config: " + err.Error()
	}
	return compileLibraryConfig(v)
}

// readDoc reads a document of the store as an OPA value; nil when there is none.
func readDoc(ctx context.Context, store storage.Store, txn storage.Transaction, path storage.Path) (ast.Value, error) {
	raw, err := store.Read(ctx, txn, path)
	if storage.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if v, ok := raw.(ast.Value); ok {
		return v, nil
	}
	return ast.InterfaceToValue(raw)
}

// nativeLibrary is the library's configuration (default_config under data.regoauth.config),
// read once, with its patterns compiled.
type nativeLibrary struct {
	public          []*glob.Pattern
	personal        bool
	personalActions []string
	reserved        []string
	deny            []nativeDenyRule
	adminRoles      []string
	catalogRoles    []string
}

type nativeDenyRule struct {
	repositories []*glob.Pattern
	// actions are the actions the rule denies; every action when allActions.
	actions    []string
	allActions bool
	subjects   []string
	except     []string
}

// compileLibraryConfig reads the configuration the way the library does (object.union of its
// defaults and the configured object): a field of an unexpected type, or a pattern that does
// not compile, leaves the decision to the evaluator.
func compileLibraryConfig(v ast.Value) (*nativeLibrary, string) {
	lib := &nativeLibrary{
		personalActions: []string{"delete", "pull", "push"},
		adminRoles:      []string{"admin"},
		catalogRoles:    []string{"admin"},
	}
	if v == nil {
		return lib, ""
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, "data.regoauth.config is not an object"
	}
	var why string
	strs := func(field string, into *[]string) {
		if t := obj.Get(ast.InternedTerm(field)); t != nil && why == "" {
			if *into, ok = stringArray(t.Value); !ok {
				why = "config." + field + " is not an array of strings"
			}
		}
	}
	var public []string
	strs("public_repositories", &public)
	strs("personal_namespace_actions", &lib.personalActions)
	strs("reserved_namespaces", &lib.reserved)
	strs("admin_roles", &lib.adminRoles)
	strs("catalog_roles", &lib.catalogRoles)
	if why != "" {
		return nil, why
	}
	if t := obj.Get(ast.InternedTerm("personal_namespaces")); t != nil {
		b, ok := t.Value.(ast.Boolean)
		if !ok {
			return nil, "config.personal_namespaces is not a boolean"
		}
		lib.personal = bool(b)
	}
	var err error
	if lib.public, err = compileGlobs(public); err != nil {
		return nil, "config.public_repositories: " + err.Error()
	}
	if t := obj.Get(ast.InternedTerm("deny")); t != nil {
		rules, ok := t.Value.(*ast.Array)
		if !ok {
			return nil, "config.deny is not an array"
		}
		for i := range rules.Len() {
			rule, why := compileDenyRule(rules.Elem(i).Value)
			if why != "" {
				return nil, "config.deny: " + why
			}
			lib.deny = append(lib.deny, rule)
		}
	}
	return lib, ""
}

func compileDenyRule(v ast.Value) (nativeDenyRule, string) {
	rule := nativeDenyRule{allActions: true, subjects: []string{"*"}}
	obj, ok := v.(ast.Object)
	if !ok {
		return rule, "a rule is not an object"
	}
	// The reason is read only by the decision's reasons, which concat it: one that is not a
	// string makes the whole decision fail (a decision log, an explanation) wherever the rule
	// denies, so the configuration is left to the evaluator.
	if t := obj.Get(ast.InternedTerm("reason")); t != nil {
		if _, ok := t.Value.(ast.String); !ok {
			return rule, "a rule's reason is not a string"
		}
	}
	var patterns []string
	for _, f := range []struct {
		name     string
		into     *[]string
		required bool
	}{{"repositories", &patterns, true}, {"subjects", &rule.subjects, false}, {"except", &rule.except, false}, {"actions", &rule.actions, false}} {
		t := obj.Get(ast.InternedTerm(f.name))
		if t == nil {
			if f.required {
				return rule, "a rule has no " + f.name
			}
			continue
		}
		if *f.into, ok = stringArray(t.Value); !ok {
			return rule, "a rule's " + f.name + " is not an array of strings"
		}
		if f.name == "actions" {
			rule.allActions = false
		}
	}
	var err error
	if rule.repositories, err = compileGlobs(patterns); err != nil {
		return rule, err.Error()
	}
	return rule, ""
}

// stringArray reads an array of strings.
func stringArray(v ast.Value) ([]string, bool) {
	a, ok := v.(*ast.Array)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, a.Len())
	for i := range a.Len() {
		s, ok := a.Elem(i).Value.(ast.String)
		if !ok {
			return nil, false
		}
		out = append(out, string(s))
	}
	return out, true
}

func compileGlobs(patterns []string) ([]*glob.Pattern, error) {
	out := make([]*glob.Pattern, 0, len(patterns))
	for _, p := range patterns {
		g, err := glob.Compile(p, '/')
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// errDecline means the native decision does not settle this input: it is evaluated.
var errDecline = errors.New("evaluated")

// globMatch is glob.match(pattern, ["/"], name) for a pattern of the input: a pattern without
// glob syntax is compared as a string, others are compiled once (patternCache).
func globMatch(pattern, name string) (bool, error) {
	literal := utf8.ValidString(pattern)
	for i := 0; literal && i < len(pattern); i++ {
		literal = !syntax.IsSpecial(pattern[i])
	}
	if literal {
		return pattern == name, nil
	}
	g, err := patterns.get(pattern)
	if err != nil {
		return false, errDecline
	}
	return g.Match(name), nil
}

// patternCache keeps the compiled patterns of grants and key restrictions, up to a bound: the
// patterns an account holds are few, and repeated on every request.
type patternCache struct {
	m sync.Map
	n atomic.Int64
}

const patternCacheMax = 16384

var patterns patternCache

func (c *patternCache) get(pattern string) (*glob.Pattern, error) {
	if g, ok := c.m.Load(pattern); ok {
		return g.(*glob.Pattern), nil
	}
	g, err := glob.Compile(pattern, '/')
	if err != nil {
		return nil, err
	}
	if c.n.Add(1) > patternCacheMax {
		c.m.Clear()
		c.n.Store(1) // this one
	}
	c.m.Store(pattern, g)
	return g, nil
}

var repositoryActions = []string{"pull", "push", "delete"}

// request is one token request as the library's rules read it.
type request struct {
	lib *nativeLibrary
	in  *Input
	// authenticated is input.principal.anonymous == false.
	authenticated bool
	// blocked is a key limited to networks the client is outside of: every action is denied.
	blocked bool
	// ceiling and keyRepositories are the key's restrictions, nil when absent.
	ceiling, keyRepositories []string
	admin, catalog, personal bool
	// denying are the configured deny rules that apply to the principal.
	denying []*nativeDenyRule
}

// decide computes the decision's access: for every requested scope, in order, the actions
// some rule permits and none denies, sorted. It returns errDecline for an input it does not
// settle.
func (l *nativeLibrary) decide(in *Input) ([]Scope, error) {
	p := &in.Principal
	rq := request{lib: l, in: in, authenticated: !p.Anonymous}
	if rq.authenticated && (p.Account == "" || !utf8.ValidString(p.Account)) {
		return nil, errDecline
	}
	if p.Key != nil && p.Key.Restrictions != nil {
		// A restriction is present (and restricts) only when it lists something.
		r := p.Key.Restrictions
		if len(r.Actions) > 0 {
			rq.ceiling = r.Actions
		}
		if len(r.Repositories) > 0 {
			rq.keyRepositories = r.Repositories
		}
		if len(r.CIDRs) > 0 {
			inside, err := addressIn(r.CIDRs, in.Client.IP)
			if err != nil {
				return nil, err
			}
			rq.blocked = !inside
		}
	}
	// The evaluator fails on a pattern that does not compile wherever it reaches one: such an
	// input is left to it whole.
	for _, pattern := range rq.keyRepositories {
		if _, err := globMatch(pattern, ""); err != nil {
			return nil, err
		}
	}
	for i := range in.Grants {
		if g := &in.Grants[i]; rq.isSubject(g.Subject) {
			if _, err := globMatch(g.Repository, ""); err != nil {
				return nil, err
			}
		}
	}
	rq.admin = rq.hasRole(l.adminRoles)
	rq.catalog = rq.hasRole(l.catalogRoles)
	rq.personal = l.personal && rq.authenticated && !slices.Contains(l.reserved, p.Account)
	for i := range l.deny {
		if r := &l.deny[i]; rq.listed(r.subjects) && !rq.listed(r.except) {
			rq.denying = append(rq.denying, r)
		}
	}
	access := make([]Scope, len(in.Scopes))
	for i, s := range in.Scopes {
		if s.Type == "" || s.Name == "" || !utf8.ValidString(s.Name) {
			return nil, errDecline
		}
		actions := make([]string, 0, len(s.Actions))
		for j, a := range s.Actions {
			if slices.Contains(s.Actions[:j], a) {
				continue
			}
			if rq.permits(s, a) && !rq.denies(s, a) {
				actions = append(actions, a)
			}
		}
		slices.Sort(actions)
		access[i] = Scope{Type: s.Type, Name: s.Name, Actions: actions}
	}
	return access, nil
}

// isSubject is `subject in subjects`.
func (rq *request) isSubject(subject string) bool {
	if !rq.authenticated {
		return subject == "anonymous"
	}
	p := &rq.in.Principal
	kind, name, ok := strings.Cut(subject, ":")
	if !ok {
		return false
	}
	switch kind {
	case "account":
		return name == p.Account
	case "group":
		return slices.Contains(p.Groups, name)
	case "role":
		return slices.Contains(p.Roles, name)
	}
	return false
}

// listed is subject_listed(list).
func (rq *request) listed(list []string) bool {
	for _, s := range list {
		if s == "*" || rq.isSubject(s) {
			return true
		}
	}
	return false
}

// hasRole is has_role(roles).
func (rq *request) hasRole(roles []string) bool {
	if !rq.authenticated {
		return false
	}
	for _, r := range roles {
		if slices.Contains(rq.in.Principal.Roles, r) {
			return true
		}
	}
	return false
}

// permits is [i, action] in permit: the rules admin, catalog, grant, owner, personal namespace
// and public repository (extensions are never present here).
func (rq *request) permits(s Scope, action string) bool {
	if s.Type == "registry" {
		return action == "*" && s.Name == "catalog" && rq.catalog
	}
	if s.Type != "repository" {
		return false
	}
	repositoryAction := slices.Contains(repositoryActions, action)
	switch {
	case rq.admin && repositoryAction:
		return true
	case rq.authenticated && repositoryAction && !strings.Contains(s.Name, "*") && slices.Contains(rq.in.Owned, s.Name):
		return true
	case rq.personal && slices.Contains(rq.lib.personalActions, action) && rq.inPersonalNamespace(s.Name):
		return true
	}
	if action == "pull" {
		for _, g := range rq.lib.public {
			if g.Match(s.Name) {
				return true
			}
		}
	}
	for i := range rq.in.Grants {
		g := &rq.in.Grants[i]
		if !slices.Contains(g.Actions, action) || !rq.isSubject(g.Subject) {
			continue
		}
		// Every pattern reached here compiled (decide checked them).
		if ok, _ := globMatch(g.Repository, s.Name); ok {
			return true
		}
	}
	return false
}

// inPersonalNamespace is in_personal_namespace(name): one segment under "<account>/".
func (rq *request) inPersonalNamespace(name string) bool {
	rest, ok := strings.CutPrefix(name, rq.in.Principal.Account+"/")
	return ok && rest != "" && !strings.Contains(rest, "/")
}

// denies is [i, action] in deny: the key's restrictions and the configured deny rules.
func (rq *request) denies(s Scope, action string) bool {
	if rq.blocked || (rq.ceiling != nil && !slices.Contains(rq.ceiling, action)) {
		return true
	}
	if rq.keyRepositories != nil && !rq.keyRepositoryMatches(s) {
		return true
	}
	if s.Type != "repository" {
		return false
	}
	for _, r := range rq.denying {
		if !r.allActions && !slices.Contains(r.actions, action) {
			continue
		}
		for _, g := range r.repositories {
			if g.Match(s.Name) {
				return true
			}
		}
	}
	return false
}

// keyRepositoryMatches is repository_matches(scope, restrictions.repositories).
func (rq *request) keyRepositoryMatches(s Scope) bool {
	if s.Type != "repository" {
		return false
	}
	for _, p := range rq.keyRepositories {
		if ok, _ := globMatch(p, s.Name); ok {
			return true
		}
	}
	return false
}

// addressIn is address_allowed(cidrs): whether ip is inside one of the networks, as
// net.cidr_contains reads them. A network or address that does not parse is declined (the
// evaluator says what it makes of it).
func addressIn(cidrs []string, ip string) (bool, error) {
	addr := net.ParseIP(ip)
	if addr == nil {
		return false, errDecline
	}
	inside := false
	for _, c := range cidrs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return false, errDecline
		}
		inside = inside || n.Contains(addr)
	}
	return inside, nil
}
