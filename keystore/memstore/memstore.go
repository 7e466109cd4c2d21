// Package memstore is a keystore backend in memory: the records of one process, gone when it
// ends. It passes the same conformance suite as the persistent backends, so package tests use
// it where a store's behaviour matters but its files or servers do not. It knows nothing beyond
// package keystore.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// Store is a keystore.Store in memory. Records go in and come out as copies, so a caller never
// shares a slice with the store.
type Store struct {
	mu       sync.RWMutex
	closed   bool
	accounts map[string]keystore.Account
	keys     map[string]keystore.Key
	grants   map[grantRow]keystore.Grant
	owners   map[string]keystore.Ownership
	sessions map[string]keystore.Session
	now      func() time.Time
}

// grantRow identifies a grant row, as in every backend: one per (subject, repository).
type grantRow struct {
	subject    keystore.Subject
	repository string
}

var _ keystore.Store = (*Store)(nil)

// New returns an empty store on the system clock.
func New() *Store { return NewAt(time.Now) }

// NewAt returns an empty store whose clock (grant ends, sessions) is now.
func NewAt(now func() time.Time) *Store {
	return &Store{
		accounts: map[string]keystore.Account{},
		keys:     map[string]keystore.Key{},
		grants:   map[grantRow]keystore.Grant{},
		owners:   map[string]keystore.Ownership{},
		sessions: map[string]keystore.Session{},
		now:      now,
	}
}

func copyAccount(a keystore.Account) keystore.Account {
	a.Groups, a.Roles = slices.Clone(a.Groups), slices.Clone(a.Roles)
	return a
}

func copyKey(k keystore.Key) keystore.Key {
	k.Hash = slices.Clone(k.Hash)
	r := &k.Restrictions
	r.Actions, r.Repositories, r.CIDRs = slices.Clone(r.Actions), slices.Clone(r.Repositories), slices.Clone(r.CIDRs)
	return k
}

func copyGrant(g keystore.Grant) keystore.Grant {
	g.Actions = slices.Clone(g.Actions)
	return g
}

func notFound(kind, name string) error {
	return fmt.Errorf("%s %q: %w", kind, name, keystore.ErrNotFound)
}

func exists(kind, name string) error { return fmt.Errorf("%s %q: %w", kind, name, keystore.ErrExists) }

// byGrantRow orders grants by subject, then repository, as every backend lists them.
func byGrantRow(a, b keystore.Grant) int {
	return cmp.Or(strings.Compare(a.Subject.String(), b.Subject.String()), strings.Compare(a.Repository, b.Repository))
}

// sorted returns the values of m ordered by key, each copied.
func sorted[V any](m map[string]V, clone func(V) V) []V {
	out := make([]V, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, clone(m[k]))
	}
	return out
}

func same[V any](v V) V { return v }

// LoadPrincipal reads the key, its account, the live grants of the account and its groups, and
// the repositories it owns.
func (s *Store) LoadPrincipal(_ context.Context, keyID string) (keystore.Principal, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[keyID]
	if !ok {
		return keystore.Principal{}, notFound("key", keyID)
	}
	a, ok := s.accounts[k.Account]
	if !ok {
		return keystore.Principal{}, notFound("account", k.Account)
	}
	p := keystore.Principal{Key: copyKey(k), Account: copyAccount(a)}
	subjects := []keystore.Subject{{Kind: keystore.SubjectAccount, Name: a.Name}}
	for _, g := range a.Groups {
		subjects = append(subjects, keystore.Subject{Kind: keystore.SubjectGroup, Name: g})
	}
	now := s.now()
	for _, sub := range subjects {
		p.Grants = append(p.Grants, keystore.LiveGrants(s.grantsLocked(keystore.GrantFilter{Subject: &sub}), now)...)
	}
	for _, o := range s.owners {
		if o.Owner == a.Name {
			p.Owned = append(p.Owned, o.Repository)
		}
	}
	slices.Sort(p.Owned)
	return p, nil
}

