package keystore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrBadCredentials is every authentication failure as a client may see it. The wrapped
// reason (unknown key, wrong secret, revoked, ...) is for logs only.
var ErrBadCredentials = errors.New("invalid username or API key")

// PrincipalLoader is the part of a Store that authentication needs.
type PrincipalLoader interface {
	LoadPrincipal(ctx context.Context, keyID string) (Principal, error)
}

// Authenticate checks an API key and returns its principal. When username is not empty the key
// must belong to that account. A revoked or expired key, or a disabled account, never
// authenticates. Errors are ErrBadCredentials, or ErrUnavailable-class errors from the store.
func Authenticate(ctx context.Context, s PrincipalLoader, username, apiKey string, now time.Time) (Principal, error) {
	id, ok := ParseAPIKey(apiKey)
	if !ok {
		return Principal{}, fmt.Errorf("%w: the password is not an API key", ErrBadCredentials)
	}
	p, err := s.LoadPrincipal(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return Principal{}, fmt.Errorf("%w: key %s not found", ErrBadCredentials, id)
	case err != nil:
		return Principal{}, fmt.Errorf("loading key %s: %w", id, err)
	}
	switch {
	case !p.Key.Matches(apiKey):
		return Principal{}, fmt.Errorf("%w: key %s: wrong secret", ErrBadCredentials, id)
	case p.Key.Account != p.Account.Name, username != "" && username != p.Account.Name:
		return Principal{}, fmt.Errorf("%w: key %s belongs to another account", ErrBadCredentials, id)
	case p.Key.Revoked:
		return Principal{}, fmt.Errorf("%w: key %s is revoked", ErrBadCredentials, id)
	case p.Key.Expired(now):
		return Principal{}, fmt.Errorf("%w: key %s expired", ErrBadCredentials, id)
	case p.Account.Disabled:
		return Principal{}, fmt.Errorf("%w: account %s is disabled", ErrBadCredentials, p.Account.Name)
	}
	return p, nil
}
