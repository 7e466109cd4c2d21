package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/policies"
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
		decisionFired = decisionFired || r.Rule == "data.regoauth.authz.decision.access"
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

// extensionForWithholding is an extension with a rule of each kind: one marked shown and one not,
// permitting and denying.
const extensionForWithholding = `package regoauth.extensions.test

# METADATA
# title: open listing
# custom:
#   when_account_withheld: shown
permit contains ["repository", "open/app", "pull"] if input.principal.anonymous == false

# METADATA
# title: the vip lounge
permit contains ["repository", "lounge/app", "pull"] if "vip" in input.principal.groups

# METADATA
# title: frozen
# custom:
#   when_account_withheld: shown
deny contains {"type": "repository", "name": "frozen/app", "action": "push", "reason": "frozen/app is frozen"}

# METADATA
# title: staff
deny contains {"type": "repository", "name": scope.name, "action": "pull", "reason": "the staff buy nothing"} if {
	some scope in input.scopes
	startswith(scope.name, "shop/")
	"staff" in input.principal.groups
}
`

// TestExplainWithoutRulesAboutAccount: an extension's rules are withheld from whoever may not
// read the account unless marked shown (METADATA custom when_account_withheld), and so is the
// library's "extension" rule passing them on; an extension set the explanation cannot read
// element by element withholds every verdict it could have decided.
func TestExplainWithoutRulesAboutAccount(t *testing.T) {
	in := storyInput()
	in.Principal.Key, in.Principal.Groups = nil, []string{"vip", "staff"}
	in.Grants = []Grant{{Subject: "account:user1", Repository: "frozen/app", Actions: []string{"push"}}}
	in.Scopes = []Scope{
		{Type: "repository", Name: "open/app", Actions: []string{"pull"}},
		{Type: "repository", Name: "lounge/app", Actions: []string{"pull"}},
		{Type: "repository", Name: "frozen/app", Actions: []string{"push"}},
		{Type: "repository", Name: "shop/app", Actions: []string{"pull"}},
	}
	verdicts := func(x Explanation) []string {
		var out []string
		for _, v := range x.Actions {
			got := titles(v.Rules)
			slices.Sort(got)
			out = append(out, fmt.Sprintf("%s %s %v %q %v", v.Name, v.Action, v.Allowed, v.Reason, got))
		}
		return out
	}
	for _, tt := range []struct {
		name       string
		extensions map[string]string
		all, owner []string
	}{
		{
			name:       "marked rules",
			extensions: map[string]string{"test.rego": extensionForWithholding},
			all: []string{
				`open/app pull true "" [extension open listing]`,
				`lounge/app pull true "" [extension the vip lounge]`,
				`frozen/app push false "frozen/app is frozen" [extension frozen grant]`,
				`shop/app pull false "the staff buy nothing" [extension staff]`,
			},
			owner: []string{
				`open/app pull true "" [extension open listing]`,
				`lounge/app pull true "" [a rule about the account]`,
				`frozen/app push false "frozen/app is frozen" [extension frozen grant]`,
				`shop/app pull false "refused by a rule about the account" [a rule about the account]`,
			},
		},
		{
			name: "a set of another form",
			extensions: map[string]string{
				"test.rego": extensionForWithholding,
				"whole.rego": `package regoauth.extensions.whole

# METADATA
# title: whole
# custom:
#   when_account_withheld: shown
deny := {d | some d in data.regoauth.extensions.test.deny}
`,
			},
			owner: []string{
				`open/app pull true "" [extension open listing]`,
				`lounge/app pull true "" [a rule about the account]`,
				`frozen/app push false "refused by a rule about the account" [a rule about the account frozen grant]`,
				`shop/app pull false "refused by a rule about the account" [a rule about the account]`,
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{".manifest": `{"roots": ["regoauth/extensions"]}`}
			for name, src := range tt.extensions {
				files[name] = src
			}
			e := started(t, Options{Source: Source{Builtin: policies.FS, Dir: writeTree(t, t.TempDir(), files)}})
			x, err := e.Explain(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if tt.all != nil && !slices.Equal(verdicts(x), tt.all) {
				t.Errorf("full verdicts:\n%s\nwant\n%s", strings.Join(verdicts(x), "\n"), strings.Join(tt.all, "\n"))
			}
			w := x.WithoutRulesAboutAccount()
			if got := verdicts(w); !slices.Equal(got, tt.owner) {
				t.Errorf("withheld verdicts:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.owner, "\n"))
			}
			if len(w.Rules) != 0 {
				t.Errorf("%d rules that fired", len(w.Rules))
			}
			doc, err := json.Marshal(w.Decision)
			if err != nil || strings.Contains(string(doc), "staff") || !strings.Contains(string(doc), `{"type":"repository","name":"open/app","actions":["pull"]}`) {
				t.Errorf("decision %s", doc)
			}
			// The full explanation is untouched.
			if again, err := e.Explain(ctx, in); err != nil || !slices.Equal(verdicts(x), verdicts(again)) {
				t.Error("withholding changed the explanation it was made from")
			}
		})
	}
}
