package keystore

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// An export is JSON lines: a header, then every account, key (with its hash, expiry, revoked
// flag, last use and restrictions), grant and repository ownership, in that order and sorted
// within each kind, so that two exports of the same records are byte for byte equal, then (from
// version 2 on) an end line counting them.

// ExportFormat and ExportVersion identify the header line. Version 2 ends with an end line
// (ExportEnd); version 1, which has none, is still read.
const (
	ExportFormat  = "regoauth-export"
	ExportVersion = 2
)

// ExportHeader is the first line of an export.
type ExportHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// ExportEnd is the last line of an export: how many records of each kind precede it. An export
// cut short (a copy interrupted, an export that failed half way into a pipe) lacks it, or holds
// fewer records than it counts, even when it is cut at the end of a line: import then refuses
// it instead of loading part of a store as if it were all of it.
type ExportEnd struct {
	Accounts   int `json:"accounts"`
	Keys       int `json:"keys"`
	Grants     int `json:"grants"`
	Ownerships int `json:"ownerships"`
}

// Record is one line of an export; exactly one field is set.
type Record struct {
	Header    *ExportHeader `json:"export,omitempty"`
	End       *ExportEnd    `json:"end,omitempty"`
	Account   *Account      `json:"account,omitempty"`
	Key       *Key          `json:"key,omitempty"`
	Grant     *Grant        `json:"grant,omitempty"`
	Ownership *Ownership    `json:"ownership,omitempty"`
}

// count is how many of the fields of r are set.
func (r Record) count() int {
	n := 0
	for _, set := range []bool{r.Header != nil, r.End != nil, r.Account != nil, r.Key != nil, r.Grant != nil, r.Ownership != nil} {
		if set {
			n++
		}
	}
	return n
}

// Counts says how many records of each kind an export wrote out, or an import wrote into the
// store.
type Counts struct {
	Accounts, Keys, Grants, Ownerships int
	// Skipped are the records of an import the store already held identically: not written,
	// and not counted above.
	Skipped int
}

func (c Counts) String() string {
	s := fmt.Sprintf("%d accounts, %d keys, %d grants, %d repositories", c.Accounts, c.Keys, c.Grants, c.Ownerships)
	if c.Skipped > 0 {
		s += fmt.Sprintf("; %d records already present, left as they were", c.Skipped)
	}
	return s
}

// writeBatchSize is how many records one WriteBatch carries, and readBatchSize how many keys one
// GetKeys reads.
const (
	writeBatchSize = 500
	readBatchSize  = 1000
)

// Export writes every record of s to w.
func Export(ctx context.Context, s Store, w io.Writer) (Counts, error) {
	var c Counts
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(Record{Header: &ExportHeader{Format: ExportFormat, Version: ExportVersion}}); err != nil {
		return c, err
	}
	accounts, err := s.ListAccounts(ctx)
	if err == nil {
		c.Accounts, err = writeAll(enc, accounts, func(a *Account) Record { return Record{Account: a} })
	}
	if err != nil {
		return c, fmt.Errorf("exporting accounts: %w", err)
	}
	listed, err := s.ListKeys(ctx, "")
	if err != nil {
		return c, fmt.Errorf("listing keys: %w", err)
	}
	for start := 0; start < len(listed); start += readBatchSize {
		chunk := listed[start:min(start+readBatchSize, len(listed))]
		ids := make([]string, len(chunk))
		for i, k := range chunk {
			ids[i] = k.ID
		}
		keys, err := s.GetKeys(ctx, ids)
		if err == nil {
			var n int
			n, err = writeAll(enc, keys, func(k *Key) Record { return Record{Key: k} })
			c.Keys += n
		}
		if err != nil {
			return c, fmt.Errorf("exporting keys: %w", err)
		}
	}
	grants, err := s.ListGrants(ctx, GrantFilter{})
	if err == nil {
		c.Grants, err = writeAll(enc, grants, func(g *Grant) Record { return Record{Grant: g} })
	}
	if err != nil {
		return c, fmt.Errorf("exporting grants: %w", err)
	}
	owned, err := s.ListOwnership(ctx, "")
	if err == nil {
		c.Ownerships, err = writeAll(enc, owned, func(o *Ownership) Record { return Record{Ownership: o} })
	}
	if err != nil {
		return c, fmt.Errorf("exporting repositories: %w", err)
	}
	if err := enc.Encode(Record{End: &ExportEnd{Accounts: c.Accounts, Keys: c.Keys, Grants: c.Grants, Ownerships: c.Ownerships}}); err != nil {
		return c, err
	}
	return c, bw.Flush()
}

