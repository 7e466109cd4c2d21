package policy

import "github.com/open-policy-agent/opa/v1/ast"

// The inputs are built as OPA values directly: it keeps the per-request cost of handing the
// input to OPA to a few allocations, instead of a JSON round trip through reflection. The field
// names and omission rules mirror the JSON tags on the Go types; TestASTMatchesJSON holds the
// two forms equal.

type object []([2]*ast.Term)

func (o object) add(key string, v *ast.Term) object {
	return append(o, [2]*ast.Term{ast.StringTerm(key), v})
}

func (o object) addString(key, v string) object { return o.add(key, ast.StringTerm(v)) }

// addOptional adds v unless it is empty, like `omitempty`.
func (o object) addOptional(key, v string) object {
	if v == "" {
		return o
	}
	return o.addString(key, v)
}

func (o object) term() *ast.Term { return ast.ObjectTerm(o...) }

func stringTerms(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

func (in *Input) value() ast.Value {
	grants := make([]*ast.Term, len(in.Grants))
	for i, g := range in.Grants {
		grants[i] = object{}.addString("subject", g.Subject).addString("repository", g.Repository).add("actions", stringTerms(g.Actions)).term()
	}
	scopes := make([]*ast.Term, len(in.Scopes))
	for i, s := range in.Scopes {
		scopes[i] = s.term()
	}
	client := object{}.addString("ip", in.Client.IP).addOptional("id", in.Client.ID).addOptional("user_agent", in.Client.UserAgent)
	return object{}.
		addString("service", in.Service).
		add("client", client.term()).
		add("principal", in.Principal.term()).
		add("grants", ast.ArrayTerm(grants...)).
		add("owned", stringTerms(in.Owned)).
		add("scopes", ast.ArrayTerm(scopes...)).
		term().Value
}

func (s Scope) term() *ast.Term {
	return object{}.addString("type", s.Type).addOptional("class", s.Class).addString("name", s.Name).add("actions", stringTerms(s.Actions)).term()
}

func (p Principal) term() *ast.Term {
	o := object{}.addOptional("account", p.Account).
		add("anonymous", ast.BooleanTerm(p.Anonymous)).
		add("groups", stringTerms(p.Groups)).
		add("roles", stringTerms(p.Roles))
	if p.Key != nil {
		key := object{}.addString("id", p.Key.ID).addOptional("name", p.Key.Name)
		if r := p.Key.Restrictions; r != nil {
			ro := object{}
			for _, f := range []struct {
				name string
				v    []string
			}{{"actions", r.Actions}, {"repositories", r.Repositories}, {"cidrs", r.CIDRs}} {
				if len(f.v) > 0 {
					ro = ro.add(f.name, stringTerms(f.v))
				}
			}
			key = key.add("restrictions", ro.term())
		}
		o = o.add("key", key.term())
	}
	return o.term()
}

func (in *AdminInput) value() ast.Value {
	t := in.Target
	target := object{}.addOptional("account", t.Account).addOptional("group", t.Group).
		addOptional("repository", t.Repository).addOptional("key_id", t.KeyID).addOptional("owner", t.Owner)
	if len(t.Actions) > 0 {
		target = target.add("actions", stringTerms(t.Actions))
	}
	return object{}.
		add("principal", in.Principal.term()).
		addString("operation", in.Operation).
		add("target", target.term()).
		add("owned", stringTerms(in.Owned)).
		term().Value
}
