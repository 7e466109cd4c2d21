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
	"fmt"
	"slices"
	"strings"
	"time"
)

// Sentinel errors. Backends wrap them with %w; callers test them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
	// ErrLimit means a write would exceed a limit the caller set (e.g. reservations per owner).
	ErrLimit = errors.New("limit reached")
	// ErrUnavailable means the backend could not be reached; callers fail closed.
	ErrUnavailable = errors.New("store unavailable")
	// ErrNotWritable means the backend cannot take writes now (its disk is full or read-only)
	// while it still answers reads: tokens keep being issued, changes are refused.
	ErrNotWritable = errors.New("the store cannot take writes")
	// ErrConflict is a write, or an imported record, at odds with what the store holds.
	ErrConflict = errors.New("conflicts with the store")
	// ErrUnconfirmed means a write was made, but fewer replicas of the backend than it was told
	// to wait for confirmed having it in time: should the primary fail now, the write may be
	// lost. The caller should check and repeat it.
	ErrUnconfirmed = errors.New("the write was made but not confirmed by enough replicas")
)

// Account is a principal that API keys belong to.
type Account struct {
	Name     string    `json:"name"`
	Groups   []string  `json:"groups,omitempty"`
	Roles    []string  `json:"roles,omitempty"`
	Disabled bool      `json:"disabled,omitempty"`
	Created  time.Time `json:"created"`
}

// AccountChange is a change of an account: each field set replaces the account's, each nil
// one stays as the account holds it.
type AccountChange struct {
	Groups   *[]string
	Roles    *[]string
	Disabled *bool
}

// Apply returns a with the change made.
func (ch AccountChange) Apply(a Account) Account {
	if ch.Groups != nil {
		a.Groups = slices.Clone(*ch.Groups)
	}
	if ch.Roles != nil {
		a.Roles = slices.Clone(*ch.Roles)
	}
	if ch.Disabled != nil {
		a.Disabled = *ch.Disabled
	}
	return a
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

// Live reports whether the key may still authenticate at now: neither revoked nor expired.
func (k Key) Live(now time.Time) bool { return !k.Revoked && !k.Expired(now) }

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
	// Expires, when set, is the instant the grant stops giving anything (a purchase that
	// ends). A row has one end for all of its actions.
	Expires time.Time `json:"expires,omitzero"`
}

// Expired reports whether the grant has an end at or before now.
func (g Grant) Expired(now time.Time) bool { return !g.Expires.IsZero() && !now.Before(g.Expires) }

// LiveGrants returns the grants that have not expired at now. It returns gs itself when none
// has, so the common case allocates nothing.
func LiveGrants(gs []Grant, now time.Time) []Grant {
	i := slices.IndexFunc(gs, func(g Grant) bool { return g.Expired(now) })
	if i < 0 {
		return gs
	}
	out := slices.Clone(gs[:i])
	for _, g := range gs[i+1:] {
		if !g.Expired(now) {
			out = append(out, g)
		}
	}
	return out
}

// FirstGrantEnd is the earliest end among gs, zero when none ends. A cache holding a principal
// must not serve it past this instant: from then on it would carry a grant that gives nothing.
func FirstGrantEnd(gs []Grant) time.Time {
	var first time.Time
	for _, g := range gs {
		if !g.Expires.IsZero() && (first.IsZero() || g.Expires.Before(first)) {
			first = g.Expires
		}
	}
	return first
}

// MergeGrant is the row PutGrant stores when g is put on the row old (nil when there is none):
// the union of the actions. A row has one end, so a put that would change it must name every
// action the row holds: it then replaces the row, end included. Otherwise putting push for ever
// beside a purchase that ends would silently make the purchase permanent (or the reverse cut
// push short), so it is ErrConflict instead.
func MergeGrant(old *Grant, g Grant) (Grant, error) {
	g.Actions, g.Expires = MergeActions(nil, g.Actions), g.Expires.UTC()
	if old == nil {
		return g, nil
	}
	if old.Expires.Equal(g.Expires) {
		g.Actions = MergeActions(old.Actions, g.Actions)
		return g, nil
	}
	if len(SubtractActions(old.Actions, g.Actions)) > 0 {
		return Grant{}, fmt.Errorf("grant %s on %s: %w: it holds %s %s; to change its end, name every action it holds, or remove it first",
			g.Subject, g.Repository, ErrConflict, strings.Join(old.Actions, ","), DescribeEnd(old.Expires))
	}
	return g, nil
}

