// Package keystore owns the records behind authentication and the ACL: accounts, API keys,
// grants and repository ownership. It defines the Store every backend implements (bolt for a
// single node, Redis for replicas, memory for tests) with the operations on many records that
// bulk work needs, the rules that keep records valid whatever the backend, authentication of
// API keys, export and import, and the principal cache the backends share. It knows nothing
// about policy (it stores what the policy reads) and nothing about its backends.
package keystore

import (
	"context"
	"errors"
	"slices"
	"time"
)

// Sentinel errors. Backends wrap them with %w; callers test them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
	// ErrUnavailable means the backend could not be reached; callers fail closed.
	ErrUnavailable = errors.New("store unavailable")
)

// Account is a principal that API keys belong to.
type Account struct {
	Name     string    `json:"name"`
	Groups   []string  `json:"groups,omitempty"`
	Roles    []string  `json:"roles,omitempty"`
	Disabled bool      `json:"disabled,omitempty"`
	Created  time.Time `json:"created"`
}

// HasRole reports whether the account holds role.
func (a Account) HasRole(role string) bool { return slices.Contains(a.Roles, role) }

// Restrictions narrow what a key may do below what its account holds. The policy enforces them.
type Restrictions struct {
	// Actions is a ceiling: when set, only these actions may ever be granted through the key.
	Actions []string `json:"actions,omitempty"`
	// Repositories limits the key to repositories matching one of these patterns.
	Repositories []string `json:"repositories,omitempty"`
	// CIDRs limits the client addresses the key may be used from.
	CIDRs []string `json:"cidrs,omitempty"`
}

// IsZero reports whether no restriction is set.
func (r Restrictions) IsZero() bool {
	return len(r.Actions) == 0 && len(r.Repositories) == 0 && len(r.CIDRs) == 0
}

// Key is an API key record. The secret itself is never stored, only its hash.
type Key struct {
	ID           string       `json:"id"`
	Account      string       `json:"account"`
	Name         string       `json:"name,omitempty"`
	Hash         []byte       `json:"hash,omitempty"`
	Created      time.Time    `json:"created"`
	Expires      time.Time    `json:"expires,omitzero"`
	LastUsed     time.Time    `json:"last_used,omitzero"`
	Revoked      bool         `json:"revoked,omitempty"`
	Restrictions Restrictions `json:"restrictions,omitzero"`
}

// Expired reports whether the key has an expiry at or before now.
func (k Key) Expired(now time.Time) bool { return !k.Expires.IsZero() && !now.Before(k.Expires) }

// Redacted returns a copy without the hash, safe to list or log.
func (k Key) Redacted() Key {
	k.Hash = nil
	return k
}

// SubjectKind says whether a grant applies to one account or to every member of a group.
type SubjectKind string

const (
	SubjectAccount SubjectKind = "account"
	SubjectGroup   SubjectKind = "group"
)

// Subject is who a grant applies to.
type Subject struct {
	Kind SubjectKind `json:"kind"`
	Name string      `json:"name"`
}

func (s Subject) String() string { return string(s.Kind) + ":" + s.Name }

// Grant gives a subject actions on repositories matching a pattern: an exact name or an
// anchored glob ("acme/*" matches one path segment, "acme/**" any depth).
type Grant struct {
	Subject    Subject  `json:"subject"`
	Repository string   `json:"repository"`
	Actions    []string `json:"actions"`
}

// Ownership records that an account reserved a repository name.
type Ownership struct {
	Repository string    `json:"repository"`
	Owner      string    `json:"owner"`
	Created    time.Time `json:"created"`
}

// Principal is everything the token path needs about one API key, loaded in one operation:
// the key, its account, every grant that applies to the account directly or via its groups,
// and the repositories the account owns.
type Principal struct {
	Key     Key
	Account Account
	Grants  []Grant
	Owned   []string
}

// GrantFilter selects grants in List. Empty fields match everything.
type GrantFilter struct {
	Subject    *Subject
	Repository string
}

// Store is implemented by every backend and proven by keystore/storetest: the records one at a
// time, and the few operations on many records at once that bulk work and readiness need.
type Store interface {
	// LoadPrincipal loads the key keyID, its account, the account's grants (own and via
	// groups) and its owned repositories in one operation. It returns ErrNotFound if the key or its account is missing.
	LoadPrincipal(ctx context.Context, keyID string) (Principal, error)

	CreateAccount(ctx context.Context, a Account) error
	GetAccount(ctx context.Context, name string) (Account, error)
	ListAccounts(ctx context.Context) ([]Account, error)
	// UpdateAccount replaces groups, roles and the disabled flag of an existing account.
	UpdateAccount(ctx context.Context, a Account) error

	// CreateKey stores a new key; its account must exist.
	CreateKey(ctx context.Context, k Key) error
	GetKey(ctx context.Context, id string) (Key, error)
	// ListKeys lists keys, all of them when account is empty, without their hashes.
	ListKeys(ctx context.Context, account string) ([]Key, error)
	RevokeKey(ctx context.Context, id string) error
	// TouchKeys records last-used times; it is called in batches off the request path.
	TouchKeys(ctx context.Context, used map[string]time.Time) error

	// PutGrant adds the grant's actions to the row for (subject, repository), creating it.
	PutGrant(ctx context.Context, g Grant) error
	// RemoveGrant removes the listed actions from the row, or the whole row when actions is
	// empty. It returns ErrNotFound when there is no such row.
	RemoveGrant(ctx context.Context, subject Subject, repository string, actions []string) error
	ListGrants(ctx context.Context, f GrantFilter) ([]Grant, error)

	// Reserve records ownership of a repository name; ErrExists if it is already owned.
	Reserve(ctx context.Context, o Ownership) error
	GetOwnership(ctx context.Context, repository string) (Ownership, error)
	ListOwnership(ctx context.Context, owner string) ([]Ownership, error)
	Release(ctx context.Context, repository string) error

	// GetKeys reads many keys, hashes included, in one operation, in the order of ids; ids
	// that do not exist are left out. Export reads a store with it.
	GetKeys(ctx context.Context, ids []string) ([]Key, error)
	// WriteBatch writes many records (accounts, keys, grants, ownerships) in one operation.
	// Each record is checked and written as its single write would be (CreateAccount,
	// CreateKey, PutGrant, Reserve), in order, so an account may precede its keys. A batch
	// holding an invalid record writes nothing and fails with ErrInvalid; otherwise every
	// record is attempted and the first failure is returned. Import loads a store with it.
	WriteBatch(ctx context.Context, recs []Record) error

	// Ping reports whether the backend answers: ErrUnavailable when it cannot be reached.
	// Readiness and --check-config ask it.
	Ping(ctx context.Context) error
	Close() error
}

// MergeActions returns the sorted union of two action lists.
func MergeActions(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// SubtractActions returns the sorted actions of a that are not in b.
func SubtractActions(a, b []string) []string {
	out := make([]string, 0, len(a))
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
