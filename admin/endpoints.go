package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

func (a *API) whoami(_ context.Context, c *call) (int, any, error) {
	return http.StatusOK, Whoami{Account: c.principal.Account, Key: c.principal.Key.Redacted()}, nil
}

func (a *API) listAccounts(ctx context.Context, c *call) (int, any, error) {
	return listing(ctx, a, c, "accounts.list", policy.AdminTarget{}, func() ([]keystore.Account, error) {
		return a.store.ListAccounts(ctx)
	})
}

func (a *API) createAccount(ctx context.Context, c *call) (int, any, error) {
	var req AccountRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	acct := keystore.Account{Name: req.Name, Groups: req.Groups, Roles: req.Roles, Created: a.opts.Now().UTC()}
	if err := acct.Validate(); err != nil {
		return 0, nil, err
	}
	if err := a.authorize(ctx, c, "accounts.create", policy.AdminTarget{Account: req.Name}); err != nil {
		return 0, nil, err
	}
	if err := a.store.CreateAccount(ctx, acct); err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, acct, nil
}

func (a *API) getAccount(ctx context.Context, c *call) (int, any, error) {
	name := mux.Vars(c.r)["name"]
	if err := a.authorize(ctx, c, "accounts.get", policy.AdminTarget{Account: name}); err != nil {
		return 0, nil, err
	}
	acct, err := a.store.GetAccount(ctx, name)
	return http.StatusOK, acct, err
}

func (a *API) updateAccount(ctx context.Context, c *call) (int, any, error) {
	name := mux.Vars(c.r)["name"]
	var req AccountUpdate
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	if err := a.authorize(ctx, c, "accounts.update", policy.AdminTarget{Account: name}); err != nil {
		return 0, nil, err
	}
	acct, err := a.store.GetAccount(ctx, name)
	if err != nil {
		return 0, nil, err
	}
	if req.Groups != nil {
		acct.Groups = *req.Groups
	}
	if req.Roles != nil {
		acct.Roles = *req.Roles
	}
	if req.Disabled != nil {
		acct.Disabled = *req.Disabled
	}
	if err := a.store.UpdateAccount(ctx, acct); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, acct, nil
}

func (a *API) listKeys(ctx context.Context, c *call) (int, any, error) {
	account := c.r.URL.Query().Get("account")
	return listing(ctx, a, c, "keys.list", policy.AdminTarget{Account: account}, func() ([]keystore.Key, error) {
		return a.store.ListKeys(ctx, account)
	})
}

func (a *API) createKey(ctx context.Context, c *call) (int, any, error) {
	var req KeyRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	if req.Account == "" {
		req.Account = c.principal.Account.Name
	}
	now := a.opts.Now().UTC().Truncate(1e9)
	k := keystore.Key{Account: req.Account, Name: req.Name, Created: now, Restrictions: req.Restrictions}
	if req.ExpiresIn != "" {
		d, err := ParseDuration(req.ExpiresIn)
		if err != nil {
			return 0, nil, err
		}
		k.Expires = now.Add(d)
	}
	if err := errors.Join(keystore.ValidateName("account", k.Account), keystore.ValidateKeyName(k.Name), k.Restrictions.Validate()); err != nil {
		return 0, nil, err
	}
	if err := a.authorize(ctx, c, "keys.create", policy.AdminTarget{Account: req.Account}); err != nil {
		return 0, nil, err
	}
	plain, id, hash, err := keystore.NewAPIKey(a.opts.Random)
	if err != nil {
		return 0, nil, err
	}
	k.ID, k.Hash = id, hash
	if err := a.store.CreateKey(ctx, k); err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, KeyCreated{Secret: plain, Key: k.Redacted()}, nil
}

func (a *API) revokeKey(ctx context.Context, c *call) (int, any, error) {
	id := mux.Vars(c.r)["id"]
	target := policy.AdminTarget{KeyID: id}
	k, err := a.store.GetKey(ctx, id)
	switch {
	case err == nil:
		target.Account = k.Account
	case !errors.Is(err, keystore.ErrNotFound):
		return 0, nil, err
	}
	// Authorize before saying whether the key exists, so ids cannot be probed.
	if err := a.authorize(ctx, c, "keys.revoke", target); err != nil {
		return 0, nil, err
	}
	if err != nil {
		return 0, nil, err
	}
	if err := a.store.RevokeKey(ctx, id); err != nil {
		return 0, nil, err
	}
	k.Revoked = true
	return http.StatusOK, k.Redacted(), nil
}

// ownerOf returns the account that owns repository, or "" when nobody does.
func (a *API) ownerOf(ctx context.Context, repository string) (string, error) {
	if repository == "" {
		return "", nil
	}
	o, err := a.store.GetOwnership(ctx, repository)
	if errors.Is(err, keystore.ErrNotFound) {
		return "", nil
	}
	return o.Owner, err
}

func (a *API) grantTarget(ctx context.Context, req GrantRequest) (keystore.Subject, policy.AdminTarget, error) {
	subject, err := req.Subject()
	if err != nil {
		return subject, policy.AdminTarget{}, err
	}
	target := policy.AdminTarget{Account: req.Account, Group: req.Group, Repository: req.Repository, Actions: req.Actions}
	target.Owner, err = a.ownerOf(ctx, req.Repository)
	return subject, target, err
}

