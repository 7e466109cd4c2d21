package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/regoauth/regoauth/authz/input"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// Caller is who performs an operation: a principal authenticated by the front end that received
// the call (the HTTP API, the console), and the address the call came from.
type Caller struct {
	Principal keystore.Principal
	// ClientIP is the address the call came from, trusted proxies considered (as the token
	// endpoint reads it): the admin policy checks a key's networks against it, and a key limited
	// to networks gets nothing when it is unknown.
	ClientIP string
	// owned is the principal's reservations, read on its first authorization.
	owned []string
	// decision is the policy's last allow: it may carry limits the write must keep.
	decision policy.AdminDecision
}

// Forbidden is a refusal by the admin policy.
type Forbidden struct {
	Operation  string
	Reasons    []string
	DecisionID string
}

func (f *Forbidden) Error() string {
	return fmt.Sprintf("%s is not permitted: %s", f.Operation, joinReasons(f.Reasons))
}

// authorize asks the policy whether the caller may perform operation on target.
func (a *API) authorize(ctx context.Context, c *Caller, operation string, target policy.AdminTarget) error {
	if c.owned == nil {
		owned, err := a.store.ListOwnership(ctx, c.Principal.Account.Name)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(owned))
		for _, o := range owned {
			names = append(names, o.Repository)
		}
		c.owned = keystore.LiteralRepositories(names)
	}
	in := &policy.AdminInput{Principal: input.Principal(c.Principal), Client: policy.Client{IP: c.ClientIP}, Operation: operation, Target: target, Owned: c.owned}
	d, err := a.authz.Authorize(ctx, in)
	if err != nil {
		return fmt.Errorf("%w: %w", keystore.ErrUnavailable, err)
	}
	if !d.Allow {
		return &Forbidden{Operation: operation, Reasons: d.Reasons, DecisionID: d.ID}
	}
	c.decision = d
	return nil
}

// Permits reports whether the policy would let the caller perform operation on target; a front
// end uses it to offer only what may succeed. The operation itself decides again.
func (a *API) Permits(ctx context.Context, c *Caller, operation string, target policy.AdminTarget) (bool, error) {
	err := a.authorize(ctx, c, operation, target)
	var f *Forbidden
	if errors.As(err, &f) {
		return false, nil
	}
	return err == nil, err
}

// Whoami describes the caller. It is decided like every other call: a key used from outside its
// networks learns nothing, not even which account it belongs to.
func (a *API) Whoami(ctx context.Context, c *Caller) (Whoami, error) {
	if err := a.authorize(ctx, c, "whoami", policy.AdminTarget{Account: c.Principal.Account.Name}); err != nil {
		return Whoami{}, err
	}
	return Whoami{Account: c.Principal.Account, Key: c.Principal.Key.Redacted()}, nil
}

// ListAccounts lists every account.
func (a *API) ListAccounts(ctx context.Context, c *Caller) ([]keystore.Account, error) {
	if err := a.authorize(ctx, c, "accounts.list", policy.AdminTarget{}); err != nil {
		return nil, err
	}
	return a.store.ListAccounts(ctx)
}

// PageAccounts returns one page of the accounts a query selects ("accounts.list").
func (a *API) PageAccounts(ctx context.Context, c *Caller, q keystore.AccountQuery) (keystore.AccountPage, error) {
	if q.Offset < 0 || q.Limit < 1 || q.Limit > 1000 {
		return keystore.AccountPage{}, fmt.Errorf("%w: a page holds 1 to 1000 rows from offset 0 on", keystore.ErrInvalid)
	}
	if err := a.authorize(ctx, c, "accounts.list", policy.AdminTarget{}); err != nil {
		return keystore.AccountPage{}, err
	}
	return a.store.PageAccounts(ctx, q)
}

// CreateAccount creates an account.
func (a *API) CreateAccount(ctx context.Context, c *Caller, req AccountRequest) (keystore.Account, error) {
	acct := keystore.Account{Name: req.Name, Groups: req.Groups, Roles: req.Roles, Created: a.opts.Now().UTC()}
	if err := acct.Validate(); err != nil {
		return keystore.Account{}, err
	}
	if err := a.authorize(ctx, c, "accounts.create", policy.AdminTarget{Account: req.Name}); err != nil {
		return keystore.Account{}, err
	}
	if err := a.store.CreateAccount(ctx, acct); err != nil {
		return keystore.Account{}, err
	}
	return acct, nil
}

