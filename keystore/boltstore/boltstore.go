// Package boltstore is the embedded keystore backend: one bbolt file, for a single node and
// for `regoauth dev`. Every write is one bbolt transaction, so a crash never leaves half a
// record behind. It knows the keystore contract and nothing else of regoauth.
package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/regoauth/regoauth/keystore"
)

var (
	bucketAccounts  = []byte("accounts")        // name -> Account
	bucketKeys      = []byte("keys")            // id -> Key
	bucketKeysByAcc = []byte("keys_by_account") // account \x00 id -> nil
	bucketGrants    = []byte("grants")          // subject \x00 repository -> Grant
	bucketGrantsOn  = []byte("grants_on")       // repository \x00 subject -> nil
	bucketOwners    = []byte("owners")          // repository -> Ownership
	bucketOwnedBy   = []byte("owned_by")        // owner \x00 repository -> nil
	bucketSessions  = []byte("sessions")        // id -> Session
	allBuckets      = [][]byte{bucketAccounts, bucketKeys, bucketKeysByAcc, bucketGrants, bucketGrantsOn, bucketOwners, bucketOwnedBy, bucketSessions}
)

// Store is a keystore.Store in one bbolt file.
type Store struct {
	db    *bolt.DB
	cache *keystore.PrincipalCache // nil when off
	now   func() time.Time
}

// Options configure a Store.
type Options struct {
	// CacheTTL keeps loaded principals in memory for up to this long (0: no cache). The file
	// has one writer, this process, and every write empties the cache, so a cached principal
	// is never staler than the last write: the TTL only bounds memory.
	CacheTTL  time.Duration
	CacheSize int
	// NegativeTTL keeps the ids of keys the file did not have for up to this long (0: off),
	// emptied by every write like the principals, so that a client repeating an unknown key
	// does not cost a read each time.
	NegativeTTL time.Duration
	// Now is the clock grant ends are compared with (default time.Now).
	Now func() time.Time
}

var _ keystore.Store = (*Store)(nil)

// Open opens or creates the store at path. It fails after a second if another process holds
// the file.
func Open(path string) (*Store, error) { return OpenWith(path, Options{}) }

// OpenWith is Open with options.
func OpenWith(path string, opts Options) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("opening %s: the file is in use by another process", path)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return indexGrants(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising %s: %w", path, err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cache := keystore.NewPrincipalCache(keystore.CacheOptions{TTL: opts.CacheTTL, Size: opts.CacheSize, NegativeTTL: opts.NegativeTTL, Now: opts.Now})
	return &Store{db: db, cache: cache, now: opts.Now}, nil
}

// indexGrants fills the by-repository index of a file written before it existed. A file that
// has grants has index entries for all of them, or none at all.
func indexGrants(tx *bolt.Tx) error {
	on := tx.Bucket(bucketGrantsOn)
	if k, _ := on.Cursor().First(); k != nil {
		return nil
	}
	return tx.Bucket(bucketGrants).ForEach(func(k, _ []byte) error {
		subject, repo, ok := bytes.Cut(k, []byte{0})
		if !ok {
			return fmt.Errorf("grant key %q has no separator", k)
		}
		return on.Put(join(string(repo), string(subject)), nil)
	})
}

// update runs a write transaction, then empties the principal cache: after the commit, so a
// lookup that read the old records cannot put them back (see keystore.PrincipalCache).
func (s *Store) update(fn func(*bolt.Tx) error) error {
	err := s.commit(fn)
	s.cache.Purge()
	return err
}

// commit runs a write transaction; a failure of the disk is keystore.ErrNotWritable.
func (s *Store) commit(fn func(*bolt.Tx) error) error {
	err := s.db.Update(fn)
	if errno, ok := diskFailure(err); ok {
		// bbolt rolled the transaction back: the file holds the last committed state and
		// reads go on from it. The reason alone is kept, not the file's path.
		return fmt.Errorf("%w: %w", keystore.ErrNotWritable, errno)
	}
	return err
}

// diskFailure reports whether a write failed because of the disk rather than the records: a
// full or read-only file system, an exhausted quota, an I/O error.
func diskFailure(err error) (syscall.Errno, bool) {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return 0, false
	}
	switch errno {
	case syscall.ENOSPC, syscall.EROFS, syscall.EDQUOT, syscall.EIO:
		return errno, true
	}
	return 0, false
}

