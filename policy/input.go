package policy

// Input is the document a token decision is made on: one evaluation per token request, every
// requested scope at once. Its JSON form is the contract with policy authors (docs/policy.md);
// fields that carry no information are omitted rather than sent empty.
type Input struct {
	Service   string    `json:"service"`
	Client    Client    `json:"client"`
	Principal Principal `json:"principal"`
	// Grants are the ACL rows that apply to the principal, its own and its groups'.
	Grants []Grant `json:"grants"`
	// Owned lists the repositories the principal has reserved.
	Owned  []string `json:"owned"`
	Scopes []Scope  `json:"scopes"`
}

// Client describes where the request came from.
type Client struct {
	IP        string `json:"ip"`
	ID        string `json:"id,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// Principal is who asks. Anonymous principals have no account, groups, roles or key.
type Principal struct {
	Account   string   `json:"account,omitempty"`
	Anonymous bool     `json:"anonymous"`
	Groups    []string `json:"groups"`
	Roles     []string `json:"roles"`
	Key       *Key     `json:"key,omitempty"`
}

// Key is the API key (or the key behind a refresh token) the principal authenticated with.
type Key struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Expires is when the key stops working (RFC 3339, UTC), absent when it does not expire.
	Expires      string        `json:"expires,omitempty"`
	Restrictions *Restrictions `json:"restrictions,omitempty"`
}

// Restrictions are a key's limits; a field is present only when it restricts something.
type Restrictions struct {
	Actions      []string `json:"actions,omitempty"`
	Repositories []string `json:"repositories,omitempty"`
	CIDRs        []string `json:"cidrs,omitempty"`
}

// Grant is one ACL row that applies to the principal.
type Grant struct {
	// Subject is "account:NAME" or "group:NAME": why the row applies.
	Subject    string   `json:"subject"`
	Repository string   `json:"repository"`
	Actions    []string `json:"actions"`
	// Expires is when the row stops applying (RFC 3339, UTC), absent when it does not end. The
	// server never passes a row that has ended; a policy may still reason about the end (for
	// example, refuse push through a row that ends), and the end is part of what a cached
	// decision is keyed on.
	Expires string `json:"expires,omitempty"`
}

// Scope is one requested resource and the actions asked for on it.
type Scope struct {
	Type    string   `json:"type"`
	Class   string   `json:"class,omitempty"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Decision is what the policy allowed. Access lists, per requested scope, the actions allowed;
// a scope the policy does not mention is denied. The server intersects Access with the request
// again, so no policy can grant what was not asked for. The decision's reasons are not read for
// a token: decision logs record them, and explanations show them.
type Decision struct {
	ID     string
	Access []Scope
	// Defined is false when the policy produced no decision or one of the wrong shape: a deny.
	Defined bool
}

// Allowed returns the actions the decision allows on (typ, name).
func (d Decision) Allowed(typ, name string) []string {
	var out []string
	for _, s := range d.Access {
		if s.Type == typ && s.Name == name {
			out = append(out, s.Actions...)
		}
	}
	return out
}

// AdminInput is the document an admin API call is authorized on.
type AdminInput struct {
	Principal Principal `json:"principal"`
	// Client is where the call comes from (the address as the token endpoint reads it).
	Client Client `json:"client"`
	// Operation names the call, e.g. "grants.add" or "keys.create".
	Operation string `json:"operation"`
	// Target is what the call acts on; only the fields the operation has are set.
	Target AdminTarget `json:"target"`
	Owned  []string    `json:"owned"`
}

// AdminTarget is the object of an admin operation.
type AdminTarget struct {
	Account    string `json:"account,omitempty"`
	Group      string `json:"group,omitempty"`
	Repository string `json:"repository,omitempty"`
	// Actions are the actions a grant operation adds or removes: for a removal, the actions it
	// actually removes (the row's, when the caller names none; empty when there is no row).
	// Absent for other operations.
	Actions []string `json:"actions,omitzero"`
	KeyID   string   `json:"key_id,omitempty"`
	// Owner is the account that owns Repository, when it is owned.
	Owner string `json:"owner,omitempty"`
	// Expires is, for grants.add, the end of the grant being added, and for keys.create the
	// expiry of the key being created, after the caller key's ceilings are applied (RFC 3339,
	// UTC); absent when it does not end.
	Expires string `json:"expires,omitempty"`
	// Restrictions are, for keys.create, those of the key being created, after the caller key's
	// ceilings are applied.
	Restrictions *Restrictions `json:"restrictions,omitempty"`
}

// AdminDecision is whether an admin operation may proceed.
type AdminDecision struct {
	ID      string
	Allow   bool
	Reasons []string
	// MaxOwned, when > 0, is the most reservations the target account may hold once a
	// repos.reserve is done ("max_owned" in the decision); the store checks it in the write.
	MaxOwned int
}
