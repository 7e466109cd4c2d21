package policy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Explanation is why a token decision came out as it did: what the policy saw, what it
// decided, which rules fired, and for every requested action whether it was allowed and why.
type Explanation struct {
	// Revision is the policy revision that decided.
	Revision string `json:"revision"`
	Input    *Input `json:"input"`
	// Decision is the decision document as the policy returned it (null when undefined).
	Decision any `json:"decision"`
	// Actions has one entry per requested action, in request order.
	Actions []ActionVerdict `json:"actions"`
	// Rules are the rules that fired, in evaluation order, each once per distinct arguments.
	Rules []FiredRule `json:"rules"`
	// AccountWithheld is set when the asker may not read the account: the explanation then
	// leaves out its groups, roles and key, and the rules that fired; the verdicts name only the
	// rules that tell nothing of who the account is (WithoutRulesAboutAccount).
	AccountWithheld bool `json:"account_withheld,omitempty"`
}

// ActionVerdict is the outcome for one requested action.
type ActionVerdict struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Action  string `json:"action"`
	Allowed bool   `json:"allowed"`
	// Reason is the policy's reason for a denial (from the decision's "reasons"), if it gave one.
	Reason string `json:"reason,omitempty"`
	// Rules are the titled (METADATA title) rules that fired for exactly this scope and action,
	// e.g. the grant that permitted it or the restriction that denied it.
	Rules []FiredRule `json:"rules,omitempty"`
	// withheld is this verdict as whoever may not read the account sees it.
	withheld withheldVerdict
}

// withheldVerdict is a verdict's rules and reason without the rules about the account.
type withheldVerdict struct {
	rules  []FiredRule
	reason string
}

// FiredRule is one rule whose body succeeded during the evaluation.
type FiredRule struct {
	// Rule is the rule's full path, e.g. data.regoauth.authz.permitted.
	Rule string `json:"rule"`
	// Title is the rule's METADATA title, when it has one.
	Title string `json:"title,omitempty"`
	// Location is FILE:ROW of the rule.
	Location string `json:"location"`
	// Args are a function rule's arguments: a scope as TYPE:NAME, other values as Rego.
	Args []string `json:"args,omitempty"`
	// Withheld marks the stand-in for rules about the account in an explanation for whoever may
	// not read it (WithoutRulesAboutAccount): a verdict was decided by who the account is.
	Withheld bool `json:"withheld,omitempty"`
	// evaluated is set when Args are values of the evaluation (a function's arguments), not the
	// scope and action a rule of the library's form fired for: they may be the policy's data.
	evaluated bool
	// view is the rule's METADATA custom field when_account_withheld.
	view string
}

// A rule's METADATA may say how an explanation for whoever may not read the account (the owner
// of a repository asking about its buyer) shows it, in the custom field when_account_withheld.
// A rule without it is about the account, so a new rule is withheld until marked.
const (
	withheldField = "when_account_withheld"
	// viewShown marks a rule whose firing tells nothing of who the account is (its roles, groups,
	// other grants, key): the owner's rule, the account's own row naming the repository.
	viewShown = "shown"
	// viewOwnRow marks the library's grant rule: shown where a row of the account itself names
	// the repository exactly with the action (what the repository's owner sees of its buyers),
	// so that one rule serves every row and the token decision pays nothing for the view.
	viewOwnRow = "own row"
	// viewAsExtension marks the library's rules that pass on an extension's permit or deny set:
	// shown when every extension rule that fired for the same scope and action is shown.
	viewAsExtension = "as extension"
)

// What an explanation for whoever may not read the account says in place of a rule about it.
const (
	withheldTitle  = "a rule about the account"
	withheldReason = "refused by a rule about the account"
	// notPermitted is the library's reason for an action no rule denies and none permits.
	notPermitted = "no grant or rule permits it"
)

// WithoutPolicyData is the explanation without the arguments of the rules that fired, other
// than the scope and action a rule fired for: a function's arguments may be the policy's data
// (a deny rule whole, with the accounts it excepts; an extension's data), even when the rule
// has nothing to do with the request. The verdicts keep their rules, whose arguments are
// always the requested scope and action.
func (x Explanation) WithoutPolicyData() Explanation {
	rules := make([]FiredRule, len(x.Rules))
	for i, r := range x.Rules {
		if r.evaluated {
			r.Args = nil
		}
		rules[i] = r
	}
	x.Rules = rules
	return x
}