// Ping reports whether the file is still open: a bolt store has nothing else to reach.
func (s *Store) Ping(context.Context) error {
	return s.db.View(func(*bolt.Tx) error { return nil })
}

// Close releases the file.
func (s *Store) Close() error { return s.db.Close() }

func join(a, b string) []byte { return []byte(a + "\x00" + b) }

func get[T any](b *bolt.Bucket, key []byte, what string) (T, error) {
	var v T
	raw := b.Get(key)
	if raw == nil {
		return v, fmt.Errorf("%s %q: %w", what, bytes.ReplaceAll(key, []byte{0}, []byte{' '}), keystore.ErrNotFound)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("decoding %s: %w", what, err)
	}
	return v, nil
}

func put(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// scan decodes every value under prefix.
func scan[T any](b *bolt.Bucket, prefix []byte) ([]T, error) {
	var out []T
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var t T
		if err := json.Unmarshal(v, &t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// suffixes lists the part after prefix of every key under prefix.
func suffixes(b *bolt.Bucket, prefix []byte) []string {
	var out []string
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out
}

func grantPrefix(s keystore.Subject) []byte { return join(s.String(), "") }

// LoadPrincipal reads key, account and live grants in one read transaction.
func (s *Store) LoadPrincipal(_ context.Context, keyID string) (keystore.Principal, error) {
	return s.cache.Load(keyID, func() (keystore.Principal, error) { return s.loadPrincipal(keyID, s.now()) })
}

func (s *Store) loadPrincipal(keyID string, now time.Time) (keystore.Principal, error) {
	var p keystore.Principal
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if p.Key, err = get[keystore.Key](tx.Bucket(bucketKeys), []byte(keyID), "key"); err != nil {
			return err
		}
		if p.Account, err = get[keystore.Account](tx.Bucket(bucketAccounts), []byte(p.Key.Account), "account"); err != nil {
			return err
		}
		grants := tx.Bucket(bucketGrants)
		subjects := []keystore.Subject{{Kind: keystore.SubjectAccount, Name: p.Account.Name}}
		for _, g := range p.Account.Groups {
			subjects = append(subjects, keystore.Subject{Kind: keystore.SubjectGroup, Name: g})
		}
		for _, sub := range subjects {
			gs, err := scan[keystore.Grant](grants, grantPrefix(sub))
			if err != nil {
				return err
			}
			p.Grants = append(p.Grants, keystore.LiveGrants(gs, now)...)
		}
		p.Owned = suffixes(tx.Bucket(bucketOwnedBy), join(p.Account.Name, ""))
		return nil
	})
	return p, err
}

// CreateAccount stores a new account.
func (s *Store) CreateAccount(_ context.Context, a keystore.Account) error {
	return s.write(keystore.Record{Account: &a})
}

func createAccount(tx *bolt.Tx, a keystore.Account) error {
	b := tx.Bucket(bucketAccounts)
	if b.Get([]byte(a.Name)) != nil {
		return fmt.Errorf("account %q: %w", a.Name, keystore.ErrExists)
	}
	return put(b, []byte(a.Name), a)
}

// GetAccount reads one account.
func (s *Store) GetAccount(_ context.Context, name string) (a keystore.Account, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		a, err = get[keystore.Account](tx.Bucket(bucketAccounts), []byte(name), "account")
		return err
	})
	return a, err
}

// ListAccounts lists every account by name.
func (s *Store) ListAccounts(_ context.Context) (out []keystore.Account, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		out, err = scan[keystore.Account](tx.Bucket(bucketAccounts), nil)
		return err
	})
	return out, err
}

// PageAccounts decodes an account only when its raw record contains the filter text (then it
// is checked for real) or when it is on the page.
func (s *Store) PageAccounts(_ context.Context, q keystore.AccountQuery) (page keystore.AccountPage, err error) {
	text := []byte(q.Contains)
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAccounts).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if !bytes.Contains(v, text) {
				continue
			}
			var a *keystore.Account
			decode := func() error {
				if a == nil {
					a = new(keystore.Account)
					if err := json.Unmarshal(v, a); err != nil {
						return fmt.Errorf("decoding account %q: %w", k, err)
					}
				}
				return nil
			}
			if len(text) > 0 {
				if err := decode(); err != nil {
					return err
				}
				if !q.Matches(*a) {
					continue
				}
			}
			if page.Total >= q.Offset && len(page.Accounts) < q.Limit {
				if err := decode(); err != nil {
					return err
				}
				page.Accounts = append(page.Accounts, *a)
			}
			page.Total++
		}
		return nil
	})
	return page, err
}

