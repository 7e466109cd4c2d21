package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/regoauth/regoauth/policies"
)

// TestNativeLibraryIsTheShippedModule: the native decision implements one text of the
// library's token module. A change to policies/authz.rego turns it off until native.go is made
// to agree and nativeAuthzSHA256 names the new text.
func TestNativeLibraryIsTheShippedModule(t *testing.T) {
	raw, err := fs.ReadFile(policies.FS, "authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != nativeAuthzSHA256 {
		t.Fatalf("policies/authz.rego is %x; native.go implements %s: bring nativeLibrary in line with the module (TestNativeMatchesEvaluation), then pin the new text", sum, nativeAuthzSHA256)
	}
}

// nativeRand draws the random configurations and inputs the native decision is compared on.
type nativeRand struct{ *rand.Rand }

func (r nativeRand) pick(xs ...string) string { return xs[r.IntN(len(xs))] }

// some returns each of xs with probability 1/3, in order, with an occasional repeat.
func (r nativeRand) some(xs ...string) []string {
	var out []string
	for _, x := range xs {
		if r.IntN(3) == 0 {
			out = append(out, x)
			if r.IntN(10) == 0 {
				out = append(out, x)
			}
		}
	}
	return out
}

var (
	nativeRepos    = []string{"image", "shop/app", "shop/secret", "public/base", "public/a/b", "a1/tool", "a1/x/y", "a1/", "a2/x", "frozen/old/app", "team/svc", "shop/*", "ünï/x", "catalog"}
	nativePatterns = []string{"public/*", "**", "shop/*", "a1/*", "*", "team/**", "image", "sh?p/app", "{shop,team}/*", "[a-c]1/tool", "frozen/**", "shop/secret", "a*/x", `shop/\*`, "ünï/*", "[!a]*/*", "catalog"}
	nativeActions  = []string{"pull", "push", "delete", "*", "", "tag"}
	nativeSubjects = []string{"account:a1", "account:a2", "account:shop", "group:sellers", "group:buyers", "role:admin", "role:ops", "anonymous", "*", "account:", "a1"}
)

// config draws a configuration for data.regoauth.config, nil for none. One in eight has a
// field the native decision leaves to the evaluator.
func (r nativeRand) config() any {
	if r.IntN(10) == 0 {
		return nil
	}
	c := map[string]any{}
	strs := func(xs ...string) []any {
		out := []any{}
		for _, x := range r.some(xs...) {
			out = append(out, x)
		}
		return out
	}
	if r.IntN(2) == 0 {
		c["public_repositories"] = strs(nativePatterns...)
	}
	if r.IntN(2) == 0 {
		c["personal_namespaces"] = r.IntN(3) > 0
	}
	if r.IntN(3) == 0 {
		c["personal_namespace_actions"] = strs(nativeActions...)
	}
	if r.IntN(2) == 0 {
		c["reserved_namespaces"] = strs("shop", "a2", "team")
	}
	if r.IntN(3) == 0 {
		c["admin_roles"] = strs("admin", "ops")
	}
	if r.IntN(3) == 0 {
		c["catalog_roles"] = strs("admin", "ops", "sellers")
	}
	if r.IntN(2) == 0 {
		var rules []any
		for range 1 + r.IntN(3) {
			rule := map[string]any{"repositories": strs(nativePatterns...), "reason": "no"}
			if r.IntN(2) == 0 {
				rule["actions"] = strs(nativeActions...)
			}
			if r.IntN(2) == 0 {
				rule["subjects"] = strs(nativeSubjects...)
			}
			if r.IntN(3) == 0 {
				rule["except"] = strs(nativeSubjects...)
			}
			rules = append(rules, rule)
		}
		c["deny"] = rules
	}
	c["unread"] = "the library ignores it"
	if r.IntN(8) == 0 {
		switch r.IntN(6) {
		case 0:
			c["public_repositories"] = "public/*"
		case 1:
			c["personal_namespaces"] = "yes"
		case 2:
			c["deny"] = []any{map[string]any{"actions": []any{"push"}}} // no repositories
		case 3:
			c["deny"] = []any{map[string]any{"repositories": []any{"[bad"}}}
		case 4:
			c["admin_roles"] = []any{"admin", 1}
		case 5:
			c["deny"] = map[string]any{"repositories": []any{"**"}}
		}
	}
	return c
}