// WithoutRulesAboutAccount is the explanation as whoever may not read the account sees it: the
// verdicts, each with the rules that decided it when they tell nothing of who the account is,
// else with the stand-in "a rule about the account" (and, for a denial, the reason "refused by
// a rule about the account"); no rules that fired; and the decision document rebuilt from those
// verdicts. A verdict that rests on the account's roles, groups, other grants, key or a deny
// rule chosen by subject stays right, allowed or not, without saying which.
func (x Explanation) WithoutRulesAboutAccount() Explanation {
	actions := make([]ActionVerdict, len(x.Actions))
	for i, v := range x.Actions {
		v.Rules, v.Reason = v.withheld.rules, v.withheld.reason
		actions[i] = v
	}
	x.Actions = actions
	x.Rules = []FiredRule{}
	if x.Decision != nil {
		x.Decision = decisionOf(actions)
	}
	return x
}

// decisionOf is the library's decision document for verdicts: the actions allowed on each scope
// and the reason for each denied one, sorted as the library sorts them.
func decisionOf(verdicts []ActionVerdict) map[string]any {
	type entry struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	access, reasons := []*entry{}, []string{}
	for i, v := range verdicts {
		if i == 0 || v.Type != verdicts[i-1].Type || v.Name != verdicts[i-1].Name {
			access = append(access, &entry{Type: v.Type, Name: v.Name, Actions: []string{}})
		}
		if e := access[len(access)-1]; v.Allowed {
			e.Actions = append(e.Actions, v.Action)
			slices.Sort(e.Actions)
		} else if v.Reason != "" {
			reasons = append(reasons, v.Type+":"+v.Name+" "+v.Action+": "+v.Reason)
		}
	}
	slices.Sort(reasons)
	return map[string]any{"access": access, "reasons": reasons}
}

// Explain evaluates the token decision for in on the active revision with a trace. It makes no
// token and writes no decision log.
func (e *Engine) Explain(ctx context.Context, in *Input) (Explanation, error) {
	tracer := topdown.NewBufferTracer()
	ev, err := e.eval(ctx, queryAuthz, in.value(), nil, 0, rego.EvalQueryTracer(tracer))
	if err != nil {
		return Explanation{}, err
	}
	x := Explanation{Revision: ev.rev.name, Input: in, Decision: ev.doc(), Rules: []FiredRule{}, Actions: []ActionVerdict{}}
	var d Decision
	var reasons []string
	if ev.defined {
		if err := parseDecision(ev.value, &d); err != nil {
			d = Decision{}
		} else {
			reasons = stringList(field(ev.value.(ast.Object), keyReasons))
		}
	}
	var fired []firing
	seen := map[string]bool{}
	// unresolved are the extension sets ("permit", "deny") a rule added to in a form whose
	// elements could not be read: the library's rules passing such a set on are withheld.
	unresolved := map[string]bool{}
	annotations := ev.rev.compiler.GetAnnotationSet()
	for _, event := range *tracer {
		rule, ok := event.Node.(*ast.Rule)
		if event.Op != topdown.ExitOp || !ok {
			continue
		}
		f := FiredRule{Rule: rulePath(rule), Location: location(rule.Location)}
		if annotations != nil {
			for _, a := range annotations.GetRuleScope(rule) {
				if a.Title != "" {
					f.Title = a.Title
				}
				if view, ok := a.Custom[withheldField].(string); ok {
					f.view = view
				}
			}
		}
		set, extension := extensionSet(rule)
		var args []*ast.Term
		if extension {
			var resolved bool
			args, resolved = extensionScopeAction(rule, event.Locals, in.Scopes)
			unresolved[set] = unresolved[set] || !resolved
		} else {
			set = librarySet(rule, f.Rule)
			args = scopeActionOf(rule, event.Locals, in.Scopes)
		}
		if args == nil {
			for _, a := range rule.Head.Args {
				args = append(args, bind(a, event.Locals))
			}
			f.evaluated = len(args) > 0
		}
		for _, a := range args {
			f.Args = append(f.Args, renderArg(a))
		}
		key := f.Rule + "@" + f.Location + "(" + strings.Join(f.Args, ",") + ")"
		if seen[key] {
			continue
		}
		seen[key] = true
		fired = append(fired, firing{rule: f, args: args, set: set, extension: extension})
		x.Rules = append(x.Rules, f)
	}
	for _, s := range in.Scopes {
		allowed := d.Allowed(s.Type, s.Name)
		for _, action := range s.Actions {
			v := ActionVerdict{Type: s.Type, Name: s.Name, Action: action, Allowed: slices.Contains(allowed, action)}
			if !v.Allowed {
				v.Reason = reasonFor(reasons, s, action)
			}
			var decided []firing
			for _, f := range fired {
				if len(f.args) == 2 && isScope(f.args[0], s) && f.args[1].Equal(ast.StringTerm(action)) {
					decided = append(decided, f)
					if f.rule.Title != "" {
						v.Rules = append(v.Rules, f.rule)
					}
				}
			}
			v.withheld = withhold(v, decided, unresolved, ownRow(in, s, action))
			x.Actions = append(x.Actions, v)
		}
	}
	return x, nil
}