// UpdateAccount replaces the mutable fields of an existing account.
func (s *Store) UpdateAccount(_ context.Context, a keystore.Account) error {
	if err := a.Validate(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		old, err := get[keystore.Account](b, []byte(a.Name), "account")
		if err != nil {
			return err
		}
		old.Groups, old.Roles, old.Disabled = a.Groups, a.Roles, a.Disabled
		return put(b, []byte(a.Name), old)
	})
}

// ChangeAccount applies ch to an existing account in one write transaction.
func (s *Store) ChangeAccount(_ context.Context, name string, ch keystore.AccountChange) (keystore.Account, error) {
	if err := ch.Validate(name); err != nil {
		return keystore.Account{}, err
	}
	var a keystore.Account
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		old, err := get[keystore.Account](b, []byte(name), "account")
		if err != nil {
			return err
		}
		a = ch.Apply(old)
		return put(b, []byte(name), a)
	})
	if err != nil {
		return keystore.Account{}, err
	}
	return a, nil
}

// CreateKey stores a new key for an existing account.
func (s *Store) CreateKey(_ context.Context, k keystore.Key) error {
	return s.write(keystore.Record{Key: &k})
}

// CreateKeyWithin stores a new key, refused when its account already holds maxLive keys live
// at the store's clock (no bound when maxLive <= 0), counted in the transaction that writes it.
func (s *Store) CreateKeyWithin(_ context.Context, k keystore.Key, maxLive int) error {
	if err := k.Validate(); err != nil {
		return err
	}
	now := s.now()
	return s.update(func(tx *bolt.Tx) error {
		if maxLive > 0 {
			keys, live := tx.Bucket(bucketKeys), 0
			for _, id := range suffixes(tx.Bucket(bucketKeysByAcc), join(k.Account, "")) {
				held, err := get[keystore.Key](keys, []byte(id), "key")
				if err != nil {
					return err
				}
				if held.Live(now) {
					live++
				}
			}
			if live >= maxLive {
				return keystore.KeysLimit(k.Account, live)
			}
		}
		return createKey(tx, k)
	})
}

func createKey(tx *bolt.Tx, k keystore.Key) error {
	if tx.Bucket(bucketAccounts).Get([]byte(k.Account)) == nil {
		return fmt.Errorf("account %q: %w", k.Account, keystore.ErrNotFound)
	}
	keys := tx.Bucket(bucketKeys)
	if keys.Get([]byte(k.ID)) != nil {
		return fmt.Errorf("key %q: %w", k.ID, keystore.ErrExists)
	}
	if err := put(keys, []byte(k.ID), k); err != nil {
		return err
	}
	return tx.Bucket(bucketKeysByAcc).Put(join(k.Account, k.ID), nil)
}

// write is a single write: one record, checked, in one transaction.
func (s *Store) write(r keystore.Record) error {
	if err := r.Validate(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error { return writeRecord(tx, r) })
}

// WriteBatch writes records in one transaction (one fsync for the whole batch), each as its
// single write would. A refused record writes nothing, since every write checks before it
// puts; the others are kept.
func (s *Store) WriteBatch(_ context.Context, recs []keystore.Record) error {
	if err := keystore.ValidateBatch(recs); err != nil {
		return err
	}
	var first error
	err := s.update(func(tx *bolt.Tx) error {
		for _, r := range recs {
			if err := writeRecord(tx, r); err != nil && first == nil {
				first = err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return first
}

// writeRecord writes the one record r carries, checked by Record.Validate.
func writeRecord(tx *bolt.Tx, r keystore.Record) error {
	switch {
	case r.Account != nil:
		return createAccount(tx, *r.Account)
	case r.Key != nil:
		return createKey(tx, *r.Key)
	case r.Grant != nil:
		return putGrant(tx, *r.Grant)
	}
	return reserve(tx, *r.Ownership, 0)
}

// GetKey reads one key, hash included.
func (s *Store) GetKey(_ context.Context, id string) (k keystore.Key, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		k, err = get[keystore.Key](tx.Bucket(bucketKeys), []byte(id), "key")
		return err
	})
	return k, err
}

// GetKeys reads keys, hashes included, in one read transaction; missing ids are left out.
func (s *Store) GetKeys(_ context.Context, ids []string) (out []keystore.Key, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		for _, id := range ids {
			k, err := get[keystore.Key](b, []byte(id), "key")
			if errors.Is(err, keystore.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, k)
		}
		return nil
	})
	return out, err
}