// WriteExport writes records as an export Import reads: the header, the records in the order
// given (accounts before the keys and reservations that need them), and the end line counting
// them. Tools that build records themselves (benchmarks, restores of hand-made data) use it.
func WriteExport(w io.Writer, recs []Record) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(Record{Header: &ExportHeader{Format: ExportFormat, Version: ExportVersion}}); err != nil {
		return err
	}
	var end ExportEnd
	for _, r := range recs {
		switch {
		case r.Account != nil:
			end.Accounts++
		case r.Key != nil:
			end.Keys++
		case r.Grant != nil:
			end.Grants++
		case r.Ownership != nil:
			end.Ownerships++
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if err := enc.Encode(Record{End: &end}); err != nil {
		return err
	}
	return bw.Flush()
}

// writeAll writes one line per record and returns how many it wrote.
func writeAll[T any](enc *json.Encoder, list []T, record func(*T) Record) (int, error) {
	for i := range list {
		if err := enc.Encode(record(&list[i])); err != nil {
			return i, err
		}
	}
	return len(list), nil
}

// importSet is a whole import file, read and checked before anything is written.
type importSet struct {
	accounts   []Account
	keys       []Key
	grants     []Grant
	ownerships []Ownership
}

// MaxImportLine bounds one line of an import file.
const MaxImportLine = 1 << 20

// Import reads an export from r and writes it into s. The whole input is parsed and checked
// first — syntax, every record's validity, duplicates, references to accounts, and conflicts
// with what s already holds — so bad input writes nothing. Records s already holds identically
// are skipped, so an import that stopped half way (the store went away, or its replicas did not
// confirm the records) is finished by running it again: a store that confirms its changes is
// asked to confirm the skipped ones too. Grants merge into existing rows, as PutGrant does. workers bounds concurrent writes.
func Import(ctx context.Context, s Store, r io.Reader, workers int) (Counts, error) {
	set, err := readImport(r)
	if err != nil {
		return Counts{}, err
	}
	skip, err := set.check(ctx, s)
	if err != nil {
		return Counts{}, err
	}
	c, err := set.write(ctx, s, skip, max(workers, 1))
	if err != nil || c.Skipped == 0 {
		return c, err
	}
	// The records found present may be those of an earlier run its store did not confirm;
	// writing nothing for them waited for nothing.
	if cf, ok := s.(Confirmer); ok {
		if err := cf.Confirm(ctx); err != nil {
			return c, fmt.Errorf("%d records were already present: %w", c.Skipped, err)
		}
	}
	return c, nil
}

func readImport(r io.Reader) (*importSet, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxImportLine)
	set := &importSet{}
	seen := map[string]int{}
	dup := func(line int, kind, id string) error {
		k := kind + " " + id
		if first, ok := seen[k]; ok {
			return fmt.Errorf("%w: %s %q already appears on line %d", ErrInvalid, kind, id, first)
		}
		seen[k] = line
		return nil
	}
	line, header, version := 0, false, 0
	var end *ExportEnd
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		if end != nil {
			return nil, fmt.Errorf("line %d: %w: a record after the end line", line, ErrInvalid)
		}
		var rec Record
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("line %d: %w: not a record: %v", line, ErrInvalid, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("line %d: %w: more than one JSON value", line, ErrInvalid)
		}
		if rec.count() != 1 {
			return nil, fmt.Errorf("line %d: %w: a record holds exactly one of export, account, key, grant, ownership, end", line, ErrInvalid)
		}
		if !header {
			if rec.Header == nil || rec.Header.Format != ExportFormat {
				return nil, fmt.Errorf("line %d: %w: not a regoauth export (the first line must be {\"export\":{\"format\":%q,\"version\":%d}})", line, ErrInvalid, ExportFormat, ExportVersion)
			}
			if rec.Header.Version != 1 && rec.Header.Version != ExportVersion {
				return nil, fmt.Errorf("line %d: %w: export version %d; this regoauth reads versions 1 to %d", line, ErrInvalid, rec.Header.Version, ExportVersion)
			}
			header, version = true, rec.Header.Version
			continue
		}
		var err error
		switch {
		case rec.Header != nil:
			err = fmt.Errorf("%w: a second header", ErrInvalid)
		case rec.End != nil && version == 1:
			err = fmt.Errorf("%w: an end line in a version 1 export, which has none", ErrInvalid)
		case rec.End != nil:
			end = rec.End
			read := ExportEnd{Accounts: len(set.accounts), Keys: len(set.keys), Grants: len(set.grants), Ownerships: len(set.ownerships)}
			if *end != read {
				err = fmt.Errorf("%w: the export counts %s but holds %s: it is incomplete or was edited; nothing was imported",
					ErrInvalid, Counts{Accounts: end.Accounts, Keys: end.Keys, Grants: end.Grants, Ownerships: end.Ownerships},
					Counts{Accounts: read.Accounts, Keys: read.Keys, Grants: read.Grants, Ownerships: read.Ownerships})
			}
		case rec.Account != nil:
			a := *rec.Account
			if err = a.Validate(); err == nil {
				err = dup(line, "account", a.Name)
			}
			set.accounts = append(set.accounts, a)
		case rec.Key != nil:
			k := *rec.Key
			if err = k.Validate(); err == nil {
				err = dup(line, "key", k.ID)
			}
			set.keys = append(set.keys, k)
		case rec.Grant != nil:
			g := *rec.Grant
			if err = g.Validate(); err == nil {
				err = dup(line, "grant", g.Subject.String()+" "+g.Repository)
			}
			set.grants = append(set.grants, g)
		case rec.Ownership != nil:
			o := *rec.Ownership
			if err = o.Validate(); err == nil {
				err = dup(line, "repository", o.Repository)
			}
			set.ownerships = append(set.ownerships, o)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return nil, fmt.Errorf("line %d: %w: longer than %d bytes, which no record is", line+1, ErrInvalid, MaxImportLine)
	} else if err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	if !header {
		return nil, fmt.Errorf("%w: empty input; expected a regoauth export", ErrInvalid)
	}
	if version >= 2 && end == nil {
		return nil, fmt.Errorf("%w: the export stops at line %d without its end line ({\"end\":…}): it was cut short; nothing was imported", ErrInvalid, line)
	}
	return set, nil
}