// firing is a rule that fired, with the arguments it fired for: the scope and action for the
// library's rules and extensions' permit and deny sets.
type firing struct {
	rule FiredRule
	args []*ast.Term
	// set is the rule's name for the library's rules and extensions' sets ("permit", "deny",
	// "key_deny"), else its full path: only the library's and extensions' "permit" permit.
	set string
	// extension is set for a rule of an extension's permit or deny set.
	extension bool
}

// withhold is verdict v as whoever may not read the account sees it, decided by the rules that
// fired for its scope and action. An allowed verdict names the shown permit rules, or the
// stand-in when none is shown. A denied one keeps its reason and names the shown rules when every
// rule that refused it is shown, and the reason is theirs or the library's "no grant or rule
// permits it"; otherwise the reason and a rule are the stand-ins. A rule permitting the action
// that is not shown is left out of a denial: whether one fired tells of the account, not why it
// was refused. ownRow says whether a row of the account itself names the scope with the action
// (viewOwnRow).
func withhold(v ActionVerdict, decided []firing, unresolved map[string]bool, ownRow bool) withheldVerdict {
	shown := func(f firing) bool {
		switch f.rule.view {
		case viewShown:
			return true
		case viewOwnRow:
			return ownRow
		case viewAsExtension:
			if unresolved[f.set] {
				return false
			}
			n := 0
			for _, e := range decided {
				if e.extension && e.set == f.set {
					if e.rule.view != viewShown {
						return false
					}
					n++
				}
			}
			return n > 0
		}
		return false
	}
	stand := FiredRule{Title: withheldTitle, Withheld: true}
	var w withheldVerdict
	refused, withheldRefusal := false, false
	for _, f := range decided {
		refusing := f.set != "permit"
		refused = refused || refusing
		switch {
		case shown(f):
			if f.rule.Title != "" {
				w.rules = append(w.rules, f.rule)
			}
		case refusing:
			withheldRefusal = true
		}
	}
	if v.Allowed {
		if len(w.rules) == 0 {
			w.rules = []FiredRule{stand}
		}
		return w
	}
	w.reason = v.Reason
	if withheldRefusal || !refused && v.Reason != "" && v.Reason != notPermitted {
		w.reason = withheldReason
		w.rules = append(w.rules, stand)
	}
	return w
}

// ownRow reports whether a row of the account itself in the input names scope s exactly and
// holds action.
func ownRow(in *Input, s Scope, action string) bool {
	if in.Principal.Anonymous || s.Type != "repository" {
		return false
	}
	subject := "account:" + in.Principal.Account
	return slices.ContainsFunc(in.Grants, func(g Grant) bool {
		return g.Subject == subject && g.Repository == s.Name && slices.Contains(g.Actions, action)
	})
}

// extensionSet reports whether rule adds to an extension's permit or deny set, and which.
func extensionSet(rule *ast.Rule) (string, bool) {
	if rule.Module == nil {
		return "", false
	}
	pkg, ref := rule.Module.Package.Path, rule.Head.Ref()
	if len(pkg) != 4 || !pkg[:3].Equal(extensionsRef) || len(ref) == 0 {
		return "", false
	}
	name, ok := ref[0].Value.(ast.Var)
	if !ok || name != "permit" && name != "deny" {
		return "", false
	}
	return string(name), true
}

var (
	extensionsRef = ast.MustParseRef("data.regoauth.extensions")
	libraryRef    = ast.MustParseRef("data.regoauth.authz")
)

// librarySet is the name of a rule of the library ("permit", "deny", "key_deny"), and the full
// path of any other rule.
func librarySet(rule *ast.Rule, path string) string {
	ref := rule.Head.Ref()
	if rule.Module == nil || !rule.Module.Package.Path.Equal(libraryRef) || len(ref) == 0 {
		return path
	}
	if name, ok := ref[0].Value.(ast.Var); ok {
		return string(name)
	}
	return path
}