// ListKeys lists keys without hashes, ordered by id.
func (s *Store) ListKeys(_ context.Context, account string) (out []keystore.Key, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		keys := tx.Bucket(bucketKeys)
		if account == "" {
			out, err = scan[keystore.Key](keys, nil)
		} else {
			for _, id := range suffixes(tx.Bucket(bucketKeysByAcc), join(account, "")) {
				k, err := get[keystore.Key](keys, []byte(id), "key")
				if err != nil {
					return err
				}
				out = append(out, k)
			}
		}
		return err
	})
	for i := range out {
		out[i] = out[i].Redacted()
	}
	slices.SortFunc(out, func(a, b keystore.Key) int { return strings.Compare(a.ID, b.ID) })
	return out, err
}

// RevokeKey marks a key revoked. The record stays, until DeleteKeys removes it.
func (s *Store) RevokeKey(_ context.Context, id string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		k, err := get[keystore.Key](b, []byte(id), "key")
		if err != nil {
			return err
		}
		k.Revoked = true
		return put(b, []byte(id), k)
	})
}

// DeleteKeys removes dead keys and their index entries in one transaction: all of them or,
// when one is live at the store's clock, none.
func (s *Store) DeleteKeys(_ context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	now := s.now()
	return s.update(func(tx *bolt.Tx) error {
		keys, byAccount := tx.Bucket(bucketKeys), tx.Bucket(bucketKeysByAcc)
		var dead []keystore.Key
		for _, id := range ids {
			k, err := get[keystore.Key](keys, []byte(id), "key")
			if errors.Is(err, keystore.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if k.Live(now) {
				return keystore.KeyLive(id)
			}
			dead = append(dead, k)
		}
		for _, k := range dead {
			if err := keys.Delete([]byte(k.ID)); err != nil {
				return err
			}
			if err := byAccount.Delete(join(k.Account, k.ID)); err != nil {
				return err
			}
		}
		return nil
	})
}

// TouchKeys records last-used times in one transaction, never moving one backwards.
func (s *Store) TouchKeys(_ context.Context, used map[string]time.Time) error {
	// Last-used times are not what the cache serves: no need to empty it.
	return s.commit(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		for id, t := range used {
			k, err := get[keystore.Key](b, []byte(id), "key")
			if errors.Is(err, keystore.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if t.After(k.LastUsed) {
				k.LastUsed = t
				if err := put(b, []byte(id), k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// PutGrant merges the grant into the row for (subject, repository) (keystore.MergeGrant), in
// the transaction that checks the guard.
func (s *Store) PutGrant(_ context.Context, g keystore.Grant, guard keystore.Guard) error {
	r := keystore.Record{Grant: &g}
	if err := r.Validate(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		if err := checkGuard(tx, g.Repository, guard); err != nil {
			return err
		}
		return writeRecord(tx, r)
	})
}

// checkGuard fails with the guard's error unless repository is owned as it says.
func checkGuard(tx *bolt.Tx, repository string, guard keystore.Guard) error {
	if _, checked := guard.Checked(); !checked {
		return nil
	}
	owner := ""
	o, err := get[keystore.Ownership](tx.Bucket(bucketOwners), []byte(repository), "repository")
	switch {
	case err == nil:
		owner = o.Owner
	case !errors.Is(err, keystore.ErrNotFound):
		return err
	}
	if !guard.Holds(owner) {
		return keystore.OwnerChanged(repository)
	}
	return nil
}

func putGrant(tx *bolt.Tx, g keystore.Grant) error {
	b := tx.Bucket(bucketGrants)
	key := join(g.Subject.String(), g.Repository)
	old, err := get[keystore.Grant](b, key, "grant")
	var row *keystore.Grant
	switch {
	case err == nil:
		row = &old
	case !errors.Is(err, keystore.ErrNotFound):
		return err
	}
	merged, err := keystore.MergeGrant(row, g)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketGrantsOn).Put(join(g.Repository, g.Subject.String()), nil); err != nil {
		return err
	}
	return put(b, key, merged)
}

// RemoveGrant removes actions from a row, or the row.
func (s *Store) RemoveGrant(_ context.Context, subject keystore.Subject, repository string, actions []string, guard keystore.Guard) error {
	return s.update(func(tx *bolt.Tx) error {
		if err := checkGuard(tx, repository, guard); err != nil {
			return err
		}
		b := tx.Bucket(bucketGrants)
		key := join(subject.String(), repository)
		g, err := get[keystore.Grant](b, key, "grant")
		if err != nil {
			return err
		}
		if len(actions) > 0 {
			g.Actions = keystore.SubtractActions(g.Actions, actions)
		}
		if len(actions) == 0 || len(g.Actions) == 0 {
			if err := tx.Bucket(bucketGrantsOn).Delete(join(repository, subject.String())); err != nil {
				return err
			}
			return b.Delete(key)
		}
		return put(b, key, g)
	})
}

// ListGrants lists grants matching f, ordered by subject then repository. By repository alone
// it reads only that repository's rows, through the index.
func (s *Store) ListGrants(_ context.Context, f keystore.GrantFilter) (out []keystore.Grant, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		grants := tx.Bucket(bucketGrants)
		if f.Subject == nil && f.Repository != "" {
			for _, subject := range suffixes(tx.Bucket(bucketGrantsOn), join(f.Repository, "")) {
				g, err := get[keystore.Grant](grants, join(subject, f.Repository), "grant")
				if errors.Is(err, keystore.ErrNotFound) {
					continue // the rows are the truth; an index entry without one names nothing
				}
				if err != nil {
					return err
				}
				out = append(out, g)
			}
			return nil
		}
		var prefix []byte
		if f.Subject != nil {
			prefix = grantPrefix(*f.Subject)
		}
		all, err := scan[keystore.Grant](grants, prefix)
		for _, g := range all {
			if f.Repository == "" || g.Repository == f.Repository {
				out = append(out, g)
			}
		}
		return err
	})
	return out, err
}

// PageGrants selects rows by their keys (subject and repository), decoding a row only when
// it is on the page, or when the query asks about ends and the row has one.
func (s *Store) PageGrants(_ context.Context, q keystore.GrantQuery) (page keystore.GrantPage, err error) {
	subject, repo := []byte(q.Subject), []byte(q.Repository)
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketGrants).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			sub, r, _ := bytes.Cut(k, []byte{0})
			if !bytes.Contains(sub, subject) || !bytes.Contains(r, repo) {
				continue
			}
			var g *keystore.Grant
			if q.Ends != keystore.AnyEnd {
				if !bytes.Contains(v, []byte(`"expires"`)) {
					continue // no end: neither to come nor passed
				}
				g = new(keystore.Grant)
				if err := json.Unmarshal(v, g); err != nil {
					return fmt.Errorf("decoding grant: %w", err)
				}
				if !q.EndMatches(*g) {
					continue
				}
			}
			if page.Total >= q.Offset && len(page.Grants) < q.Limit {
				if g == nil {
					g = new(keystore.Grant)
					if err := json.Unmarshal(v, g); err != nil {
						return fmt.Errorf("decoding grant: %w", err)
					}
				}
				page.Grants = append(page.Grants, *g)
			}
			page.Total++
		}
		return nil
	})
	return page, err
}