// GetAccount reads one account.
func (a *API) GetAccount(ctx context.Context, c *Caller, name string) (keystore.Account, error) {
	if err := a.authorize(ctx, c, "accounts.get", policy.AdminTarget{Account: name}); err != nil {
		return keystore.Account{}, err
	}
	return a.store.GetAccount(ctx, name)
}

// UpdateAccount changes an account's groups, roles or disabled flag.
func (a *API) UpdateAccount(ctx context.Context, c *Caller, name string, req AccountUpdate) (keystore.Account, error) {
	if err := a.authorize(ctx, c, "accounts.update", policy.AdminTarget{Account: name}); err != nil {
		return keystore.Account{}, err
	}
	// Only the fields the request sets are written, by the store in one step: an account read
	// here and written back whole would undo a change made meanwhile (its disabling, by another
	// admin, undone by this change of its groups).
	return a.store.ChangeAccount(ctx, name, keystore.AccountChange{Groups: req.Groups, Roles: req.Roles, Disabled: req.Disabled})
}

// ListKeys lists keys without their hashes: one account's, or all when account is empty.
func (a *API) ListKeys(ctx context.Context, c *Caller, account string) ([]keystore.Key, error) {
	if err := a.authorize(ctx, c, "keys.list", policy.AdminTarget{Account: account}); err != nil {
		return nil, err
	}
	return a.store.ListKeys(ctx, account)
}

// CreateKey creates an API key for req.Account (the caller's when empty); the result carries
// its secret, the only time it is ever shown.
func (a *API) CreateKey(ctx context.Context, c *Caller, req KeyRequest) (KeyCreated, error) {
	if req.Account == "" {
		req.Account = c.Principal.Account.Name
	}
	now := a.opts.Now().UTC().Truncate(1e9)
	k := keystore.Key{Account: req.Account, Name: req.Name, Created: now, Restrictions: req.Restrictions}
	if req.ExpiresIn != "" {
		d, err := ParseDuration(req.ExpiresIn)
		if err != nil {
			return KeyCreated{}, err
		}
		k.Expires = now.Add(d)
	}
	if err := errors.Join(keystore.ValidateName("account", k.Account), keystore.ValidateKeyName(k.Name), k.Restrictions.Validate()); err != nil {
		return KeyCreated{}, err
	}
	// A key never creates a key that outlives it or can do more than itself, whoever it
	// creates the key for and whatever the policy allows: the caller's expiry and restrictions
	// are ceilings, inherited when the request leaves them out.
	parent := c.Principal.Key
	// An earlier version stored expiries later than a record may now carry: such a key still
	// works, but creates no keys, as neither they nor the policy could carry its expiry.
	if parent.Expires.After(keystore.LatestInstant) {
		return KeyCreated{}, fmt.Errorf("%w: the API key creating this one expires at %s, after %s, the latest a key may now expire; create keys with another key",
			keystore.ErrInvalid, parent.Expires.UTC().Format(time.RFC3339), keystore.LatestInstant.Format(time.RFC3339))
	}
	if !parent.Expires.IsZero() {
		switch {
		case k.Expires.IsZero():
			k.Expires = parent.Expires
		case k.Expires.After(parent.Expires):
			return KeyCreated{}, fmt.Errorf("%w: the API key creating this one expires at %s; a key it creates cannot expire later", keystore.ErrInvalid, parent.Expires.UTC().Format(time.RFC3339))
		}
	}
	if err := keystore.ValidateInstant("key expiry", k.Expires); err != nil {
		return KeyCreated{}, err
	}
	var err error
	if k.Restrictions, err = k.Restrictions.Within(parent.Restrictions); err != nil {
		return KeyCreated{}, err
	}
	target := policy.AdminTarget{Account: req.Account, Expires: input.Instant(k.Expires), Restrictions: input.Restrictions(k.Restrictions)}
	if err := a.authorize(ctx, c, "keys.create", target); err != nil {
		return KeyCreated{}, err
	}
	keys, err := a.store.ListKeys(ctx, req.Account)
	if err != nil {
		return KeyCreated{}, err
	}
	if err := a.pruneDeadKeys(ctx, req.Account, keys, now); err != nil {
		return KeyCreated{}, err
	}
	plain, id, hash, err := keystore.NewAPIKey(a.opts.Random)
	if err != nil {
		return KeyCreated{}, err
	}
	k.ID, k.Hash = id, hash
	// The limit is counted by the store in the write itself: requests creating keys at the
	// same instant would each see one below it here.
	if err := a.store.CreateKeyWithin(ctx, k, a.opts.MaxKeysPerAccount); err != nil {
		return KeyCreated{}, err
	}
	return KeyCreated{Secret: plain, Key: k.Redacted()}, nil
}