// extensionScopeAction reads the scope and action an extension's permit or deny rule fired for,
// from the element it added: [type, name, action] to permit, {"type", "name", "action", ...} to
// deny, as the library reads them. It returns nil for an element of a scope and action not
// requested, and resolved false when the rule is of another form (the library may still read
// its set, so what it adds is unknown).
func extensionScopeAction(rule *ast.Rule, locals *ast.ValueMap, scopes []Scope) (args []*ast.Term, resolved bool) {
	ref := rule.Head.Ref()
	if len(ref) != 1 || rule.Head.Key == nil {
		return nil, false
	}
	var typ, name, action ast.Value
	switch el := bind(rule.Head.Key, locals).Value.(type) {
	case *ast.Array:
		if el.Len() != 3 || ref[0].Value.Compare(ast.Var("permit")) != 0 {
			return nil, false
		}
		typ, name, action = el.Elem(0).Value, el.Elem(1).Value, el.Elem(2).Value
	case ast.Object:
		if ref[0].Value.Compare(ast.Var("deny")) != 0 {
			return nil, false
		}
		for _, k := range []struct {
			key string
			to  *ast.Value
		}{{"type", &typ}, {"name", &name}, {"action", &action}} {
			if t := el.Get(ast.StringTerm(k.key)); t != nil {
				*k.to = t.Value
			}
		}
	default:
		return nil, false
	}
	ts, ok1 := typ.(ast.String)
	ns, ok2 := name.(ast.String)
	as, ok3 := action.(ast.String)
	if !ok1 || !ok2 || !ok3 {
		return nil, false
	}
	for _, s := range scopes {
		if s.Type == string(ts) && s.Name == string(ns) && slices.Contains(s.Actions, string(as)) {
			scope := ast.ObjectTerm(
				[2]*ast.Term{ast.StringTerm("type"), ast.StringTerm(s.Type)},
				[2]*ast.Term{ast.StringTerm("name"), ast.StringTerm(s.Name)},
			)
			return []*ast.Term{scope, ast.StringTerm(string(as))}, true
		}
	}
	return nil, true
}

// bind resolves a variable to its value in locals, when bound.
func bind(t *ast.Term, locals *ast.ValueMap) *ast.Term {
	if vr, ok := t.Value.(ast.Var); ok && locals != nil {
		if bound := locals.Get(vr); bound != nil {
			return ast.NewTerm(bound)
		}
	}
	return t
}

// scopeActionOf reads the scope and action a library rule fired for, from its head: either
// "NAME contains [i, action]" or "NAME[i] contains action", where i indexes the requested
// scopes. It returns nil for rules of other forms.
func scopeActionOf(rule *ast.Rule, locals *ast.ValueMap, scopes []Scope) []*ast.Term {
	ref := rule.Head.Ref()
	if rule.Head.Key == nil {
		return nil
	}
	var index, action *ast.Term
	switch len(ref) {
	case 1:
		pair, ok := bind(rule.Head.Key, locals).Value.(*ast.Array)
		if !ok || pair.Len() != 2 {
			return nil
		}
		index, action = pair.Elem(0), pair.Elem(1)
	case 2:
		index, action = ref[1], rule.Head.Key
	default:
		return nil
	}
	i, ok := bind(index, locals).Value.(ast.Number)
	if !ok {
		return nil
	}
	n, ok := i.Int()
	action = bind(action, locals)
	if _, isString := action.Value.(ast.String); !ok || !isString || n < 0 || n >= len(scopes) {
		return nil
	}
	scope := ast.ObjectTerm(
		[2]*ast.Term{ast.StringTerm("type"), ast.StringTerm(scopes[n].Type)},
		[2]*ast.Term{ast.StringTerm("name"), ast.StringTerm(scopes[n].Name)},
	)
	return []*ast.Term{scope, action}
}

// rulePath is the rule's full path, e.g. data.regoauth.authz.permitted.
func rulePath(r *ast.Rule) string {
	if r.Module == nil {
		return r.Head.Ref().String()
	}
	ref := r.Module.Package.Path.Copy()
	for i, t := range r.Head.Ref() {
		if v, ok := t.Value.(ast.Var); ok && i == 0 {
			t = ast.StringTerm(string(v))
		}
		ref = append(ref, t)
	}
	return ref.String()
}

func location(l *ast.Location) string {
	if l == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d", path.Base(l.File), l.Row)
}

// renderArg shows a scope object as TYPE:NAME and anything else as Rego.
func renderArg(t *ast.Term) string {
	if obj, ok := t.Value.(ast.Object); ok {
		if typ, name := obj.Get(ast.StringTerm("type")), obj.Get(ast.StringTerm("name")); typ != nil && name != nil {
			ts, ok1 := typ.Value.(ast.String)
			ns, ok2 := name.Value.(ast.String)
			if ok1 && ok2 {
				return string(ts) + ":" + string(ns)
			}
		}
	}
	if s, ok := t.Value.(ast.String); ok {
		return string(s)
	}
	return t.String()
}

func isScope(t *ast.Term, s Scope) bool {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return false
	}
	typ, name := obj.Get(ast.StringTerm("type")), obj.Get(ast.StringTerm("name"))
	return typ != nil && name != nil && typ.Equal(ast.StringTerm(s.Type)) && name.Equal(ast.StringTerm(s.Name))
}

// reasonFor finds the reason the library gives as "TYPE:NAME ACTION: why".
func reasonFor(reasons []string, s Scope, action string) string {
	prefix := s.Type + ":" + s.Name + " " + action + ": "
	for _, r := range reasons {
		if why, ok := strings.CutPrefix(r, prefix); ok {
			return why
		}
	}
	return ""
}