// Reserve records ownership of a repository name, within maxOwned per owner when it is > 0.
func (s *Store) Reserve(_ context.Context, o keystore.Ownership, maxOwned int) error {
	if err := o.Validate(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error { return reserve(tx, o, maxOwned) })
}

// reserve writes o, refusing when the owner already holds maxOwned names (0: no limit): the
// count is read in the transaction that writes.
func reserve(tx *bolt.Tx, o keystore.Ownership, maxOwned int) error {
	if tx.Bucket(bucketAccounts).Get([]byte(o.Owner)) == nil {
		return fmt.Errorf("account %q: %w", o.Owner, keystore.ErrNotFound)
	}
	b := tx.Bucket(bucketOwners)
	if b.Get([]byte(o.Repository)) != nil {
		return fmt.Errorf("repository %q: %w", o.Repository, keystore.ErrExists)
	}
	if maxOwned > 0 && len(suffixes(tx.Bucket(bucketOwnedBy), join(o.Owner, ""))) >= maxOwned {
		return fmt.Errorf("account %q holds %d reservations: %w", o.Owner, maxOwned, keystore.ErrLimit)
	}
	if err := put(b, []byte(o.Repository), o); err != nil {
		return err
	}
	return tx.Bucket(bucketOwnedBy).Put(join(o.Owner, o.Repository), nil)
}

// GetOwnership reads who owns a repository.
func (s *Store) GetOwnership(_ context.Context, repository string) (o keystore.Ownership, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		o, err = get[keystore.Ownership](tx.Bucket(bucketOwners), []byte(repository), "repository")
		return err
	})
	return o, err
}

