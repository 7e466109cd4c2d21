package policy

import (
	"slices"
	"strings"
	"testing"
)

func titles(rules []FiredRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.Title)
	}
	return out
}

func TestExplain(t *testing.T) {
	e := loaded(t)
	in := storyInput()
	in.Principal.Key.Restrictions = &Restrictions{Actions: []string{"pull"}}
	in.Scopes = []Scope{
		{Type: "repository", Name: "image2", Actions: []string{"pull", "push"}},
		{Type: "repository", Name: "nope", Actions: []string{"pull"}},
	}
	x, err := e.Explain(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if x.Revision != e.Revision() || x.Input != in || x.Decision == nil {
		t.Fatalf("explanation header = %q %v %v", x.Revision, x.Input, x.Decision)
	}
	want := []struct {
		name, action string
		allowed      bool
		reason       string
		rules        []string
	}{
		{"image2", "pull", true, "", []string{"grant"}},
		{"image2", "push", false, "the API key's restrictions forbid it", []string{"grant", "key action ceiling", "key restrictions"}},
		{"nope", "pull", false, "no grant or rule permits it", nil},
	}
	if len(x.Actions) != len(want) {
		t.Fatalf("%d verdicts, want %d: %+v", len(x.Actions), len(want), x.Actions)
	}
	for i, w := range want {
		t.Run(w.name+":"+w.action, func(t *testing.T) {
			v := x.Actions[i]
			if v.Name != w.name || v.Action != w.action || v.Allowed != w.allowed || v.Reason != w.reason {
				t.Fatalf("verdict = %+v", v)
			}
			got := titles(v.Rules)
			slices.Sort(got)
			if !slices.Equal(got, w.rules) {
				t.Fatalf("rules = %v, want %v", got, w.rules)
			}
			for _, r := range v.Rules {
				if !strings.HasPrefix(r.Rule, "data.regoauth.authz.") || !strings.HasPrefix(r.Location, "authz.rego:") {
					t.Errorf("rule %+v", r)
				}
			}
		})
	}
	var decisionFired bool
	for _, r := range x.Rules {
		decisionFired = decisionFired || r.Rule == "data.regoauth.authz.decision"
	}
	if !decisionFired {
		t.Fatalf("the decision rule is not among the fired rules: %+v", x.Rules)
	}
}

func TestExplainNeedsAPolicy(t *testing.T) {
	if _, err := New(Options{}).Explain(ctx, storyInput()); err == nil {
		t.Fatal("explained without a policy")
	}
}
