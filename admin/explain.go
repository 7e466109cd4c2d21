package admin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/regoauth/regoauth/authz/input"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// Explainer explains token decisions on the active policy; policy.Engine is one.
type Explainer interface {
	Explain(ctx context.Context, in *policy.Input) (policy.Explanation, error)
}

// ExplainRequest asks why a token request of Account gets what it gets.
type ExplainRequest struct {
	Account string `json:"account"`
	// KeyID, when set, explains a request made with that key (its restrictions apply). Without
	// it the request is explained as one made with an unrestricted key. Naming a key other than
	// the caller's own takes "keys.list" on the account.
	KeyID string `json:"key_id,omitempty"`
	// Scopes are token request scope values, e.g. "repository:app:push,pull".
	Scopes  []string `json:"scopes"`
	Service string   `json:"service,omitempty"`
	// ClientIP is the address the request comes from; needed when the key is limited to
	// networks.
	ClientIP string `json:"client_ip,omitempty"`
}

// Explain builds the policy input a token request of the account would have, from the store as
// the token path does, and returns the policy's explanation. Who may ask is policy
// ("policy.explain"): by default admins for anyone, every account for itself, and the owner of
// a repository for anyone's request of that one repository. The target carries the repository
// (and its owner) when the request names exactly one.
func (a *API) Explain(ctx context.Context, c *Caller, req ExplainRequest) (policy.Explanation, error) {
	if a.explainer == nil {
		return policy.Explanation{}, fmt.Errorf("%w: this server does not explain decisions", keystore.ErrNotFound)
	}
	if err := keystore.ValidateName("account", req.Account); err != nil {
		return policy.Explanation{}, err
	}
	scopes, err := input.ParseScopes(req.Scopes, input.DefaultMaxScopes, input.DefaultMaxScopeLength)
	if err != nil {
		return policy.Explanation{}, fmt.Errorf("%w: %v", keystore.ErrInvalid, err)
	}
	if req.ClientIP != "" {
		if _, err := netip.ParseAddr(req.ClientIP); err != nil {
			return policy.Explanation{}, fmt.Errorf("%w: client_ip: %v", keystore.ErrInvalid, err)
		}
	}
	target := policy.AdminTarget{Account: req.Account}
	if repo, ok := onlyRepository(scopes); ok {
		target.Repository = repo
		if target.Owner, err = a.ownerOf(ctx, repo); err != nil {
			return policy.Explanation{}, err
		}
	}
	if err := a.authorize(ctx, c, "policy.explain", target); err != nil {
		return policy.Explanation{}, err
	}
	if req.KeyID != "" && req.KeyID != c.Principal.Key.ID {
		// An explanation with a key tells what the key may do, and whether it exists, is the
		// account's, is revoked or is limited to networks: naming one takes what listing the
		// account's keys takes, asked before the key is looked up. An owner asking about its
		// buyer names none.
		if err := a.authorize(ctx, c, "keys.list", policy.AdminTarget{Account: req.Account}); err != nil {
			return policy.Explanation{}, err
		}
	}
	in, err := a.explainInput(ctx, req, scopes)
	if err != nil {
		return policy.Explanation{}, err
	}
	if req.Account != c.Principal.Account.Name || len(c.Principal.Key.Restrictions.Repositories) > 0 {
		// Whoever asks about another account, or with a key limited to repositories, learns
		// which of the requested repositories it owns, not the rest of its reservations.
		in.Owned = slices.DeleteFunc(in.Owned, func(r string) bool { return !requested(r, scopes) })
	}
	select {
	case a.explaining <- struct{}{}:
		defer func() { <-a.explaining }()
	default:
		return policy.Explanation{}, ErrBusy
	}
	x, err := a.explainer.Explain(ctx, in)
	if err != nil {
		return policy.Explanation{}, fmt.Errorf("%w: %w", keystore.ErrUnavailable, err)
	}
	// Whoever may not read the account (an owner asking about its buyer, or the account's own
	// key limited to repositories) learns the verdicts on what was asked, and the rules that
	// decided each when they tell nothing of who the account is, not the account: its groups,
	// roles and key, its rows on other names, every rule that fired on them, and a verdict's rule
	// or reason that reads them ("admin", a group's grant, a deny rule for a group) would tell
	// what accounts.get refuses it.
	ok, err := a.Permits(ctx, c, "accounts.get", policy.AdminTarget{Account: req.Account})
	if err != nil {
		return policy.Explanation{}, err
	}
	if !ok {
		x = withoutAccount(x)
	}
	// The arguments of the rules that fired may be the policy's data (the configuration's deny
	// rules, with the accounts and groups they except; extension data): they are for those who
	// run the policy, who read its status.
	operator, err := a.Permits(ctx, c, "status.read", policy.AdminTarget{})
	if err != nil {
		return policy.Explanation{}, err
	}
	if !operator {
		x = x.WithoutPolicyData()
	}
	return x, nil
}