// CreateAccount stores a new account.
func (s *Store) CreateAccount(_ context.Context, a keystore.Account) error {
	return s.WriteBatch(context.Background(), []keystore.Record{{Account: &a}})
}

// GetAccount reads one account.
func (s *Store) GetAccount(_ context.Context, name string) (keystore.Account, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.accounts[name]
	if !ok {
		return keystore.Account{}, notFound("account", name)
	}
	return copyAccount(a), nil
}

// ListAccounts lists every account by name.
func (s *Store) ListAccounts(context.Context) ([]keystore.Account, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sorted(s.accounts, copyAccount), nil
}

// UpdateAccount replaces groups, roles and the disabled flag of an existing account.
func (s *Store) UpdateAccount(_ context.Context, a keystore.Account) error {
	if err := a.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.accounts[a.Name]
	if !ok {
		return notFound("account", a.Name)
	}
	old.Groups, old.Roles, old.Disabled = slices.Clone(a.Groups), slices.Clone(a.Roles), a.Disabled
	s.accounts[a.Name] = old
	return nil
}

// ChangeAccount applies ch to an existing account under the store's lock.
func (s *Store) ChangeAccount(_ context.Context, name string, ch keystore.AccountChange) (keystore.Account, error) {
	if err := ch.Validate(name); err != nil {
		return keystore.Account{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.accounts[name]
	if !ok {
		return keystore.Account{}, notFound("account", name)
	}
	a := ch.Apply(old)
	s.accounts[name] = a
	return copyAccount(a), nil
}

// CreateKey stores a new key for an existing account, as given.
func (s *Store) CreateKey(_ context.Context, k keystore.Key) error {
	return s.WriteBatch(context.Background(), []keystore.Record{{Key: &k}})
}

// CreateKeyWithin stores a new key, refused when its account already holds maxLive keys live
// at the store's clock (no bound when maxLive <= 0), counted under the lock that writes it.
func (s *Store) CreateKeyWithin(_ context.Context, k keystore.Key, maxLive int) error {
	if err := k.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if maxLive > 0 {
		now, live := s.now(), 0
		for _, held := range s.keys {
			if held.Account == k.Account && held.Live(now) {
				live++
			}
		}
		if live >= maxLive {
			return keystore.KeysLimit(k.Account, live)
		}
	}
	return s.writeLocked(keystore.Record{Key: &k})
}

// GetKey reads one key, hash included.
func (s *Store) GetKey(_ context.Context, id string) (keystore.Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[id]
	if !ok {
		return keystore.Key{}, notFound("key", id)
	}
	return copyKey(k), nil
}

// GetKeys reads keys, hashes included; missing ids are left out.
func (s *Store) GetKeys(_ context.Context, ids []string) ([]keystore.Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []keystore.Key
	for _, id := range ids {
		if k, ok := s.keys[id]; ok {
			out = append(out, copyKey(k))
		}
	}
	return out, nil
}

// ListKeys lists keys without hashes, ordered by id.
func (s *Store) ListKeys(_ context.Context, account string) ([]keystore.Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []keystore.Key
	for _, k := range sorted(s.keys, copyKey) {
		if account == "" || k.Account == account {
			out = append(out, k.Redacted())
		}
	}
	return out, nil
}

// RevokeKey marks a key revoked.
func (s *Store) RevokeKey(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return notFound("key", id)
	}
	k.Revoked = true
	s.keys[id] = k
	return nil
}

// DeleteKeys removes dead keys, all of them or, when one is live at the store's clock, none.
func (s *Store) DeleteKeys(_ context.Context, ids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, id := range ids {
		if k, ok := s.keys[id]; ok && k.Live(now) {
			return keystore.KeyLive(id)
		}
	}
	for _, id := range ids {
		delete(s.keys, id)
	}
	return nil
}

// TouchKeys records last-used times, never moving one backwards; unknown ids are skipped.
func (s *Store) TouchKeys(_ context.Context, used map[string]time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range used {
		if k, ok := s.keys[id]; ok && t.After(k.LastUsed) {
			k.LastUsed = t
			s.keys[id] = k
		}
	}
	return nil
}

// PutGrant merges the grant into the row for (subject, repository) (keystore.MergeGrant).
func (s *Store) PutGrant(_ context.Context, g keystore.Grant, guard keystore.Guard) error {
	r := keystore.Record{Grant: &g}
	if err := r.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !guard.Holds(s.owners[g.Repository].Owner) {
		return keystore.OwnerChanged(g.Repository)
	}
	return s.writeLocked(r)
}

// RemoveGrant removes actions from a row, or the row.
func (s *Store) RemoveGrant(_ context.Context, subject keystore.Subject, repository string, actions []string, guard keystore.Guard) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !guard.Holds(s.owners[repository].Owner) {
		return keystore.OwnerChanged(repository)
	}
	row := grantRow{subject, repository}
	g, ok := s.grants[row]
	if !ok {
		return notFound("grant", subject.String()+" "+repository)
	}
	if len(actions) > 0 {
		g.Actions = keystore.SubtractActions(g.Actions, actions)
	}
	if len(actions) == 0 || len(g.Actions) == 0 {
		delete(s.grants, row)
		return nil
	}
	s.grants[row] = g
	return nil
}