// input draws a token input. Some are inputs the native decision leaves to the evaluator: a
// grant or key pattern that does not compile, a network or address that does not parse, an
// empty scope.
func (r nativeRand) input() *Input {
	account := r.pick("a1", "a2", "shop")
	in := &Input{
		Service:   "registry.example.com",
		Client:    Client{IP: r.pick("10.1.2.3", "203.0.113.7", "::1")},
		Principal: Principal{Account: account, Groups: r.some("sellers", "buyers", "team"), Roles: r.some("admin", "ops", "checkout"), Key: &Key{ID: "k"}},
		Owned:     r.some("shop/app", "a1/tool", "shop/*", "team/svc", "image"),
	}
	switch r.IntN(8) {
	case 0:
		in.Principal = Principal{Anonymous: true, Groups: []string{}, Roles: []string{}}
		in.Owned = nil
	case 1, 2:
		rs := &Restrictions{Actions: r.some("pull", "push", "delete", "*"),
			Repositories: r.some(nativePatterns...), CIDRs: r.some("10.0.0.0/8", "203.0.113.0/24", "::/0")}
		for _, l := range []*[]string{&rs.Actions, &rs.Repositories, &rs.CIDRs} {
			if *l == nil && r.IntN(2) == 0 {
				*l = []string{} // listed as empty: no restriction, as absent
			}
		}
		in.Principal.Key.Restrictions = rs
	}
	for range r.IntN(5) {
		in.Grants = append(in.Grants, Grant{Subject: r.pick(append(nativeSubjects, "account:"+account)...),
			Repository: r.pick(append(nativeRepos, nativePatterns...)...), Actions: r.some(nativeActions...)})
	}
	for range 1 + r.IntN(3) {
		switch r.IntN(12) {
		case 0:
			in.Scopes = append(in.Scopes, Scope{Type: "registry", Name: r.pick("catalog", "other"), Actions: r.some("*", "pull")})
		case 1:
			in.Scopes = append(in.Scopes, Scope{Type: r.pick("plugin", "Repository"), Name: r.pick(nativeRepos...), Actions: r.some(nativeActions...)})
		default:
			in.Scopes = append(in.Scopes, Scope{Type: "repository", Name: r.pick(nativeRepos...), Actions: r.some(nativeActions...)})
		}
	}
	if r.IntN(30) == 0 {
		if in.Principal.Key == nil {
			in.Principal.Key = &Key{ID: "k"}
		}
		switch r.IntN(5) {
		case 0:
			in.Grants = append(in.Grants, Grant{Subject: "account:" + account, Repository: "[bad", Actions: []string{"pull"}})
		case 1:
			in.Principal.Key.Restrictions = &Restrictions{Repositories: []string{"{unclosed"}}
		case 2:
			in.Principal.Key.Restrictions = &Restrictions{CIDRs: []string{"10.0.0.0/33"}}
		case 3:
			in.Client.IP = "10.0.0.0/8"
		case 4:
			in.Scopes[0].Name = ""
		}
	}
	return in
}

