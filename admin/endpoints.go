package admin

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/regoauth/regoauth/keystore"
)

// The HTTP endpoints decode a request, call the operation of the same name (operations.go) and
// encode its result; every decision is in the operation, which the console calls too.

func (a *API) whoami(ctx context.Context, c *call) (int, any, error) {
	w, err := a.Whoami(ctx, c.caller)
	return http.StatusOK, w, err
}

func (a *API) listAccounts(ctx context.Context, c *call) (int, any, error) {
	list, err := a.ListAccounts(ctx, c.caller)
	return http.StatusOK, nonNilSlice(list), err
}

func (a *API) createAccount(ctx context.Context, c *call) (int, any, error) {
	var req AccountRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	acct, err := a.CreateAccount(ctx, c.caller, req)
	return http.StatusCreated, acct, err
}

func (a *API) getAccount(ctx context.Context, c *call) (int, any, error) {
	acct, err := a.GetAccount(ctx, c.caller, mux.Vars(c.r)["name"])
	return http.StatusOK, acct, err
}

func (a *API) updateAccount(ctx context.Context, c *call) (int, any, error) {
	var req AccountUpdate
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	acct, err := a.UpdateAccount(ctx, c.caller, mux.Vars(c.r)["name"], req)
	return http.StatusOK, acct, err
}

func (a *API) listKeys(ctx context.Context, c *call) (int, any, error) {
	list, err := a.ListKeys(ctx, c.caller, c.r.URL.Query().Get("account"))
	return http.StatusOK, nonNilSlice(list), err
}

func (a *API) createKey(ctx context.Context, c *call) (int, any, error) {
	var req KeyRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	k, err := a.CreateKey(ctx, c.caller, req)
	return http.StatusCreated, k, err
}

func (a *API) revokeKey(ctx context.Context, c *call) (int, any, error) {
	k, err := a.RevokeKey(ctx, c.caller, mux.Vars(c.r)["id"])
	return http.StatusOK, k, err
}

func (a *API) listGrants(ctx context.Context, c *call) (int, any, error) {
	q := c.r.URL.Query()
	list, err := a.ListGrants(ctx, c.caller, GrantRequest{Account: q.Get("account"), Group: q.Get("group"), Repository: q.Get("repository")})
	return http.StatusOK, nonNilSlice(list), err
}

func (a *API) addGrant(ctx context.Context, c *call) (int, any, error) {
	var req GrantRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	g, err := a.AddGrant(ctx, c.caller, req)
	return http.StatusOK, g, err
}

func (a *API) removeGrant(ctx context.Context, c *call) (int, any, error) {
	var req GrantRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	if err := a.RemoveGrant(ctx, c.caller, req); err != nil {
		return 0, nil, err
	}
	subject, _ := req.Subject()
	return http.StatusOK, map[string]string{"removed": subject.String() + " " + req.Repository}, nil
}

func (a *API) listRepos(ctx context.Context, c *call) (int, any, error) {
	list, err := a.ListRepositories(ctx, c.caller, c.r.URL.Query().Get("owner"))
	return http.StatusOK, nonNilSlice(list), err
}

func (a *API) reserveRepo(ctx context.Context, c *call) (int, any, error) {
	var req RepositoryRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	o, err := a.ReserveRepository(ctx, c.caller, req)
	return http.StatusCreated, o, err
}

func (a *API) releaseRepo(ctx context.Context, c *call) (int, any, error) {
	name := mux.Vars(c.r)["name"]
	if err := a.ReleaseRepository(ctx, c.caller, name); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]string{"released": name}, nil
}

func (a *API) explainDecision(ctx context.Context, c *call) (int, any, error) {
	var req ExplainRequest
	if err := decode(c.r, &req); err != nil {
		return 0, nil, err
	}
	x, err := a.Explain(ctx, c.caller, req)
	return http.StatusOK, x, err
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// grantEnd reads the end of a grant being added: a lifetime or an instant, not both, and not in
// the past. Whether a store can keep it is the grant's validation (keystore.ValidateInstant).
func grantEnd(req GrantRequest, now time.Time) (time.Time, error) {
	switch {
	case req.ExpiresIn != "" && !req.Expires.IsZero():
		return time.Time{}, fmt.Errorf("%w: give expires_in or expires, not both", keystore.ErrInvalid)
	case req.ExpiresIn != "":
		d, err := ParseDuration(req.ExpiresIn)
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(d), nil
	case req.Expires.IsZero():
		return time.Time{}, nil
	case !req.Expires.After(now):
		return time.Time{}, fmt.Errorf("%w: expires %s is not in the future", keystore.ErrInvalid, req.Expires.UTC().Format(time.RFC3339))
	}
	return req.Expires.UTC(), nil
}