// ListOwnership lists repositories owned by owner, or all when owner is empty.
func (s *Store) ListOwnership(_ context.Context, owner string) (out []keystore.Ownership, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		owners := tx.Bucket(bucketOwners)
		if owner == "" {
			out, err = scan[keystore.Ownership](owners, nil)
			return err
		}
		for _, repo := range suffixes(tx.Bucket(bucketOwnedBy), join(owner, "")) {
			o, err := get[keystore.Ownership](owners, []byte(repo), "repository")
			if err != nil {
				return err
			}
			out = append(out, o)
		}
		return nil
	})
	return out, err
}

// PageOwnership selects reservations by repository (the key) and owner without decoding a
// record unless the owner filter may match it or it is on the page.
func (s *Store) PageOwnership(_ context.Context, q keystore.OwnershipQuery) (page keystore.OwnershipPage, err error) {
	repo, owner := []byte(q.Repository), []byte(q.Owner)
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOwners).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if !bytes.Contains(k, repo) || !bytes.Contains(v, owner) {
				continue
			}
			var o *keystore.Ownership
			decode := func() error {
				if o == nil {
					o = new(keystore.Ownership)
					if err := json.Unmarshal(v, o); err != nil {
						return fmt.Errorf("decoding repository %q: %w", k, err)
					}
				}
				return nil
			}
			if len(owner) > 0 {
				// The raw record contained the text; it must be in the owner.
				if err := decode(); err != nil {
					return err
				}
				if !q.Matches(*o) {
					continue
				}
			}
			if page.Total >= q.Offset && len(page.Ownerships) < q.Limit {
				if err := decode(); err != nil {
					return err
				}
				page.Ownerships = append(page.Ownerships, *o)
			}
			page.Total++
		}
		return nil
	})
	return page, err
}

// Release removes ownership of a repository and, in the same transaction, every grant on
// exactly that name, found through the by-repository index.
func (s *Store) Release(_ context.Context, repository string, guard keystore.Guard) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOwners)
		o, err := get[keystore.Ownership](b, []byte(repository), "repository")
		if err != nil {
			return err
		}
		if !guard.Holds(o.Owner) {
			return keystore.OwnerChanged(repository)
		}
		if err := b.Delete([]byte(repository)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketOwnedBy).Delete(join(o.Owner, repository)); err != nil {
			return err
		}
		grants, on := tx.Bucket(bucketGrants), tx.Bucket(bucketGrantsOn)
		for _, subject := range suffixes(on, join(repository, "")) {
			if err := grants.Delete(join(subject, repository)); err != nil {
				return err
			}
			if err := on.Delete(join(repository, subject)); err != nil {
				return err
			}
		}
		return nil
	})
}

// CreateSession stores a session and drops the ones that have expired, so the bucket holds no
// more than the sessions alive now, and past maxPerAccount the account's sessions that would
// end first.
func (s *Store) CreateSession(_ context.Context, sess keystore.Session, maxPerAccount int) error {
	if err := sess.Validate(); err != nil {
		return err
	}
	now := s.now()
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		if b.Get([]byte(sess.ID)) != nil {
			return fmt.Errorf("session: %w", keystore.ErrExists)
		}
		var ended [][]byte
		var mine []keystore.Session
		err := b.ForEach(func(k, v []byte) error {
			var old keystore.Session
			switch {
			case json.Unmarshal(v, &old) != nil || !now.Before(old.Expires):
				ended = append(ended, bytes.Clone(k))
			case old.Account == sess.Account:
				mine = append(mine, old)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, old := range keystore.SessionsToEnd(mine, maxPerAccount) {
			ended = append(ended, []byte(old.ID))
		}
		for _, k := range ended {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return put(b, []byte(sess.ID), sess)
	})
}

// GetSession reads a session that has not expired.
func (s *Store) GetSession(_ context.Context, id string) (sess keystore.Session, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		sess, err = get[keystore.Session](tx.Bucket(bucketSessions), []byte(id), "session")
		return err
	})
	if err == nil && !s.now().Before(sess.Expires) {
		return keystore.Session{}, fmt.Errorf("session: %w", keystore.ErrNotFound)
	}
	return sess, err
}

// DeleteSession removes a session.
func (s *Store) DeleteSession(_ context.Context, id string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSessions).Delete([]byte(id)) })
}
