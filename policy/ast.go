package policy

import "github.com/open-policy-agent/opa/v1/ast"

// The inputs are built as OPA values directly: it keeps the per-request cost of handing the
// input to OPA to a few allocations per field, instead of a JSON round trip through reflection.
// The field names and omission rules mirror the JSON tags on the Go types; TestASTMatchesJSON
// holds the two forms equal.
//
// Terms are immutable once built, so keys and common values are shared between requests: with
// a thousand grants, allocating "subject", "repository", "actions" and "pull" for every row
// was a fifth of a decision.

var (
	keyService      = ast.StringTerm("service")
	keyClient       = ast.StringTerm("client")
	keyIP           = ast.StringTerm("ip")
	keyID           = ast.StringTerm("id")
	keyUserAgent    = ast.StringTerm("user_agent")
	keyPrincipal    = ast.StringTerm("principal")
	keyAccount      = ast.StringTerm("account")
	keyAnonymous    = ast.StringTerm("anonymous")
	keyGroups       = ast.StringTerm("groups")
	keyRoles        = ast.StringTerm("roles")
	keyKey          = ast.StringTerm("key")
	keyName         = ast.StringTerm("name")
	keyRestrictions = ast.StringTerm("restrictions")
	keyActions      = ast.StringTerm("actions")
	keyRepositories = ast.StringTerm("repositories")
	keyCIDRs        = ast.StringTerm("cidrs")
	keyGrants       = ast.StringTerm("grants")
	keySubject      = ast.StringTerm("subject")
	keyRepository   = ast.StringTerm("repository")
	keyOwned        = ast.StringTerm("owned")
	keyScopes       = ast.StringTerm("scopes")
	keyType         = ast.StringTerm("type")
	keyClass        = ast.StringTerm("class")
	keyOperation    = ast.StringTerm("operation")
	keyTarget       = ast.StringTerm("target")
	keyGroup        = ast.StringTerm("group")
	keyKeyID        = ast.StringTerm("key_id")
	keyOwner        = ast.StringTerm("owner")
	keyExpires      = ast.StringTerm("expires")

	// The keys of decisions.
	keyAccess   = ast.StringTerm("access")
	keyReasons  = ast.StringTerm("reasons")
	keyAllow    = ast.StringTerm("allow")
	keyMaxOwned = ast.StringTerm("max_owned")

	// commonValues are values most requests repeat: actions and scope types.
	commonValues = func() map[string]*ast.Term {
		m := map[string]*ast.Term{}
		for _, s := range []string{"pull", "push", "delete", "*", "repository", "registry", "catalog"} {
			m[s] = ast.StringTerm(s)
		}
		return m
	}()
)

type object []([2]*ast.Term)

func (o object) add(key, v *ast.Term) object { return append(o, [2]*ast.Term{key, v}) }

func (o object) addString(key *ast.Term, v string) object { return o.add(key, str(v)) }

// addOptional adds v unless it is empty, like `omitempty`.
func (o object) addOptional(key *ast.Term, v string) object {
	if v == "" {
		return o
	}
	return o.addString(key, v)
}

func (o object) term() *ast.Term { return ast.ObjectTerm(o...) }

// str is a string term, shared when the value is a common one.
func str(s string) *ast.Term {
	if t, ok := commonValues[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}

func stringTerms(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = str(s)
	}
	return ast.ArrayTerm(terms...)
}