// ListGrants lists grants matching f, ordered by subject then repository.
func (s *Store) ListGrants(_ context.Context, f keystore.GrantFilter) ([]keystore.Grant, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.grantsLocked(f), nil
}

func (s *Store) grantsLocked(f keystore.GrantFilter) []keystore.Grant {
	var out []keystore.Grant
	for row, g := range s.grants {
		if (f.Subject == nil || row.subject == *f.Subject) && (f.Repository == "" || row.repository == f.Repository) {
			out = append(out, copyGrant(g))
		}
	}
	slices.SortFunc(out, byGrantRow)
	return out
}

// Reserve records ownership of a repository name, within maxOwned per owner when it is > 0.
func (s *Store) Reserve(_ context.Context, o keystore.Ownership, maxOwned int) error {
	if err := o.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if maxOwned > 0 {
		held := 0
		for _, x := range s.owners {
			if x.Owner == o.Owner {
				held++
			}
		}
		if held >= maxOwned {
			if _, ok := s.accounts[o.Owner]; ok {
				return fmt.Errorf("account %q holds %d reservations: %w", o.Owner, maxOwned, keystore.ErrLimit)
			}
		}
	}
	return s.writeLocked(keystore.Record{Ownership: &o})
}

// GetOwnership reads who owns a repository.
func (s *Store) GetOwnership(_ context.Context, repository string) (keystore.Ownership, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.owners[repository]
	if !ok {
		return keystore.Ownership{}, notFound("repository", repository)
	}
	return o, nil
}

// ListOwnership lists repositories owned by owner, or all when owner is empty, by name.
func (s *Store) ListOwnership(_ context.Context, owner string) ([]keystore.Ownership, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []keystore.Ownership
	for _, o := range sorted(s.owners, same) {
		if owner == "" || o.Owner == owner {
			out = append(out, o)
		}
	}
	return out, nil
}

// Release removes ownership of a repository.
func (s *Store) Release(_ context.Context, repository string, guard keystore.Guard) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.owners[repository]
	if !ok {
		return notFound("repository", repository)
	}
	if !guard.Holds(o.Owner) {
		return keystore.OwnerChanged(repository)
	}
	delete(s.owners, repository)
	// Every grant on exactly the released name goes with it (see keystore.Store.Release).
	for row := range s.grants {
		if row.repository == repository {
			delete(s.grants, row)
		}
	}
	return nil
}

