// Package input turns a token request and the key store's records into the policy's input: the
// scope grammar of the token protocol (ParseScopes), who asks (Principal), and the grants that
// can matter to the request (Token). It is the one place where keystore records become policy
// documents, shared by the token endpoint (package authz) and the admin API, whose explain
// endpoint must build exactly the input the token path would. It knows neither HTTP nor OPA,
// nor any store backend.
package input

import (
	"strings"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// Principal is what the policy reads about an authenticated principal.
func Principal(p keystore.Principal) policy.Principal {
	out := policy.Principal{Account: p.Account.Name, Groups: nonNil(p.Account.Groups), Roles: nonNil(p.Account.Roles),
		Key: &policy.Key{ID: p.Key.ID, Name: p.Key.Name, Expires: Instant(p.Key.Expires), Restrictions: Restrictions(p.Key.Restrictions)}}
	return out
}

// Restrictions is a key's restrictions as the policy reads them: nil when there are none.
func Restrictions(r keystore.Restrictions) *policy.Restrictions {
	if r.IsZero() {
		return nil
	}
	return &policy.Restrictions{Actions: r.Actions, Repositories: r.Repositories, CIDRs: r.CIDRs}
}

// Anonymous is the principal of a request without credentials.
func Anonymous() policy.Principal {
	return policy.Principal{Anonymous: true, Groups: []string{}, Roles: []string{}}
}

// Token is the input of a token request by p (nil when anonymous) for scopes. Of p's grants it
// keeps those whose pattern can match a requested repository (see Relevant), so a decision costs
// the same for an account with ten grants or ten thousand.
func Token(service string, client policy.Client, p *keystore.Principal, scopes []policy.Scope) *policy.Input {
	in := &policy.Input{Service: service, Client: client, Scopes: scopes, Grants: []policy.Grant{}, Owned: []string{}, Principal: Anonymous()}
	if p == nil {
		return in
	}
	in.Principal = Principal(*p)
	in.Owned = keystore.LiteralRepositories(p.Owned)
	for _, g := range p.Grants {
		if Relevant(g.Repository, scopes) {
			in.Grants = append(in.Grants, policy.Grant{Subject: g.Subject.String(), Repository: g.Repository, Actions: g.Actions, Expires: Instant(g.Expires)})
		}
	}
	return in
}

// Relevant reports whether a grant's pattern can match a requested repository: it names one
// exactly, or its text before the first '*' begins one. It errs towards keeping a row, never
// dropping one that could apply: the policy still matches every row it gets. Store patterns use
// no glob syntax but '*' (keystore validates them).
func Relevant(pattern string, scopes []policy.Scope) bool {
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

// Instant is how the policy input spells a time: RFC 3339 in UTC to the nanosecond
// (time.parse_rfc3339_ns reads it), "" for none.
func Instant(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
