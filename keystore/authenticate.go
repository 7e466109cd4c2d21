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
// authenticates. Grants that have ended by now are dropped, whatever the store returned.
// Errors are ErrBadCredentials, or the store's own errors.
func Authenticate(ctx context.Context, s PrincipalLoader, username, apiKey string, now time.Time) (Principal, error) {
	id, ok := ParseAPIKey(apiKey)
	if !ok {
		return Principal{}, fmt.Errorf("%w: the password is not an API key", ErrBadCredentials)
	}
	p, err := load(ctx, s, id)
	if err != nil {
		return Principal{}, err
	}
	if !p.Key.Matches(apiKey) {
		return Principal{}, fmt.Errorf("%w: key %s: wrong secret", ErrBadCredentials, id)
	}
	if err := check(p, username, now); err != nil {
		return Principal{}, err
	}
	p.Grants = LiveGrants(p.Grants, now)
	return p, nil
}

// AuthenticateKey re-checks a key already proven by other means (a refresh token obtained with
// it): the key must still exist, belong to account, and be neither revoked nor expired, and the
// account must not be disabled.
func AuthenticateKey(ctx context.Context, s PrincipalLoader, keyID, account string, now time.Time) (Principal, error) {
	p, err := load(ctx, s, keyID)
	if err != nil {
		return Principal{}, err
	}
	if err := check(p, account, now); err != nil {
		return Principal{}, err
	}
	p.Grants = LiveGrants(p.Grants, now)
	return p, nil
}

func load(ctx context.Context, s PrincipalLoader, id string) (Principal, error) {
	p, err := s.LoadPrincipal(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Principal{}, fmt.Errorf("%w: key %s not found", ErrBadCredentials, id)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("loading key %s: %w", id, err)
	}
	return p, nil
}

func check(p Principal, username string, now time.Time) error {
	switch {
	case p.Key.Account != p.Account.Name, username != "" && username != p.Account.Name:
		return fmt.Errorf("%w: key %s belongs to another account", ErrBadCredentials, p.Key.ID)
	case p.Key.Revoked:
		return fmt.Errorf("%w: key %s is revoked", ErrBadCredentials, p.Key.ID)
	case p.Key.Expired(now):
		return fmt.Errorf("%w: key %s expired", ErrBadCredentials, p.Key.ID)
	case p.Account.Disabled:
		return fmt.Errorf("%w: account %s is disabled", ErrBadCredentials, p.Account.Name)
	case p.Key.Restrictions.withinLimits() != nil:
		// Stored before the limits existed: every decision about it would cost the server
		// what the limits are there to prevent. A new key with fewer restrictions works.
		return fmt.Errorf("%w: key %s has more restrictions than a key may hold (%d repository patterns, %d networks)", ErrBadCredentials, p.Key.ID, MaxKeyRepositories, MaxKeyCIDRs)
	}
	return nil
}
