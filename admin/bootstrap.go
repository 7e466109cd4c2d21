package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// AdminRole is the role the built-in policy lets manage everything.
const AdminRole = "admin"

// ErrNotAdmin is an account that EnsureAdmin finds without the admin role.
var ErrNotAdmin = errors.New("exists without the admin role")

// EnsureAdmin makes sure account exists with the admin role, and returns an API key for it:
// keep, when keep still authenticates as account, or else a new key named keyName. It is the
// way in on a fresh store (`regoauth bootstrap`, `regoauth dev`), so it works on the store
// directly, not through the API. An existing account without the admin role is an error: a
// key for it would not manage anything.
func EnsureAdmin(ctx context.Context, s Store, account, keyName, keep string, now time.Time, random io.Reader) (key string, err error) {
	if err := keystore.ValidateName("account", account); err != nil {
		return "", err
	}
	now = now.UTC().Truncate(time.Second)
	err = s.CreateAccount(ctx, keystore.Account{Name: account, Roles: []string{AdminRole}, Created: now})
	if errors.Is(err, keystore.ErrExists) {
		a, getErr := s.GetAccount(ctx, account)
		if getErr != nil {
			return "", getErr
		}
		if !a.HasRole(AdminRole) {
			return "", fmt.Errorf("account %q %w", account, ErrNotAdmin)
		}
	} else if err != nil {
		return "", err
	}
	if keep = strings.TrimSpace(keep); keep != "" {
		if _, err := keystore.Authenticate(ctx, s, account, keep, now); err == nil {
			return keep, nil
		}
	}
	plain, id, hash, err := keystore.NewAPIKey(random)
	if err != nil {
		return "", err
	}
	if err := s.CreateKey(ctx, keystore.Key{ID: id, Account: account, Name: keyName, Hash: hash, Created: now}); err != nil {
		return "", err
	}
	return plain, nil
}
