package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"

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
	// it the request is explained as one made with an unrestricted key.
	KeyID string `json:"key_id,omitempty"`
	// Scopes are token request scope values, e.g. "repository:app:push,pull".
	Scopes  []string `json:"scopes"`
	Service string   `json:"service,omitempty"`
	// ClientIP is the address the request comes from; needed when the key is limited to
	// networks.
	ClientIP string `json:"client_ip,omitempty"`
}

// explainDecision builds the policy input a token request of the account would have, from
// the store as the token path does, and returns the policy's explanation. Who may ask is
// policy ("policy.explain"): admins for anyone, every account for itself.
func (a *API) explainDecision(ctx context.Context, c *call) (int, any, error) {
	if a.explainer == nil {
		return 0, nil, fmt.Errorf("%w: this server does not explain decisions", keystore.ErrNotFound)
	}
	var req ExplainRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	if err := keystore.ValidateName("account", req.Account); err != nil {
		return 0, nil, err
	}
	scopes, err := input.ParseScopes(req.Scopes, input.DefaultMaxScopes, input.DefaultMaxScopeLength)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", keystore.ErrInvalid, err)
	}
	if req.ClientIP != "" {
		if _, err := netip.ParseAddr(req.ClientIP); err != nil {
			return 0, nil, fmt.Errorf("%w: client_ip: %v", keystore.ErrInvalid, err)
		}
	}
	if err := a.authorize(ctx, c, "policy.explain", policy.AdminTarget{Account: req.Account}); err != nil {
		return 0, nil, err
	}
	in, err := a.explainInput(ctx, req, scopes)
	if err != nil {
		return 0, nil, err
	}
	x, err := a.explainer.Explain(ctx, in)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", keystore.ErrUnavailable, err)
	}
	return http.StatusOK, x, nil
}

// explainInput is the policy input of a token request by req.Account for scopes: the same
// fields, from the same records, as the token path fills.
func (a *API) explainInput(ctx context.Context, req ExplainRequest, scopes []policy.Scope) (*policy.Input, error) {
	var p keystore.Principal
	if req.KeyID != "" {
		var err error
		if p, err = a.store.LoadPrincipal(ctx, req.KeyID); err != nil {
			return nil, err
		}
		if p.Account.Name != req.Account {
			return nil, fmt.Errorf("%w: key %s belongs to another account", keystore.ErrInvalid, req.KeyID)
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
		for _, s := range subjects {
			grants, err := a.store.ListGrants(ctx, keystore.GrantFilter{Subject: &s})
			if err != nil {
				return nil, err
			}
			p.Grants = append(p.Grants, grants...)
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
