package policy

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/regoauth/regoauth/policies"
)

// TestAccessQueryMatchesWholeDecision: a token is issued from the decision's access alone
// (queryAccess), which OPA evaluates without the reasons when the decision is written key by
// key, as the library's is. For random inputs under the library alone, with the marketplace
// bundle, and with a configuration of public repositories, personal namespaces and deny rules,
// the access read that way must be the access of the whole decision evaluated from scratch.
func TestAccessQueryMatchesWholeDecision(t *testing.T) {
	configured := writeTree(t, t.TempDir(), map[string]string{
		".manifest": `{"roots": ["regoauth/config"]}`,
		"data.json": `{"regoauth": {"config": {
			"public_repositories": ["public/*"],
			"personal_namespaces": true,
			"reserved_namespaces": ["shop"],
			"deny": [
				{"repositories": ["frozen/**"], "actions": ["push", "delete"], "reason": "frozen"},
				{"repositories": ["shop/secret"], "subjects": ["group:buyers"], "except": ["account:a2"]},
				{"repositories": ["[bad"], "subjects": ["role:checkout"]}
			]}}}`,
	})
	for name, src := range map[string]Source{
		"library":     {Builtin: policies.FS},
		"marketplace": {Builtin: policies.FS, Dir: filepath.Join("..", "bundles", "marketplace")},
		"configured":  {Builtin: policies.FS, Dir: configured},
	} {
		t.Run(name, func(t *testing.T) {
			e := started(t, Options{Source: src})
			r := rand.New(rand.NewPCG(7, uint64(len(name))))
			pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
			some := func(xs ...string) []string {
				var out []string
				for _, x := range xs {
					if r.IntN(3) == 0 {
						out = append(out, x)
					}
				}
				return out
			}
			repos := []string{"image", "shop/app", "shop/secret", "public/base", "a1/tool", "a2/x", "frozen/old/app", "previews/demo", "team/svc"}
			granted, denied, errors, reasonsOnly := 0, 0, 0, 0
			for i := range 400 {
				account := pick("a1", "a2", "a3")
				in := &Input{
					Service: "registry.example.com",
					Client:  Client{IP: pick("10.1.2.3", "203.0.113.7")},
					Principal: Principal{Account: account, Groups: some("sellers", "buyers"), Roles: some("admin", "checkout"),
						Key: &Key{ID: fmt.Sprint("k", i)}},
					Owned: some("shop/app", "a1/tool", "shop/*"),
				}
				if r.IntN(8) == 0 {
					in.Principal = Principal{Anonymous: true, Groups: []string{}, Roles: []string{}}
					in.Owned = nil
				} else if r.IntN(3) == 0 {
					in.Principal.Key.Restrictions = &Restrictions{Actions: some("pull", "push"), Repositories: some("shop/*", "image", "**"), CIDRs: some("10.0.0.0/8")}
				}
				for range r.IntN(4) {
					in.Grants = append(in.Grants, Grant{Subject: pick("account:"+account, "group:sellers", "group:buyers"),
						Repository: pick(append(repos, "shop/*", "**", "team/*")...), Actions: some("pull", "push", "delete")})
				}
				for range 1 + r.IntN(3) {
					if r.IntN(10) == 0 {
						in.Scopes = append(in.Scopes, Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}})
						continue
					}
					in.Scopes = append(in.Scopes, Scope{Type: "repository", Name: pick(repos...), Actions: some("delete", "pull", "push")})
				}
				got, err := e.Decide(ctx, in)
				ev, wholeErr := e.eval(ctx, queryAuthz, in.value(), nil, 0)
				switch {
				case err != nil && wholeErr == nil:
					t.Fatalf("input %d %+v: access alone: %v; the whole decision evaluated", i, in, err)
				case err != nil:
					errors++ // a malformed deny pattern the access reaches fails both
					continue
				case wholeErr != nil:
					// The error is in what only the reasons read (a deny rule's malformed pattern,
					// for a request nothing permits): the token reads none of it.
					if _, reasonsErr := e.evalRef(t, "data.regoauth.authz.decision.reasons", in); reasonsErr == nil {
						t.Fatalf("input %d %+v: the whole decision failed (%v), neither its access nor its reasons", i, in, wholeErr)
					}
					reasonsOnly++
					continue
				}
				// Read with OPA's own conversion, not the server's parser.
				var want Decision
				if doc, ok := ev.doc().(map[string]any); ok {
					for _, raw := range doc["access"].([]any) {
						entry := raw.(map[string]any)
						s := Scope{Type: entry["type"].(string), Name: entry["name"].(string), Actions: []string{}}
						for _, a := range entry["actions"].([]any) {
							s.Actions = append(s.Actions, a.(string))
						}
						want.Access = append(want.Access, s)
					}
				}
				if got.Defined != ev.defined || !reflect.DeepEqual(got.Access, want.Access) {
					t.Fatalf("input %d %+v:\naccess alone  %v (defined %v)\nwhole decision %v (defined %v)", i, in, got.Access, got.Defined, want.Access, ev.defined)
				}
				for _, s := range got.Access {
					if len(s.Actions) > 0 {
						granted++
					} else {
						denied++
					}
				}
			}
			if name == "configured" && (errors == 0 || reasonsOnly == 0) {
				t.Fatalf("the malformed deny rule failed %d access decisions and %d reasons alone: want some of each", errors, reasonsOnly)
			}
			if granted == 0 || denied == 0 {
				t.Fatalf("%d scopes granted something, %d nothing: the inputs do not exercise both", granted, denied)
			}
		})
	}
}

// evalRef evaluates any reference of the active policy on in, uncached.
func (e *Engine) evalRef(t *testing.T, ref string, in *Input) (ast.Value, error) {
	t.Helper()
	r := e.active.Load()
	pq, err := rego.New(rego.Query(ref), rego.Compiler(r.compiler), rego.Store(e.store), rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(in.value()))
	if err != nil || len(rs) == 0 {
		return nil, err
	}
	return ast.InterfaceToValue(rs[0].Expressions[0].Value)
}