// WriteBatch writes records in order under one lock, each as its single write would.
func (s *Store) WriteBatch(_ context.Context, recs []keystore.Record) error {
	if err := keystore.ValidateBatch(recs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for _, r := range recs {
		if err := s.writeLocked(r); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// writeLocked writes the one record r carries, checked by Record.Validate.
func (s *Store) writeLocked(r keystore.Record) error {
	switch {
	case r.Account != nil:
		a := *r.Account
		if _, ok := s.accounts[a.Name]; ok {
			return exists("account", a.Name)
		}
		s.accounts[a.Name] = copyAccount(a)
	case r.Key != nil:
		k := *r.Key
		if _, ok := s.accounts[k.Account]; !ok {
			return notFound("account", k.Account)
		}
		if _, ok := s.keys[k.ID]; ok {
			return exists("key", k.ID)
		}
		s.keys[k.ID] = copyKey(k)
	case r.Grant != nil:
		g := copyGrant(*r.Grant)
		row := grantRow{g.Subject, g.Repository}
		var old *keystore.Grant
		if cur, ok := s.grants[row]; ok {
			old = &cur
		}
		merged, err := keystore.MergeGrant(old, g)
		if err != nil {
			return err
		}
		s.grants[row] = merged
	default:
		o := *r.Ownership
		if _, ok := s.accounts[o.Owner]; !ok {
			return notFound("account", o.Owner)
		}
		if _, ok := s.owners[o.Repository]; ok {
			return exists("repository", o.Repository)
		}
		s.owners[o.Repository] = o
	}
	return nil
}

// page returns the items of a listing that match, offset and limited, and how many match.
func page[T any](items []T, match func(T) bool, offset, limit int) ([]T, int) {
	var out []T
	total := 0
	for _, it := range items {
		if !match(it) {
			continue
		}
		if total >= offset && len(out) < limit {
			out = append(out, it)
		}
		total++
	}
	return out, total
}

// PageGrants returns one page of the grant rows a query selects.
func (s *Store) PageGrants(_ context.Context, q keystore.GrantQuery) (keystore.GrantPage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var p keystore.GrantPage
	p.Grants, p.Total = page(s.grantsLocked(keystore.GrantFilter{}), q.Matches, q.Offset, q.Limit)
	return p, nil
}

// PageOwnership returns one page of the reservations a query selects.
func (s *Store) PageOwnership(_ context.Context, q keystore.OwnershipQuery) (keystore.OwnershipPage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var p keystore.OwnershipPage
	p.Ownerships, p.Total = page(sorted(s.owners, same), q.Matches, q.Offset, q.Limit)
	return p, nil
}

// PageAccounts returns one page of the accounts a query selects.
func (s *Store) PageAccounts(_ context.Context, q keystore.AccountQuery) (keystore.AccountPage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var p keystore.AccountPage
	p.Accounts, p.Total = page(sorted(s.accounts, copyAccount), q.Matches, q.Offset, q.Limit)
	return p, nil
}

// CreateSession stores a session, dropping those that have expired and, past maxPerAccount,
// the account's sessions that would end first.
func (s *Store) CreateSession(_ context.Context, sess keystore.Session, maxPerAccount int) error {
	if err := sess.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[sess.ID]; ok {
		return fmt.Errorf("session: %w", keystore.ErrExists)
	}
	now := s.now()
	maps.DeleteFunc(s.sessions, func(_ string, old keystore.Session) bool { return !now.Before(old.Expires) })
	var mine []keystore.Session
	for _, old := range s.sessions {
		if old.Account == sess.Account {
			mine = append(mine, old)
		}
	}
	for _, old := range keystore.SessionsToEnd(mine, maxPerAccount) {
		delete(s.sessions, old.ID)
	}
	s.sessions[sess.ID] = sess
	return nil
}

// GetSession reads a session that has not expired.
func (s *Store) GetSession(_ context.Context, id string) (keystore.Session, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sess, ok := s.sessions[id]
	if !ok || !s.now().Before(sess.Expires) {
		return keystore.Session{}, fmt.Errorf("session: %w", keystore.ErrNotFound)
	}
	return sess, nil
}

// DeleteSession removes a session.
func (s *Store) DeleteSession(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, id)
	return nil
}

// Ping answers until the store is closed.
func (s *Store) Ping(context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("memory store: %w: closed", keystore.ErrUnavailable)
	}
	return nil
}

// Close marks the store closed; its records stay readable by whoever still holds it.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
