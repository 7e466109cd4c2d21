package policy

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// TestNativeDeclinesWhereTheWholeDecisionFails: a deny rule's reason is read only by the
// decision's reasons, which concat it: one that is not a string makes the whole decision (what
// a decision log or an explanation evaluates) fail for every input it denies, though its access
// alone evaluates. The native decision answers only configurations whose whole decision the
// library evaluates, so it refuses such a rule.
func TestNativeDeclinesWhereTheWholeDecisionFails(t *testing.T) {
	for _, reason := range []string{`5`, `["no"]`, `{"why": "no"}`, `null`, `true`} {
		var cfg any
		if err := json.Unmarshal([]byte(`{"deny": [{"repositories": ["a1/**"], "actions": ["push"], "reason": `+reason+`}]}`), &cfg); err != nil {
			t.Fatal(err)
		}
		v, err := ast.InterfaceToValue(cfg)
		if err != nil {
			t.Fatal(err)
		}
		in := &Input{Client: Client{IP: "10.0.0.1"}, Principal: Principal{Account: "a1", Groups: []string{}, Roles: []string{}},
			Grants: []Grant{{Subject: "account:a1", Repository: "a1/*", Actions: []string{"pull", "push"}}},
			Scopes: []Scope{{Type: "repository", Name: "a1/app", Actions: []string{"push", "pull"}}}}
		o := newLibraryOracle(t, v)
		if _, err := o.whole.Eval(ctx, append(slices.Clone(evalOptions), rego.EvalParsedInput(in.value()))...); err == nil {
			t.Fatalf("reason %s: the whole decision evaluates; the test no longer reaches a failing one", reason)
		}
		if lib, _ := compileLibraryConfig(v); lib != nil {
			got, err := lib.decide(in)
			t.Errorf("reason %s: the whole decision fails, the native decision answers %v (%v)", reason, got, err)
		}
	}
}