func (in *Input) value() ast.Value {
	grants := make([]*ast.Term, 0, len(in.Grants))
	// Rows share the terms of their subject (a principal has one account and a few groups) and
	// of their action list (there are a handful of distinct ones). Both are found by a linear
	// search: the rows that reach a decision are those that can match a requested repository,
	// a few, and a map would cost more than it saves.
	var subjects []*ast.Term
	var actions []sharedActions
	for _, g := range in.Grants {
		var subject *ast.Term
		for _, t := range subjects {
			if string(t.Value.(ast.String)) == g.Subject {
				subject = t
				break
			}
		}
		if subject == nil {
			subject = ast.StringTerm(g.Subject)
			subjects = append(subjects, subject)
		}
		var acts *ast.Term
		key, common := actionsKey(g.Actions)
		if common {
			for _, a := range actions {
				if a.key == key {
					acts = a.term
					break
				}
			}
		}
		if acts == nil {
			acts = stringTerms(g.Actions)
			if common {
				actions = append(actions, sharedActions{key, acts})
			}
		}
		row := make(object, 0, 4).add(keySubject, subject).add(keyRepository, ast.StringTerm(g.Repository)).add(keyActions, acts)
		grants = append(grants, row.addOptional(keyExpires, g.Expires).term())
	}
	scopes := make([]*ast.Term, len(in.Scopes))
	for i, s := range in.Scopes {
		scopes[i] = s.term()
	}
	return make(object, 0, 6).
		addString(keyService, in.Service).
		add(keyClient, in.Client.term()).
		add(keyPrincipal, in.Principal.term()).
		add(keyGrants, ast.ArrayTerm(grants...)).
		add(keyOwned, stringTerms(in.Owned)).
		add(keyScopes, ast.ArrayTerm(scopes...)).
		term().Value
}

// sharedActions is the term of an action list, by its actionsKey.
type sharedActions struct {
	key  uint64
	term *ast.Term
}

// actionsKey encodes a list of up to eight repository actions, in order, as a number; lists of
// anything else are not shared.
func actionsKey(actions []string) (uint64, bool) {
	if len(actions) > 8 {
		return 0, false
	}
	var key uint64
	for _, a := range actions {
		var code uint64
		switch a {
		case "pull":
			code = 1
		case "push":
			code = 2
		case "delete":
			code = 3
		case "*":
			code = 4
		default:
			return 0, false
		}
		key = key<<3 | code
	}
	return key, true
}

func (c Client) term() *ast.Term {
	return make(object, 0, 3).addString(keyIP, c.IP).addOptional(keyID, c.ID).addOptional(keyUserAgent, c.UserAgent).term()
}

func (s Scope) term() *ast.Term {
	return make(object, 0, 4).addString(keyType, s.Type).addOptional(keyClass, s.Class).addString(keyName, s.Name).add(keyActions, stringTerms(s.Actions)).term()
}

func (p Principal) term() *ast.Term {
	o := make(object, 0, 5).addOptional(keyAccount, p.Account).
		add(keyAnonymous, ast.InternedTerm(p.Anonymous)).
		add(keyGroups, stringTerms(p.Groups)).
		add(keyRoles, stringTerms(p.Roles))
	if p.Key != nil {
		key := make(object, 0, 4).addString(keyID, p.Key.ID).addOptional(keyName, p.Key.Name).addOptional(keyExpires, p.Key.Expires)
		if r := p.Key.Restrictions; r != nil {
			key = key.add(keyRestrictions, r.term())
		}
		o = o.add(keyKey, key.term())
	}
	return o.term()
}

func (r *Restrictions) term() *ast.Term {
	ro := make(object, 0, 3)
	for _, f := range []struct {
		name *ast.Term
		v    []string
	}{{keyActions, r.Actions}, {keyRepositories, r.Repositories}, {keyCIDRs, r.CIDRs}} {
		if len(f.v) > 0 {
			ro = ro.add(f.name, stringTerms(f.v))
		}
	}
	return ro.term()
}

func (in *AdminInput) value() ast.Value {
	t := in.Target
	target := object{}.addOptional(keyAccount, t.Account).addOptional(keyGroup, t.Group).
		addOptional(keyRepository, t.Repository).addOptional(keyKeyID, t.KeyID).addOptional(keyOwner, t.Owner).
		addOptional(keyExpires, t.Expires)
	if t.Actions != nil {
		target = target.add(keyActions, stringTerms(t.Actions))
	}
	if t.Restrictions != nil {
		target = target.add(keyRestrictions, t.Restrictions.term())
	}
	return object{}.
		add(keyPrincipal, in.Principal.term()).
		add(keyClient, in.Client.term()).
		addString(keyOperation, in.Operation).
		add(keyTarget, target.term()).
		add(keyOwned, stringTerms(in.Owned)).
		term().Value
}
