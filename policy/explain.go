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
	// leaves out its groups, roles and key, and the rules that fired (the verdicts keep theirs).
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
	// Rules are the titled (METADATA title) function rules that fired for exactly this scope and
	// action, e.g. the grant that permitted it or the restriction that denied it.
	Rules []FiredRule `json:"rules,omitempty"`
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
	// evaluated is set when Args are values of the evaluation (a function's arguments), not the
	// scope and action a rule of the library's form fired for: they may be the policy's data.
	evaluated bool
}

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

// Explain evaluates the token decision for in on the active revision with a trace. It makes no
// token and writes no decision log.
func (e *Engine) Explain(ctx context.Context, in *Input) (Explanation, error) {
	tracer := topdown.NewBufferTracer()
	ev, err := e.eval(ctx, queryAuthz, in.value(), rego.EvalQueryTracer(tracer))
	if err != nil {
		return Explanation{}, err
	}
	x := Explanation{Revision: ev.rev.name, Input: in, Decision: ev.doc(), Rules: []FiredRule{}, Actions: []ActionVerdict{}}
	var d Decision
	if ev.defined {
		if err := parseDecision(ev.value, &d); err != nil {
			d = Decision{}
		}
	}
	type firing struct {
		rule FiredRule
		args []*ast.Term
	}
	var fired []firing
	seen := map[string]bool{}
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
			}
		}
		args := scopeActionOf(rule, event.Locals, in.Scopes)
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
		fired = append(fired, firing{rule: f, args: args})
		x.Rules = append(x.Rules, f)
	}
	for _, s := range in.Scopes {
		allowed := d.Allowed(s.Type, s.Name)
		for _, action := range s.Actions {
			v := ActionVerdict{Type: s.Type, Name: s.Name, Action: action, Allowed: slices.Contains(allowed, action)}
			if !v.Allowed {
				v.Reason = reasonFor(d.Reasons, s, action)
			}
			for _, f := range fired {
				if f.rule.Title != "" && len(f.args) == 2 && isScope(f.args[0], s) && f.args[1].Equal(ast.StringTerm(action)) {
					v.Rules = append(v.Rules, f.rule)
				}
			}
			x.Actions = append(x.Actions, v)
		}
	}
	return x, nil
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