// DescribeEnd says when a grant ends, for messages.
func DescribeEnd(t time.Time) string {
	if t.IsZero() {
		return "with no end"
	}
	return "until " + t.UTC().Format(time.RFC3339)
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

// Session is a signed-in console session. The browser holds a random token; the store keeps
// only its SHA-256 (the ID), so reading the store opens no session.
type Session struct {
	ID string `json:"id"`
	// KeyID and Account are the API key signed in with; every use of the session checks the
	// key again, so revoking it or disabling the account ends the session.
	KeyID   string    `json:"key_id"`
	Account string    `json:"account"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// SessionsToEnd returns the sessions of live (one account's sessions that have not expired)
// that must end for one more to make at most max: those that would end first, then the oldest.
// It is empty when max is 0 (no bound) or there is room.
func SessionsToEnd(live []Session, max int) []Session {
	if max <= 0 || len(live) < max {
		return nil
	}
	live = slices.Clone(live)
	slices.SortFunc(live, func(a, b Session) int {
		if c := a.Expires.Compare(b.Expires); c != 0 {
			return c
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return live[:len(live)-max+1]
}

// GrantFilter selects grants in List. Empty fields match everything.
type GrantFilter struct {
	Subject    *Subject
	Repository string
}

// GrantQuery selects a page of grant rows for a listing: the rows whose subject ("account:NAME",
// "group:NAME") and repository contain the given strings (empty: any), and whose end is in the
// given state, in ListGrants' order; Offset rows are skipped and at most Limit returned.
type GrantQuery struct {
	Subject, Repository string
	Ends                EndState
	// Now is the instant Ends is judged at.
	Now           time.Time
	Offset, Limit int
}

// EndState selects grant rows by their end.
type EndState string

const (
	AnyEnd    EndState = ""
	EndsLater EndState = "ends"  // an end still to come
	Ended     EndState = "ended" // an end that has passed
)

// Matches reports whether g is selected by q's filters.
func (q GrantQuery) Matches(g Grant) bool {
	return strings.Contains(g.Subject.String(), q.Subject) && strings.Contains(g.Repository, q.Repository) && q.EndMatches(g)
}

// EndMatches reports whether g's end is in the state q selects.
func (q GrantQuery) EndMatches(g Grant) bool {
	switch q.Ends {
	case EndsLater:
		return !g.Expires.IsZero() && !g.Expired(q.Now)
	case Ended:
		return g.Expired(q.Now)
	}
	return true
}

// GrantPage is a page of grant rows and how many rows the query matches in all.
type GrantPage struct {
	Grants []Grant
	Total  int
}

// AccountQuery selects a page of accounts for a listing: those whose name, one of whose groups
// or one of whose roles contains Contains (empty: all), by name; Offset skipped, at most Limit
// returned.
type AccountQuery struct {
	Contains      string
	Offset, Limit int
}

// Matches reports whether a is selected by q's filter.
func (q AccountQuery) Matches(a Account) bool {
	return strings.Contains(a.Name, q.Contains) ||
		slices.ContainsFunc(a.Groups, func(g string) bool { return strings.Contains(g, q.Contains) }) ||
		slices.ContainsFunc(a.Roles, func(r string) bool { return strings.Contains(r, q.Contains) })
}

// AccountPage is a page of accounts and how many the query matches in all.
type AccountPage struct {
	Accounts []Account
	Total    int
}

// OwnershipQuery selects a page of reservations for a listing: those whose owner and
// repository contain the given strings, by repository; Offset skipped, at most Limit returned.
type OwnershipQuery struct {
	Owner, Repository string
	Offset, Limit     int
}

// Matches reports whether o is selected by q's filters.
func (q OwnershipQuery) Matches(o Ownership) bool {
	return strings.Contains(o.Owner, q.Owner) && strings.Contains(o.Repository, q.Repository)
}

// OwnershipPage is a page of reservations and how many the query matches in all.
type OwnershipPage struct {
	Ownerships []Ownership
	Total      int
}

// Confirmer is a Store whose changes replicas confirm (Redis with confirm_replicas). Confirm
// returns ErrUnconfirmed unless enough replicas hold every change the store took so far: a
// caller that found its records already present, and so wrote nothing to wait for, asks it.
type Confirmer interface {
	Confirm(ctx context.Context) error
}

// Store is implemented by every backend and proven by keystore/storetest: the records one at a
// time, and the few operations on many records at once that bulk work and readiness need.
type Store interface {
	// LoadPrincipal loads the key keyID, its account, the account's grants (own and via
	// groups) that have not expired at the store's clock, and its owned repositories, in one
	// operation. A cached principal is never served past the end of one of its grants. It
	// returns ErrNotFound if the key or its account is missing.
	LoadPrincipal(ctx context.Context, keyID string) (Principal, error)

	CreateAccount(ctx context.Context, a Account) error
	GetAccount(ctx context.Context, name string) (Account, error)
	ListAccounts(ctx context.Context) ([]Account, error)
	// PageAccounts returns one page of the accounts a query selects, fast on many thousands.
	PageAccounts(ctx context.Context, q AccountQuery) (AccountPage, error)
	// UpdateAccount replaces groups, roles and the disabled flag of an existing account.
	UpdateAccount(ctx context.Context, a Account) error
	// ChangeAccount applies the fields ch sets to an existing account, in one atomic step that
	// leaves the others as they are then, and returns the account as changed: two changes of
	// different fields made at once both hold (disabling an account is never undone by another
	// caller's change of its groups, read before).
	ChangeAccount(ctx context.Context, name string, ch AccountChange) (Account, error)

	// CreateKey stores a new key; its account must exist.
	CreateKey(ctx context.Context, k Key) error
	// CreateKeyWithin is CreateKey, also ErrLimit (see KeysLimit) when maxLive > 0 and the
	// key's account already holds maxLive keys live at the store's clock (neither revoked nor
	// expired): the count and the write are one atomic step, so concurrent creations never
	// exceed the limit.
	CreateKeyWithin(ctx context.Context, k Key, maxLive int) error
	GetKey(ctx context.Context, id string) (Key, error)
	// ListKeys lists keys, all of them when account is empty, without their hashes.
	ListKeys(ctx context.Context, account string) ([]Key, error)
	RevokeKey(ctx context.Context, id string) error
	// DeleteKeys removes dead keys for good, with their index entries, in one atomic step that
	// also empties every replica's cached principal of each, so that none of them
	// authenticates anywhere from then on (as none did, being dead). Each key must be dead at
	// the store's clock: revoked, or expired. When one is live it is ErrConflict and nothing is
	// removed. Ids that do not exist are skipped: another caller may have removed them.
	DeleteKeys(ctx context.Context, ids []string) error
	// TouchKeys records last-used times; it is called in batches off the request path.
	TouchKeys(ctx context.Context, used map[string]time.Time) error

	// PutGrant adds the grant's actions to the row for (subject, repository), creating it; see
	// MergeGrant for the row it stores, and for when it returns ErrConflict. It is also
	// ErrConflict, writing nothing, when the guard does not hold for g.Repository.
	PutGrant(ctx context.Context, g Grant, guard Guard) error
	// RemoveGrant removes the listed actions from the row, or the whole row when actions is
	// empty; the row's end stays. It returns ErrNotFound when there is no such row, and
	// ErrConflict, removing nothing, when the guard does not hold for repository.
	RemoveGrant(ctx context.Context, subject Subject, repository string, actions []string, guard Guard) error
	// ListGrants lists rows matching f, expired ones included (with their end), ordered by
	// subject then repository.
	ListGrants(ctx context.Context, f GrantFilter) ([]Grant, error)
	// PageGrants returns one page of the rows a query selects. It must stay fast on tables of
	// many thousands of rows: a console page shows one page of them.
	PageGrants(ctx context.Context, q GrantQuery) (GrantPage, error)

	// Reserve records ownership of one literal repository name (see ValidateRepository; a
	// pattern is ErrInvalid); ErrExists if it is already owned. When maxOwned > 0 it is also
	// ErrLimit if the owner already holds maxOwned reservations: the count and the write are one
	// atomic step, so concurrent reservations never exceed the limit.
	Reserve(ctx context.Context, o Ownership, maxOwned int) error
	GetOwnership(ctx context.Context, repository string) (Ownership, error)
	ListOwnership(ctx context.Context, owner string) ([]Ownership, error)
	// PageOwnership returns one page of the reservations a query selects, as fast on many
	// thousands of them as PageGrants.
	PageOwnership(ctx context.Context, q OwnershipQuery) (OwnershipPage, error)
	// Release removes the reservation of repository and, in the same atomic write, every grant
	// whose repository is exactly that name, to accounts and to groups: rights tied to the name
	// belonged to its listing, and must not pass to the next owner. Grants on patterns that
	// match the name stay. ErrNotFound if the name is not reserved; ErrConflict, removing
	// nothing, when the guard does not hold.
	Release(ctx context.Context, repository string, guard Guard) error

	// CreateSession stores a new session; it is gone by itself once it expires. When
	// maxPerAccount > 0 and the session's account already holds that many live sessions, those
	// that would end first (SessionsToEnd) end now, in the same atomic write, so an account
	// never holds more than maxPerAccount however often it signs in.
	CreateSession(ctx context.Context, s Session, maxPerAccount int) error
	// GetSession reads a session; ErrNotFound when there is none or it has expired at the
	// store's clock.
	GetSession(ctx context.Context, id string) (Session, error)
	// DeleteSession ends a session at once on every replica; ending one that is gone is not an
	// error.
	DeleteSession(ctx context.Context, id string) error

	// GetKeys reads many keys, hashes included, in one operation, in the order of ids; ids
	// that do not exist are left out. Export reads a store with it.
	GetKeys(ctx context.Context, ids []string) ([]Key, error)
	// WriteBatch writes many records (accounts, keys, grants, ownerships) in one operation.
	// Each record is checked and written as its single write would be (CreateAccount,
	// CreateKey, PutGrant, Reserve), in order, so an account may precede its keys. A batch
	// holding an invalid record writes nothing and fails with ErrInvalid; otherwise every
	// record is attempted and the first failure is returned; a store confirming its changes
	// (Confirmer) confirms the records written all the same, and returns their being
	// unconfirmed with that failure. Import loads a store with it.
	WriteBatch(ctx context.Context, recs []Record) error

	// Ping reports whether the backend answers: ErrUnavailable when it cannot be reached.
	// Readiness and --check-config ask it.
	Ping(ctx context.Context) error
	Close() error
}

// A Guard makes a write on a repository name conditional on the name's reservation, checked in
// the same atomic step as the write: the write is made only while the name is owned as the
// guard says, and is ErrConflict otherwise. An operation that decides on who owns a name and
// then writes carries the owner it decided on, so that a release or a reservation between the
// decision and the write fails the write instead of leaving a right nobody authorized (a grant
// on a name its owner released, kept for the name's next owner). The zero Guard checks nothing:
// the operator's own writes (import, tests) need none.
type Guard struct {
	checked bool
	owner   string
}

// OwnedBy guards a write with the owner of its repository name: owner, or nobody when owner is
// "".
func OwnedBy(owner string) Guard { return Guard{checked: true, owner: owner} }

// Unguarded is the Guard that checks nothing.
var Unguarded Guard

// Holds reports whether the guard holds for a name whose reservation names owner ("" when the
// name is not reserved).
func (g Guard) Holds(owner string) bool { return !g.checked || g.owner == owner }

// Checked reports whether the guard checks anything, and the owner it expects.
func (g Guard) Checked() (owner string, checked bool) { return g.owner, g.checked }

// ErrOwnerChanged is the conflict of a write whose guard did not hold.
var ErrOwnerChanged = fmt.Errorf("%w: the repository changed owner while the change was decided; try again", ErrConflict)

// OwnerChanged is the error of a write whose guard did not hold for repository.
func OwnerChanged(repository string) error {
	return fmt.Errorf("repository %q: %w", repository, ErrOwnerChanged)
}

// ErrKeyLive is the conflict of removing a key that may still authenticate (Store.DeleteKeys).
var ErrKeyLive = fmt.Errorf("%w: the key is neither revoked nor expired", ErrConflict)

// KeyLive is the error of removing the live key id.
func KeyLive(id string) error { return fmt.Errorf("key %q: %w", id, ErrKeyLive) }

// KeysLimit is the error of creating a key for account, which already holds live keys (the
// most it may).
func KeysLimit(account string, live int) error {
	return fmt.Errorf("account %q holds %d live API keys, the most it may; revoke one first: %w", account, live, ErrLimit)
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