func (a *API) listGrants(ctx context.Context, c *call) (int, any, error) {
	q := c.r.URL.Query()
	req := GrantRequest{Account: q.Get("account"), Group: q.Get("group"), Repository: q.Get("repository")}
	f := keystore.GrantFilter{Repository: req.Repository}
	target := policy.AdminTarget{Account: req.Account, Group: req.Group, Repository: req.Repository}
	if req.Account != "" || req.Group != "" {
		subject, err := req.Subject()
		if err != nil {
			return 0, nil, err
		}
		f.Subject = &subject
	}
	var err error
	if target.Owner, err = a.ownerOf(ctx, req.Repository); err != nil {
		return 0, nil, err
	}
	return listing(ctx, a, c, "grants.list", target, func() ([]keystore.Grant, error) {
		return a.store.ListGrants(ctx, f)
	})
}

func (a *API) addGrant(ctx context.Context, c *call) (int, any, error) {
	var req GrantRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	subject, target, err := a.grantTarget(ctx, req)
	if err != nil {
		return 0, nil, err
	}
	g := keystore.Grant{Subject: subject, Repository: req.Repository, Actions: req.Actions}
	if err := g.Validate(); err != nil {
		return 0, nil, err
	}
	if err := a.authorize(ctx, c, "grants.add", target); err != nil {
		return 0, nil, err
	}
	if subject.Kind == keystore.SubjectAccount {
		// A grant to an account that does not exist is almost always a typo.
		if _, err := a.store.GetAccount(ctx, subject.Name); err != nil {
			return 0, nil, err
		}
	}
	if err := a.store.PutGrant(ctx, g); err != nil {
		return 0, nil, err
	}
	rows, err := a.store.ListGrants(ctx, keystore.GrantFilter{Subject: &subject, Repository: g.Repository})
	if err != nil || len(rows) != 1 {
		return http.StatusOK, g, err
	}
	return http.StatusOK, rows[0], nil
}

func (a *API) removeGrant(ctx context.Context, c *call) (int, any, error) {
	var req GrantRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	subject, target, err := a.grantTarget(ctx, req)
	if err != nil {
		return 0, nil, err
	}
	if err := errors.Join(keystore.ValidateSubject(subject), keystore.ValidatePattern(req.Repository)); err != nil {
		return 0, nil, err
	}
	if len(req.Actions) > 0 {
		if err := keystore.ValidateActions(req.Actions); err != nil {
			return 0, nil, err
		}
	}
	if err := a.authorize(ctx, c, "grants.remove", target); err != nil {
		return 0, nil, err
	}
	if err := a.store.RemoveGrant(ctx, subject, req.Repository, req.Actions); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]string{"removed": subject.String() + " " + req.Repository}, nil
}

func (a *API) listRepos(ctx context.Context, c *call) (int, any, error) {
	owner := c.r.URL.Query().Get("owner")
	return listing(ctx, a, c, "repos.list", policy.AdminTarget{Account: owner, Owner: owner}, func() ([]keystore.Ownership, error) {
		return a.store.ListOwnership(ctx, owner)
	})
}

func (a *API) reserveRepo(ctx context.Context, c *call) (int, any, error) {
	var req RepositoryRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	if req.Owner == "" {
		req.Owner = c.principal.Account.Name
	}
	if err := errors.Join(keystore.ValidatePattern(req.Repository), keystore.ValidateName("account", req.Owner)); err != nil {
		return 0, nil, err
	}
	if err := a.authorize(ctx, c, "repos.reserve", policy.AdminTarget{Account: req.Owner, Repository: req.Repository}); err != nil {
		return 0, nil, err
	}
	o := keystore.Ownership{Repository: req.Repository, Owner: req.Owner, Created: a.opts.Now().UTC().Truncate(1e9)}
	if err := a.store.Reserve(ctx, o); err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, o, nil
}

func (a *API) releaseRepo(ctx context.Context, c *call) (int, any, error) {
	name := mux.Vars(c.r)["name"]
	owner, err := a.ownerOf(ctx, name)
	if err != nil {
		return 0, nil, err
	}
	if err := a.authorize(ctx, c, "repos.release", policy.AdminTarget{Repository: name, Owner: owner}); err != nil {
		return 0, nil, err
	}
	if owner == "" {
		return 0, nil, fmt.Errorf("repository %q: %w", name, keystore.ErrNotFound)
	}
	if err := a.store.Release(ctx, name); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]string{"released": name}, nil
}

// listing is every list endpoint once its target is known: authorize the operation on the
// target, then list; an empty list is [] in JSON, never null.
func listing[T any](ctx context.Context, a *API, c *call, operation string, target policy.AdminTarget, list func() ([]T, error)) (int, any, error) {
	if err := a.authorize(ctx, c, operation, target); err != nil {
		return 0, nil, err
	}
	out, err := list()
	if out == nil {
		out = []T{}
	}
	return http.StatusOK, out, err
}