// check compares the set with the store and returns which records to skip (already present,
// identical). Accounts referred to by keys and ownership must be in the file or the store.
func (set *importSet) check(ctx context.Context, s Store) (map[string]bool, error) {
	skip := map[string]bool{}
	existing, err := s.ListAccounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the store: %w", err)
	}
	have := map[string]Account{}
	for _, a := range existing {
		have[a.Name] = a
	}
	known := map[string]bool{}
	for _, a := range set.accounts {
		known[a.Name] = true
		if old, ok := have[a.Name]; ok {
			if !a.sameAs(old) {
				return nil, fmt.Errorf("account %q: %w: groups, roles or disabled differ", a.Name, ErrConflict)
			}
			skip["account "+a.Name] = true
		}
	}
	for _, k := range set.keys {
		if _, ok := have[k.Account]; !ok && !known[k.Account] {
			return nil, fmt.Errorf("key %s: %w: its account %q is neither in the input nor in the store", k.ID, ErrInvalid, k.Account)
		}
	}
	for _, o := range set.ownerships {
		if _, ok := have[o.Owner]; !ok && !known[o.Owner] {
			return nil, fmt.Errorf("repository %q: %w: its owner %q is neither in the input nor in the store", o.Repository, ErrInvalid, o.Owner)
		}
	}

	listed, err := s.ListKeys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("reading the store: %w", err)
	}
	present := map[string]bool{}
	for _, k := range listed {
		present[k.ID] = true
	}
	for _, k := range set.keys {
		if !present[k.ID] {
			continue
		}
		old, err := s.GetKey(ctx, k.ID)
		if err != nil {
			return nil, fmt.Errorf("reading the store: %w", err)
		}
		if !k.sameAs(old) {
			return nil, fmt.Errorf("key %s: %w: the store holds another record with this id", k.ID, ErrConflict)
		}
		skip["key "+k.ID] = true
	}

	grants, err := s.ListGrants(ctx, GrantFilter{})
	if err != nil {
		return nil, fmt.Errorf("reading the store: %w", err)
	}
	rows := map[string]Grant{}
	for _, g := range grants {
		rows[g.Subject.String()+" "+g.Repository] = g
	}
	for _, g := range set.grants {
		id := g.Subject.String() + " " + g.Repository
		old, ok := rows[id]
		if !ok {
			continue
		}
		// Checked here as PutGrant would, so that a row whose end differs fails the import
		// before anything is written.
		if _, err := MergeGrant(&old, g); err != nil {
			return nil, err
		}
		if old.Expires.Equal(g.Expires) && slices.Equal(MergeActions(old.Actions, g.Actions), old.Actions) {
			skip["grant "+id] = true
		}
	}

	owned, err := s.ListOwnership(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("reading the store: %w", err)
	}
	owners := map[string]string{}
	for _, o := range owned {
		owners[o.Repository] = o.Owner
	}
	for _, o := range set.ownerships {
		if old, ok := owners[o.Repository]; ok {
			if old != o.Owner {
				return nil, fmt.Errorf("repository %q: %w: owned by %q in the store", o.Repository, ErrConflict, old)
			}
			skip["repository "+o.Repository] = true
		}
	}
	return skip, nil
}

