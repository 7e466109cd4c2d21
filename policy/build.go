package policy

import (
	"strings"

	"github.com/regoauth/regoauth/keystore"
)

// PrincipalOf is what the policy reads about an authenticated principal.
func PrincipalOf(p keystore.Principal) Principal {
	out := Principal{Account: p.Account.Name, Groups: nonNil(p.Account.Groups), Roles: nonNil(p.Account.Roles),
		Key: &Key{ID: p.Key.ID, Name: p.Key.Name}}
	if r := p.Key.Restrictions; !r.IsZero() {
		out.Key.Restrictions = &Restrictions{Actions: r.Actions, Repositories: r.Repositories, CIDRs: r.CIDRs}
	}
	return out
}

// Anonymous is the principal of a request without credentials.
func Anonymous() Principal { return Principal{Anonymous: true, Groups: []string{}, Roles: []string{}} }

// NewInput is the input of a token request by p (nil when anonymous) for scopes. Of p's grants it
// keeps those whose pattern can match a requested repository (see Relevant), so a decision costs
// the same for an account with ten grants or ten thousand.
func NewInput(service string, client Client, p *keystore.Principal, scopes []Scope) *Input {
	in := &Input{Service: service, Client: client, Scopes: scopes, Grants: []Grant{}, Owned: []string{}, Principal: Anonymous()}
	if p == nil {
		return in
	}
	in.Principal = PrincipalOf(*p)
	in.Owned = keystore.LiteralRepositories(p.Owned)
	for _, g := range p.Grants {
		if Relevant(g.Repository, scopes) {
			in.Grants = append(in.Grants, Grant{Subject: g.Subject.String(), Repository: g.Repository, Actions: g.Actions})
		}
	}
	return in
}

// Relevant reports whether a grant's pattern can match a requested repository: it names one
// exactly, or its text before the first '*' begins one. It errs towards keeping a row, never
// dropping one that could apply: the policy still matches every row it gets. Store patterns use
// no glob syntax but '*' (keystore validates them).
func Relevant(pattern string, scopes []Scope) bool {
	prefix, glob := pattern, false
	if i := strings.IndexByte(pattern, '*'); i >= 0 {
		prefix, glob = pattern[:i], true
	}
	for _, s := range scopes {
		if s.Type == "repository" && (s.Name == pattern || glob && strings.HasPrefix(s.Name, prefix)) {
			return true
		}
	}
	return false
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
