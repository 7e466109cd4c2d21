package admin

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// AccountRequest creates an account.
type AccountRequest struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups,omitempty"`
	Roles  []string `json:"roles,omitempty"`
}

// AccountUpdate changes an account; absent fields stay as they are.
type AccountUpdate struct {
	Groups   *[]string `json:"groups,omitempty"`
	Roles    *[]string `json:"roles,omitempty"`
	Disabled *bool     `json:"disabled,omitempty"`
}

// KeyRequest creates an API key.
type KeyRequest struct {
	Account string `json:"account"`
	Name    string `json:"name,omitempty"`
	// ExpiresIn is a duration such as "720h" or "30d"; empty means the key does not expire.
	ExpiresIn    string                `json:"expires_in,omitempty"`
	Restrictions keystore.Restrictions `json:"restrictions,omitzero"`
}

// KeyCreated is the only response that ever carries a key's secret.
type KeyCreated struct {
	Secret string `json:"key"`
	keystore.Key
}

// GrantRequest adds or removes a grant. Exactly one of Account and Group is set. On removal,
// empty Actions removes the whole row.
type GrantRequest struct {
	Account    string   `json:"account,omitempty"`
	Group      string   `json:"group,omitempty"`
	Repository string   `json:"repository"`
	Actions    []string `json:"actions,omitempty"`
	// ExpiresIn ("720h", "30d") or Expires (an instant) end the grant being added; the row then
	// gives nothing from that instant on. Without either the grant does not end.
	ExpiresIn string    `json:"expires_in,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
}

// Subject returns the grant subject the request names.
func (g GrantRequest) Subject() (keystore.Subject, error) {
	switch {
	case g.Account != "" && g.Group != "":
		return keystore.Subject{}, fmt.Errorf("%w: give an account or a group, not both", keystore.ErrInvalid)
	case g.Account != "":
		return keystore.Subject{Kind: keystore.SubjectAccount, Name: g.Account}, nil
	case g.Group != "":
		return keystore.Subject{Kind: keystore.SubjectGroup, Name: g.Group}, nil
	}
	return keystore.Subject{}, fmt.Errorf("%w: an account or a group is required", keystore.ErrInvalid)
}

// RepositoryRequest reserves a repository name for an owner (the caller when empty).
type RepositoryRequest struct {
	Repository string `json:"repository"`
	Owner      string `json:"owner,omitempty"`
}

// Whoami describes the caller.
type Whoami struct {
	Account keystore.Account `json:"account"`
	Key     keystore.Key     `json:"key"`
}

// MaxLifetime is the longest lifetime a key or a grant is given, in days or in hours alike. The
// end it gives must still be no later than keystore.LatestInstant.
const MaxLifetime = 36500 * 24 * time.Hour

// ParseDuration reads a Go duration, also accepting whole days ("30d"), up to MaxLifetime.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > int(MaxLifetime/(24*time.Hour)) {
			return 0, fmt.Errorf("%w: duration %q: days must be a whole number from 1 to 36500", keystore.ErrInvalid, s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: duration %q: use e.g. 720h or 30d", keystore.ErrInvalid, s)
	}
	if d > MaxLifetime {
		return 0, fmt.Errorf("%w: duration %q: at most 876000h (36500d)", keystore.ErrInvalid, s)
	}
	return d, nil
}

func joinReasons(reasons []string) string { return strings.Join(reasons, "; ") }