func (set *importSet) write(ctx context.Context, s Store, skip map[string]bool, workers int) (Counts, error) {
	var c Counts
	var done atomic.Int64
	total := len(set.accounts) + len(set.keys) + len(set.grants) + len(set.ownerships)
	// Kinds go in order (keys and ownership need their accounts); the batches of a kind in
	// parallel.
	phase := func(n int, id func(i int) string, rec func(i int) Record) (written int, err error) {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(workers)
		var batch []Record
		flush := func() {
			recs := batch
			batch = nil
			g.Go(func() error {
				if err := s.WriteBatch(gctx, recs); err != nil {
					return err
				}
				done.Add(int64(len(recs)))
				return nil
			})
		}
		for i := range n {
			if skip[id(i)] {
				c.Skipped++
				done.Add(1)
				continue
			}
			written++
			if batch = append(batch, rec(i)); len(batch) == writeBatchSize {
				flush()
			}
		}
		if len(batch) > 0 {
			flush()
		}
		return written, g.Wait()
	}
	// A kind is counted once all of its records are written.
	n, err := phase(len(set.accounts), func(i int) string { return "account " + set.accounts[i].Name },
		func(i int) Record { return Record{Account: &set.accounts[i]} })
	if err == nil {
		c.Accounts = n
		n, err = phase(len(set.keys), func(i int) string { return "key " + set.keys[i].ID },
			func(i int) Record { return Record{Key: &set.keys[i]} })
	}
	if err == nil {
		c.Keys = n
		n, err = phase(len(set.grants), func(i int) string {
			return "grant " + set.grants[i].Subject.String() + " " + set.grants[i].Repository
		}, func(i int) Record { return Record{Grant: &set.grants[i]} })
	}
	if err == nil {
		c.Grants = n
		n, err = phase(len(set.ownerships), func(i int) string { return "repository " + set.ownerships[i].Repository },
			func(i int) Record { return Record{Ownership: &set.ownerships[i]} })
	}
	if err != nil {
		return c, fmt.Errorf("stopped after %d of %d records (run the same import again to finish it; records already imported are skipped): %w", done.Load(), total, err)
	}
	c.Ownerships = n
	return c, nil
}

// sameAs compares what an import can set on an existing account.
func (a Account) sameAs(b Account) bool {
	return a.Name == b.Name && slices.Equal(a.Groups, b.Groups) && slices.Equal(a.Roles, b.Roles) && a.Disabled == b.Disabled
}

// sameAs compares key records; last use is left out, since a key keeps being used after an
// export is taken.
func (k Key) sameAs(b Key) bool {
	return k.ID == b.ID && k.Account == b.Account && k.Name == b.Name && slices.Equal(k.Hash, b.Hash) &&
		k.Created.Equal(b.Created) && k.Expires.Equal(b.Expires) && k.Revoked == b.Revoked &&
		slices.Equal(k.Restrictions.Actions, b.Restrictions.Actions) &&
		slices.Equal(k.Restrictions.Repositories, b.Restrictions.Repositories) &&
		slices.Equal(k.Restrictions.CIDRs, b.Restrictions.CIDRs)
}