// withoutAccount is an explanation without what it tells of the account beyond the verdicts, the
// rules that decided them when those read nothing of who it is, and the account's own grants on
// the names asked about.
func withoutAccount(x policy.Explanation) policy.Explanation {
	x = x.WithoutRulesAboutAccount()
	in := *x.Input
	// Of the grants, those to the account itself on a requested name: a row of one of its
	// groups names the group, and a pattern the owner did not grant.
	in.Grants = slices.DeleteFunc(slices.Clone(in.Grants), func(g policy.Grant) bool {
		return g.Subject != "account:"+in.Principal.Account || !requested(g.Repository, in.Scopes)
	})
	in.Principal.Groups, in.Principal.Roles = nil, nil
	if k := in.Principal.Key; k != nil {
		in.Principal.Key = &policy.Key{ID: k.ID}
	}
	x.Input = &in
	x.AccountWithheld = true
	return x
}

// onlyRepository returns the repository when every scope names the same one.
func onlyRepository(scopes []policy.Scope) (string, bool) {
	name := ""
	for _, s := range scopes {
		if s.Type != "repository" || name != "" && s.Name != name {
			return "", false
		}
		name = s.Name
	}
	return name, name != ""
}

func requested(repo string, scopes []policy.Scope) bool {
	return slices.ContainsFunc(scopes, func(s policy.Scope) bool { return s.Type == "repository" && s.Name == repo })
}

// explainInput is the policy input of a token request by req.Account for scopes: the same
// fields, from the same records, as the token path fills.
func (a *API) explainInput(ctx context.Context, req ExplainRequest, scopes []policy.Scope) (*policy.Input, error) {
	var p keystore.Principal
	if req.KeyID != "" {
		// Another account's key reads as one that does not exist, and is looked up no further
		// (its account's records neither): key ids cannot be probed, nor matched to accounts.
		k, err := a.store.GetKey(ctx, req.KeyID)
		if errors.Is(err, keystore.ErrNotFound) || err == nil && k.Account != req.Account {
			return nil, fmt.Errorf("%w: account %s has no key %s", keystore.ErrNotFound, req.Account, req.KeyID)
		}
		if err != nil {
			return nil, err
		}
		if p, err = a.store.LoadPrincipal(ctx, req.KeyID); err != nil {
			return nil, err
		}
		if p.Account.Name != req.Account {
			return nil, fmt.Errorf("%w: account %s has no key %s", keystore.ErrNotFound, req.Account, req.KeyID)
		}
		if p.Key.Revoked || p.Key.Expired(a.opts.Now()) {
			return nil, fmt.Errorf("%w: key %s is revoked or expired: its requests are refused before the policy", keystore.ErrInvalid, req.KeyID)
		}
		if len(p.Key.Restrictions.CIDRs) > 0 && req.ClientIP == "" {
			return nil, fmt.Errorf("%w: key %s is limited to networks: give the client address", keystore.ErrInvalid, req.KeyID)
		}
	} else {
		acct, err := a.store.GetAccount(ctx, req.Account)
		if err != nil {
			return nil, err
		}
		p.Account = acct
		subjects := []keystore.Subject{{Kind: keystore.SubjectAccount, Name: acct.Name}}
		for _, g := range acct.Groups {
			subjects = append(subjects, keystore.Subject{Kind: keystore.SubjectGroup, Name: g})
		}
		now := a.opts.Now()
		for _, s := range subjects {
			grants, err := a.store.ListGrants(ctx, keystore.GrantFilter{Subject: &s})
			if err != nil {
				return nil, err
			}
			// As the token path: a grant that has ended is not in the input.
			p.Grants = append(p.Grants, keystore.LiveGrants(grants, now)...)
		}
		owned, err := a.store.ListOwnership(ctx, acct.Name)
		if err != nil {
			return nil, err
		}
		for _, o := range owned {
			p.Owned = append(p.Owned, o.Repository)
		}
	}
	if p.Account.Disabled {
		return nil, fmt.Errorf("%w: account %s is disabled: its requests are refused before the policy", keystore.ErrInvalid, req.Account)
	}
	in := input.Token(req.Service, policy.Client{IP: req.ClientIP}, &p, scopes)
	if req.KeyID == "" {
		in.Principal.Key = nil
	}
	return in, nil
}

// Explain asks the server why a token request would get what it gets.
func (c *Client) Explain(ctx context.Context, req ExplainRequest) (x policy.Explanation, err error) {
	return x, c.do(ctx, "POST", "/policy/explain", nil, req, &x)
}
