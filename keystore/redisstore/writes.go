package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore"
)

// writeCall is one record write as one script call: the script, its keys and arguments, what
// to call it in errors, the records a NOTFOUND/EXISTS reply may name (e.g. {"account":
// "alice"}), and the invalidation message of its change ("" when it invalidates nothing).
// Single writes and batches are built by the same recordWrite, so a batch checks and writes
// each record exactly as its single write does.
type writeCall struct {
	op      string
	script  *redis.Script
	keys    []string
	args    []any
	what    map[string]string
	changed string
}

// recordWrite builds the write of the one record r carries; r has passed Record.Validate.
func (s *Store) recordWrite(r keystore.Record) (writeCall, error) {
	switch {
	case r.Account != nil:
		a := *r.Account
		rec, groups, roles, disabled, err := encodeAccount(a)
		if err != nil {
			return writeCall{}, err
		}
		return writeCall{op: "create account", script: createAccount,
			keys: []string{s.accountKey(a.Name), s.accountsKey()},
			args: []any{a.Name, rec, groups, roles, disabled},
			what: map[string]string{"account": a.Name}}, nil
	case r.Key != nil:
		k := *r.Key
		rec, err := encodeKey(k)
		if err != nil {
			return writeCall{}, err
		}
		lastUsed := ""
		if !k.LastUsed.IsZero() {
			lastUsed = nanos(k.LastUsed)
		}
		// Replicas may remember the id as unknown: the script's message makes them forget it.
		msg := keyChanged(k.ID)
		return writeCall{op: "create key", script: createKey,
			keys:    []string{s.keyKey(k.ID), s.accountKey(k.Account), s.keysOfKey(k.Account), s.allKeysKey()},
			args:    []any{k.ID, rec, k.Account, flag(k.Revoked), lastUsed, s.channel, msg},
			what:    map[string]string{"account": k.Account, "key": k.ID},
			changed: msg}, nil
	case r.Grant != nil:
		return s.putGrantWrite(*r.Grant, keystore.Unguarded), nil
	}
	return s.reserveWrite(*r.Ownership, 0)
}

// reserveWrite is a reservation, refused when the owner already holds maxOwned names (0: no
// limit).
func (s *Store) reserveWrite(o keystore.Ownership, maxOwned int) (writeCall, error) {
	rec, err := json.Marshal(o)
	if err != nil {
		return writeCall{}, err
	}
	msg := accountChanged(o.Owner)
	return writeCall{op: "reserve", script: reserve,
		keys:    []string{s.ownerKey(o.Repository), s.ownedByKey(o.Owner), s.reposKey(), s.accountKey(o.Owner)},
		args:    []any{s.channel, msg, o.Repository, string(rec), maxOwned},
		what:    map[string]string{"account": o.Owner, "repository": o.Repository, "reservations": o.Owner},
		changed: msg}, nil
}

// putGrantWrite is the put of g, guarded.
func (s *Store) putGrantWrite(g keystore.Grant, guard keystore.Guard) writeCall {
	// putGrant takes the row's end before the actions.
	w := s.grantWrite("put grant", putGrant, g.Subject, g.Repository, guard, nil)
	w.args = append(w.args, grantEnd(g.Expires))
	for _, a := range g.Actions {
		w.args = append(w.args, a)
	}
	return w
}

// grantWrite is a put or a removal of actions on the row for (subject, repository).
func (s *Store) grantWrite(op string, script *redis.Script, subject keystore.Subject, repository string, guard keystore.Guard, actions []string) writeCall {
	msg := subjectChanged(subject)
	args := []any{s.channel, msg, subject.String(), repository, guardArg(guard)}
	for _, a := range actions {
		args = append(args, a)
	}
	return writeCall{op: op, script: script,
		keys:    []string{s.grantsKey(subject.String()), s.subjectsKey(), s.grantsOnKey(repository), s.ownerKey(repository)},
		args:    args,
		what:    map[string]string{"grant": subject.String() + " " + repository, "owner": repository},
		changed: msg}
}

// guardArg is a guard as the scripts read it (guardHolds).
func guardArg(g keystore.Guard) string {
	owner, checked := g.Checked()
	if !checked {
		return ""
	}
	return "=" + owner
}

// run makes one write, then evicts what it changed from this replica's cache.
func (s *Store) run(ctx context.Context, w writeCall) error {
	err := s.exec(ctx, func(c writer) error {
		return w.script.Run(ctx, c, w.keys, w.args...).Err()
	})
	if w.changed != "" {
		s.changed(w.changed)
	}
	return s.fail(w.op, err, w.what)
}

// write is a single write of one record, checked first.
func (s *Store) write(ctx context.Context, r keystore.Record) error {
	if err := r.Validate(); err != nil {
		return err
	}
	w, err := s.recordWrite(r)
	if err != nil {
		return err
	}
	return s.run(ctx, w)
}

// WriteBatch writes many records in one pipeline: each record is still its own atomic script,
// checked like a single write, but a whole batch costs one round trip. Records run in order,
// so an account may precede its keys in the same batch. Import and bulk loading use it; a
// million records load in seconds instead of minutes. It returns the first failure, after the
// other records of the batch ran. With confirm_replicas the records written are waited for
// whether or not another failed, and their being unconfirmed is returned with the failure.
func (s *Store) WriteBatch(ctx context.Context, recs []keystore.Record) error {
	if err := keystore.ValidateBatch(recs); err != nil {
		return err
	}
	writes := make([]writeCall, len(recs))
	for i, r := range recs {
		w, err := s.recordWrite(r)
		if err != nil {
			return err
		}
		writes[i] = w
	}
	if len(writes) == 0 {
		return nil
	}
	cmds := make([]*redis.Cmd, len(writes))
	wrote := false // some records were written while others failed
	err := s.exec(ctx, func(c writer) error {
		pipe := c.Pipeline()
		for i, w := range writes {
			// Eval, not EvalSha: a pipeline cannot fall back when a server lacks the script.
			cmds[i] = w.script.Eval(ctx, pipe, w.keys, w.args...)
		}
		_, err := pipe.Exec(ctx)
		if err != nil && slices.ContainsFunc(cmds, func(c *redis.Cmd) bool { return c.Err() == nil }) {
			// The records written must be confirmed as those of a batch without failures are:
			// the failure is told after the wait.
			wrote = true
			return nil
		}
		return err
	})
	s.changed("*")
	var failed error // the first record that failed
	for i, c := range cmds {
		if c == nil { // the batch never ran: no connection to the primary
			break
		}
		if cerr := c.Err(); cerr != nil {
			failed = s.fail(writes[i].op, cerr, writes[i].what)
			break
		}
	}
	switch {
	case failed == nil:
		return s.fail("write batch", err, nil)
	case wrote && err != nil:
		// One line, both facts: a record failed, and those written are not confirmed.
		return fmt.Errorf("%w; %w", failed, s.fail("write batch", err, nil))
	}
	return failed
}