// TestNativeMatchesEvaluation: on random configurations and inputs the native decision gives
// exactly the access OPA evaluates from the shipped module with the same data, strict builtin
// errors on as in the server; where the evaluation fails, the native decision declines (the
// server then evaluates and fails closed). Configurations it does not read are refused.
func TestNativeMatchesEvaluation(t *testing.T) {
	module, err := fs.ReadFile(policies.FS, "authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	r := nativeRand{rand.New(rand.NewPCG(11, 17))}
	configs, inputs := 150, 100
	if testing.Short() {
		configs = 60
	}
	var compared, declined, evalErrors, refused, granted, denied int
	for c := range configs {
		cfg := r.config()
		data := map[string]any{}
		var cfgValue ast.Value
		if cfg != nil {
			data["regoauth"] = map[string]any{"config": cfg}
			if cfgValue, err = ast.InterfaceToValue(cfg); err != nil {
				t.Fatal(err)
			}
		}
		lib, why := compileLibraryConfig(cfgValue)
		pq, err := rego.New(rego.Query(DefaultDecisionQuery), rego.Module("authz.rego", string(module)),
			rego.Store(inmem.NewFromObject(data)), rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfgJSON, _ := json.Marshal(cfg)
		if lib == nil {
			refused++
			if why == "" {
				t.Fatalf("config %s refused without a reason", cfgJSON)
			}
			continue
		}
		for i := range inputs {
			in := r.input()
			got, nativeErr := lib.decide(in)
			rs, evalErr := pq.Eval(ctx, append(slices.Clone(evalOptions), rego.EvalParsedInput(in.value()))...)
			if evalErr != nil {
				evalErrors++
			}
			if nativeErr != nil {
				if !errors.Is(nativeErr, errDecline) {
					t.Fatalf("config %d %s input %d %+v: %v", c, cfgJSON, i, in, nativeErr)
				}
				declined++
				continue
			}
			if evalErr != nil {
				t.Fatalf("config %d %s input %d %+v: the evaluation failed (%v); the native decision answered %v", c, cfgJSON, i, in, evalErr, got)
			}
			var want Decision
			v, ok := single(rs)
			if !ok {
				t.Fatalf("config %d input %d: no decision", c, i)
			}
			if err := parseDecision(v, &want); err != nil {
				t.Fatalf("config %d input %d: %v", c, i, err)
			}
			if !reflect.DeepEqual(got, want.Access) {
				t.Fatalf("config %d %s\ninput %d %+v\nnative    %v\nevaluated %v", c, cfgJSON, i, in, got, want.Access)
			}
			compared++
			for _, s := range got {
				if len(s.Actions) > 0 {
					granted++
				} else {
					denied++
				}
			}
		}
	}
	t.Logf("%d inputs compared, %d declined (%d evaluations failed), %d configurations refused; %d scopes granted something, %d nothing",
		compared, declined, evalErrors, refused, granted, denied)
	if refused == 0 || declined == 0 || evalErrors == 0 || granted < compared/10 || denied < compared/10 {
		t.Fatal("the draw does not exercise refusals, declines, failing evaluations, grants and denials")
	}
}

// TestNativeDecisionFollowsItsEligibility: the library alone, configured by data, is decided
// natively; any other policy, a decision log or a custom query is evaluated. Either way the
// decision is the evaluated one.
func TestNativeDecisionFollowsItsEligibility(t *testing.T) {
	library, err := fs.ReadFile(policies.FS, "authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := fs.ReadFile(policies.FS, "admin.rego")
	if err != nil {
		t.Fatal(err)
	}
	withLibrary := func(files map[string]string) fstest.MapFS {
		m := fstest.MapFS{"authz.rego": {Data: library}, "admin.rego": {Data: admin}}
		for name, body := range files {
			m[name] = &fstest.MapFile{Data: []byte(body)}
		}
		return m
	}
	config := `{"regoauth": {"config": {"public_repositories": ["public/*"]}}}`
	cases := []struct {
		name   string
		opts   Options
		fsys   fstest.MapFS
		native bool
	}{
		{name: "library alone", fsys: withLibrary(nil), native: true},
		{name: "library configured", fsys: withLibrary(map[string]string{"data.json": config}), native: true},
		{name: "library beside other packages", fsys: withLibrary(map[string]string{"data.json": config, "other.rego": "package other\n\nx := 1\n", "regoauth.rego": "package regoauthx\n\ny := 1\n"}), native: true},
		{name: "library edited", fsys: fstest.MapFS{"authz.rego": {Data: append(slices.Clone(library), '\n')}, "data.json": {Data: []byte(config)}}},
		{name: "extension module", fsys: withLibrary(map[string]string{"ext.rego": "package regoauth.extensions.shop\n\npermit contains [\"repository\", \"a/b\", \"pull\"]\n"})},
		{name: "extension data", fsys: withLibrary(map[string]string{"data.json": `{"regoauth": {"extensions": {"shop": {"permit": [["repository", "a/b", "pull"]]}}}}`})},
		{name: "configuration by a rule", fsys: withLibrary(map[string]string{"cfg.rego": "package regoauth.config\n\npublic_repositories := [\"**\"]\n"})},
		{name: "rules above the library", fsys: withLibrary(map[string]string{"up.rego": "package regoauth\n\nconfig.public_repositories := [\"**\"]\n"})},
		{name: "a second module in the package", fsys: withLibrary(map[string]string{"more.rego": "package regoauth.authz\n\nextra := 1\n"})},
		{name: "configuration of another shape", fsys: withLibrary(map[string]string{"data.json": `{"regoauth": {"config": {"public_repositories": "public/*"}}}`})},
		{name: "decision log", fsys: withLibrary(map[string]string{"data.json": config}), opts: Options{Source: Source{OPAConfig: []byte(`decision_logs: {console: true}`)}}},
		{name: "custom decision query", fsys: withLibrary(map[string]string{"data.json": config, "mine.rego": "package mine\n\ndecision := data.regoauth.authz.decision\n"}), opts: Options{DecisionQuery: "data.mine.decision"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			opts := tc.opts
			opts.Registerer = reg
			e := started(t, opts)
			if err := e.LoadFS(ctx, tc.fsys, "p"); err != nil {
				t.Fatal(err)
			}
			in := &Input{Client: Client{IP: "10.0.0.1"}, Principal: Principal{Account: "a1", Groups: []string{}, Roles: []string{}},
				Grants: []Grant{{Subject: "account:a1", Repository: "a1/*", Actions: []string{"pull", "push"}}},
				Scopes: []Scope{{Type: "repository", Name: "a1/app", Actions: []string{"push", "pull", "delete"}}, {Type: "repository", Name: "public/x", Actions: []string{"pull"}}}}
			decideAsEvaluated(t, e, in)
			n := testutil.ToFloat64(e.metrics.nativeDecisions)
			if tc.native != (n == 1) || tc.native != (testutil.ToFloat64(e.metrics.native) == 1) {
				t.Fatalf("native decisions %v, gauge %v; want native %v", n, testutil.ToFloat64(e.metrics.native), tc.native)
			}
		})
	}
}

// decideAsEvaluated decides in through the engine (natively or not) and holds the access to a
// full evaluation of the active policy.
func decideAsEvaluated(t *testing.T, e *Engine, in *Input) Decision {
	t.Helper()
	d, err := e.Decide(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := e.eval(ctx, queryAuthz, in.value(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want Decision
	if err := parseDecision(ev.value, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Access, want.Access) {
		t.Fatalf("decided %v, evaluated %v", d.Access, want.Access)
	}
	return d
}

// TestNativeDecisionFollowsData: a change of data.regoauth.config that recompiles nothing
// (the policy stays the same revision) reaches the native decision at once, as it reaches an
// evaluation.
func TestNativeDecisionFollowsData(t *testing.T) {
	e := started(t, Options{Source: Source{Builtin: policies.FS}})
	in := &Input{Client: Client{IP: "10.0.0.1"}, Principal: Principal{Account: "a1", Groups: []string{}, Roles: []string{}},
		Grants: []Grant{{Subject: "account:a1", Repository: "a1/*", Actions: []string{"pull", "push"}}},
		Scopes: []Scope{{Type: "repository", Name: "a1/app", Actions: []string{"push", "pull"}}}}
	decide := func(native bool) []string {
		t.Helper()
		before := testutil.ToFloat64(e.metrics.nativeDecisions)
		d := decideAsEvaluated(t, e, in)
		if n := testutil.ToFloat64(e.metrics.nativeDecisions) - before; native != (n == 1) {
			t.Fatalf("decided natively: %v, want %v", n == 1, native)
		}
		return d.Allowed("repository", "a1/app")
	}
	if got := decide(true); strings.Join(got, ",") != "pull,push" {
		t.Fatalf("allowed %v before the deny rule", got)
	}
	rev := e.active.Load()
	write := func(v string) {
		t.Helper()
		var cfg any
		if err := json.Unmarshal([]byte(v), &cfg); err != nil {
			t.Fatal(err)
		}
		if err := storage.WriteOne(ctx, e.store, storage.AddOp, storage.MustParsePath("/regoauth"), map[string]any{"config": cfg}); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"deny": [{"repositories": ["a1/**"], "actions": ["push"]}]}`)
	if e.active.Load() != rev {
		t.Fatal("writing data made a new revision: the test does not reach a data-only change")
	}
	if got := decide(true); strings.Join(got, ",") != "pull" {
		t.Fatalf("allowed %v after a deny rule on push", got)
	}
	// A configuration of another shape is evaluated, whatever the library makes of it.
	write(`{"personal_namespaces": "yes", "deny": [{"repositories": ["a1/**"], "actions": ["push"]}]}`)
	decide(false)
	write(`{"public_repositories": ["x/*"]}`)
	if got := decide(true); strings.Join(got, ",") != "pull,push" {
		t.Fatalf("allowed %v once the deny rule is gone", got)
	}
}

// TestPatternCacheIsBounded: the compiled patterns kept for native decisions stay bounded
// however many distinct patterns callers bring (a key's restrictions are theirs to choose), and
// a pattern forgotten is compiled again and matches as before.
func TestPatternCacheIsBounded(t *testing.T) {
	for i := range 3 * patternCacheMax {
		pattern := fmt.Sprintf("team%d/*", i)
		ok, err := globMatch(pattern, fmt.Sprintf("team%d/app", i))
		if err != nil || !ok {
			t.Fatalf("%s: %v, %v", pattern, ok, err)
		}
		if n := patterns.n.Load(); n > patternCacheMax {
			t.Fatalf("%d patterns kept, at most %d", n, patternCacheMax)
		}
	}
	kept := 0
	patterns.m.Range(func(any, any) bool { kept++; return true })
	if kept == 0 || kept > patternCacheMax {
		t.Fatalf("%d patterns kept, want 1..%d", kept, patternCacheMax)
	}
	if ok, _ := globMatch("team0/*", "team1/app"); ok {
		t.Fatal("a pattern compiled again matches another namespace")
	}
}