// pruneDeadKeys removes the dead keys of account, holding keys, beyond the newest
// keystore.DeadKeysKept (keystore.DeadKeysBeyond), so that creating and revoking keys in a loop
// cannot grow the store without end. A key judged dead here that is live at the store's clock
// (clocks a moment apart, around its expiry) makes the store remove nothing: that is left to
// the next creation or revocation.
func (a *API) pruneDeadKeys(ctx context.Context, account string, keys []keystore.Key, now time.Time) error {
	ids := keystore.DeadKeysBeyond(keys, now, keystore.DeadKeysKept)
	if len(ids) == 0 {
		return nil
	}
	err := a.store.DeleteKeys(ctx, ids)
	if errors.Is(err, keystore.ErrKeyLive) {
		a.opts.Logger.Warn("dead API keys left in place", "account", account, "keys", len(ids), "error", err)
		return nil
	}
	if errors.Is(err, keystore.ErrUnconfirmed) {
		// Removed on the primary; should that be lost, dead keys stay a while longer.
		a.opts.Logger.Warn("removal of dead API keys not confirmed by replicas", "account", account, "keys", len(ids), "error", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing dead API keys of %q: %w", account, err)
	}
	a.opts.Logger.Info("dead API keys removed", "account", account, "keys", len(ids))
	return nil
}

// RevokeKey revokes a key at once.
func (a *API) RevokeKey(ctx context.Context, c *Caller, id string) (keystore.Key, error) {
	target := policy.AdminTarget{KeyID: id}
	k, err := a.store.GetKey(ctx, id)
	switch {
	case err == nil:
		target.Account = k.Account
	case !errors.Is(err, keystore.ErrNotFound):
		return keystore.Key{}, err
	}
	// Authorize before saying whether the key exists, so ids cannot be probed.
	if err := a.authorize(ctx, c, "keys.revoke", target); err != nil {
		return keystore.Key{}, err
	}
	if err != nil {
		return keystore.Key{}, err
	}
	if err := a.store.RevokeKey(ctx, id); err != nil {
		return keystore.Key{}, err
	}
	k.Revoked = true
	// The revocation is made whatever happens to the account's oldest dead keys: their
	// removal failing is logged, and done by the next creation or revocation.
	now := a.opts.Now()
	keys, err := a.store.ListKeys(ctx, k.Account)
	if err == nil {
		err = a.pruneDeadKeys(ctx, k.Account, keys, now)
	}
	if err != nil {
		a.opts.Logger.Warn("dead API keys not removed after a revocation", "account", k.Account, "error", err)
	}
	return k.Redacted(), nil
}

// ownerOf returns the account that owns repository, or "" when nobody does. Only a literal
// repository name has an owner: a grant pattern is never looked up as a reservation, so no
// record that reads as a pattern (an earlier version stored them) makes anyone its owner.
func (a *API) ownerOf(ctx context.Context, repository string) (string, error) {
	if keystore.ValidateRepository(repository) != nil {
		return "", nil
	}
	o, err := a.store.GetOwnership(ctx, repository)
	if errors.Is(err, keystore.ErrNotFound) {
		return "", nil
	}
	return o.Owner, err
}

// grantTarget is what a grant operation is decided on, and the guard its write carries: the
// owner the decision saw, for a literal name (a pattern has no owner, and its grants depend on
// none).
func (a *API) grantTarget(ctx context.Context, req GrantRequest) (keystore.Subject, policy.AdminTarget, keystore.Guard, error) {
	subject, err := req.Subject()
	if err != nil {
		return subject, policy.AdminTarget{}, keystore.Unguarded, err
	}
	target := policy.AdminTarget{Account: req.Account, Group: req.Group, Repository: req.Repository, Actions: req.Actions}
	if target.Owner, err = a.ownerOf(ctx, req.Repository); err != nil {
		return subject, target, keystore.Unguarded, err
	}
	guard := keystore.Unguarded
	if keystore.ValidateRepository(req.Repository) == nil {
		guard = keystore.OwnedBy(target.Owner)
	}
	return subject, target, guard, nil
}

// ListGrants lists grant rows (ended ones included, with their end), filtered by the non-empty
// fields of req.
func (a *API) ListGrants(ctx context.Context, c *Caller, req GrantRequest) ([]keystore.Grant, error) {
	f := keystore.GrantFilter{Repository: req.Repository}
	target := policy.AdminTarget{Account: req.Account, Group: req.Group, Repository: req.Repository}
	if req.Account != "" || req.Group != "" {
		subject, err := req.Subject()
		if err != nil {
			return nil, err
		}
		f.Subject = &subject
	}
	var err error
	if target.Owner, err = a.ownerOf(ctx, req.Repository); err != nil {
		return nil, err
	}
	if err := a.authorize(ctx, c, "grants.list", target); err != nil {
		return nil, err
	}
	return a.store.ListGrants(ctx, f)
}

// PageGrants returns one page of every grant row a query selects; reading grants across
// subjects and repositories is "grants.list" without a target (admins, by default).
func (a *API) PageGrants(ctx context.Context, c *Caller, q keystore.GrantQuery) (keystore.GrantPage, error) {
	if q.Offset < 0 || q.Limit < 1 || q.Limit > 1000 {
		return keystore.GrantPage{}, fmt.Errorf("%w: a page holds 1 to 1000 rows from offset 0 on", keystore.ErrInvalid)
	}
	if err := a.authorize(ctx, c, "grants.list", policy.AdminTarget{}); err != nil {
		return keystore.GrantPage{}, err
	}
	if q.Now.IsZero() {
		q.Now = a.opts.Now()
	}
	return a.store.PageGrants(ctx, q)
}

// AddGrant adds actions to the row of (subject, repository), with the end req gives (none when
// it gives none), and returns the row.
func (a *API) AddGrant(ctx context.Context, c *Caller, req GrantRequest) (keystore.Grant, error) {
	subject, target, guard, err := a.grantTarget(ctx, req)
	if err != nil {
		return keystore.Grant{}, err
	}
	end, err := grantEnd(req, a.opts.Now())
	if err != nil {
		return keystore.Grant{}, err
	}
	g := keystore.Grant{Subject: subject, Repository: req.Repository, Actions: req.Actions, Expires: end}
	if err := g.Validate(); err != nil {
		return keystore.Grant{}, err
	}
	target.Expires = input.Instant(end)
	if err := a.authorize(ctx, c, "grants.add", target); err != nil {
		return keystore.Grant{}, err
	}
	if subject.Kind == keystore.SubjectAccount {
		// A grant to an account that does not exist is almost always a typo.
		if _, err := a.store.GetAccount(ctx, subject.Name); err != nil {
			return keystore.Grant{}, err
		}
	}
	// The owner the policy decided on must still own the name when the row is written.
	if err := a.store.PutGrant(ctx, g, guard); err != nil {
		return keystore.Grant{}, err
	}
	rows, err := a.store.ListGrants(ctx, keystore.GrantFilter{Subject: &subject, Repository: g.Repository})
	if err != nil || len(rows) != 1 {
		return g, err
	}
	return rows[0], nil
}

// RemoveGrant removes actions from a row, or the whole row when req names none.
func (a *API) RemoveGrant(ctx context.Context, c *Caller, req GrantRequest) error {
	if req.ExpiresIn != "" || !req.Expires.IsZero() {
		return fmt.Errorf("%w: an end applies to adding a grant, not to removing one", keystore.ErrInvalid)
	}
	subject, target, guard, err := a.grantTarget(ctx, req)
	if err != nil {
		return err
	}
	if err := errors.Join(keystore.ValidateSubject(subject), keystore.ValidatePattern(req.Repository)); err != nil {
		return err
	}
	if len(req.Actions) > 0 {
		if err := keystore.ValidateActions(req.Actions); err != nil {
			return err
		}
	}
	// The policy judges what the call removes: the named actions, or, without any, the whole
	// row as it is now. The store is then told exactly those actions, so an action added to the
	// row meanwhile is not removed unjudged.
	rows, err := a.store.ListGrants(ctx, keystore.GrantFilter{Subject: &subject, Repository: req.Repository})
	if err != nil {
		return err
	}
	target.Actions = req.Actions
	if len(target.Actions) == 0 {
		target.Actions = []string{}
		if len(rows) == 1 {
			target.Actions = rows[0].Actions
		}
	}
	if err := a.authorize(ctx, c, "grants.remove", target); err != nil {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("grant %q: %w", subject.String()+" "+req.Repository, keystore.ErrNotFound)
	}
	return a.store.RemoveGrant(ctx, subject, req.Repository, target.Actions, guard)
}

// ListRepositories lists reservations: one owner's, or all when owner is empty.
func (a *API) ListRepositories(ctx context.Context, c *Caller, owner string) ([]keystore.Ownership, error) {
	if err := a.authorize(ctx, c, "repos.list", policy.AdminTarget{Account: owner, Owner: owner}); err != nil {
		return nil, err
	}
	return a.store.ListOwnership(ctx, owner)
}

// PageRepositories returns one page of every reservation a query selects; reading everyone's
// reservations is "repos.list" without a target (admins, by default).
func (a *API) PageRepositories(ctx context.Context, c *Caller, q keystore.OwnershipQuery) (keystore.OwnershipPage, error) {
	if q.Offset < 0 || q.Limit < 1 || q.Limit > 1000 {
		return keystore.OwnershipPage{}, fmt.Errorf("%w: a page holds 1 to 1000 rows from offset 0 on", keystore.ErrInvalid)
	}
	if err := a.authorize(ctx, c, "repos.list", policy.AdminTarget{}); err != nil {
		return keystore.OwnershipPage{}, err
	}
	return a.store.PageOwnership(ctx, q)
}

// ReserveRepository records that req.Owner (the caller when empty) owns a repository name.
func (a *API) ReserveRepository(ctx context.Context, c *Caller, req RepositoryRequest) (keystore.Ownership, error) {
	if req.Owner == "" {
		req.Owner = c.Principal.Account.Name
	}
	o := keystore.Ownership{Repository: req.Repository, Owner: req.Owner, Created: a.opts.Now().UTC().Truncate(1e9)}
	if err := o.Validate(); err != nil {
		return keystore.Ownership{}, err
	}
	if err := a.authorize(ctx, c, "repos.reserve", policy.AdminTarget{Account: req.Owner, Repository: req.Repository}); err != nil {
		return keystore.Ownership{}, err
	}
	// The policy's limit on reservations is checked by the store in the same write.
	if err := a.store.Reserve(ctx, o, c.decision.MaxOwned); err != nil {
		return keystore.Ownership{}, err
	}
	return o, nil
}

// ReleaseRepository removes a reservation, and with it every grant on exactly that name (see
// keystore.Store.Release).
func (a *API) ReleaseRepository(ctx context.Context, c *Caller, name string) error {
	// The record itself, not ownerOf: a reservation an earlier version stored as a pattern can
	// still be released, by whoever may release a name nobody owns (admins).
	o, err := a.store.GetOwnership(ctx, name)
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return err
	}
	found := err == nil
	owner := o.Owner
	if keystore.ValidateRepository(name) != nil {
		owner = ""
	}
	if err := a.authorize(ctx, c, "repos.release", policy.AdminTarget{Repository: name, Owner: owner}); err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("repository %q: %w", name, keystore.ErrNotFound)
	}
	// Released only if the record is still the one decided on: a stale release never takes
	// the name, and its grants, from an owner who reserved it since.
	return a.store.Release(ctx, name, keystore.OwnedBy(o.Owner))
}
