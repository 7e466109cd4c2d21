package redisstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore"
)

// WriteBatch writes many records (accounts, keys, grants, reservations) in one pipeline: each
// record is still its own atomic script, checked like a single write, but a whole batch costs
// one round trip. Records run in order, so an account may precede its keys in the same batch.
// Import and bulk loading use it; a million records load in seconds instead of minutes. It
// returns the first failure, after the other records of the batch ran.
func (s *Store) WriteBatch(ctx context.Context, recs []keystore.Record) error {
	type pending struct {
		cmd  *redis.Cmd
		what map[string]string
		op   string
	}
	pipe := s.client.Pipeline()
	cmds := make([]pending, 0, len(recs))
	for _, r := range recs {
		switch {
		case r.Account != nil:
			a := *r.Account
			if err := a.Validate(); err != nil {
				return err
			}
			rec, groups, roles, disabled, err := encodeAccount(a)
			if err != nil {
				return err
			}
			// Eval, not EvalSha: a pipeline cannot fall back when a server lacks the script.
			cmd := createAccount.Eval(ctx, pipe, []string{s.accountKey(a.Name), s.accountsKey()}, a.Name, rec, groups, roles, disabled)
			cmds = append(cmds, pending{cmd, map[string]string{"account": a.Name}, "create account"})
		case r.Key != nil:
			k := *r.Key
			if err := k.Validate(); err != nil {
				return err
			}
			rec, err := encodeKey(k)
			if err != nil {
				return err
			}
			lastUsed := ""
			if !k.LastUsed.IsZero() {
				lastUsed = nanos(k.LastUsed)
			}
			keys := []string{s.keyKey(k.ID), s.accountKey(k.Account), s.keysOfKey(k.Account), s.allKeysKey()}
			cmd := createKey.Eval(ctx, pipe, keys, k.ID, rec, k.Account, flag(k.Revoked), lastUsed)
			cmds = append(cmds, pending{cmd, map[string]string{"account": k.Account, "key": k.ID}, "create key"})
		case r.Grant != nil:
			g := *r.Grant
			if err := g.Validate(); err != nil {
				return err
			}
			args := []any{s.channel, subjectChanged(g.Subject), g.Subject.String(), g.Repository}
			for _, a := range g.Actions {
				args = append(args, a)
			}
			cmds = append(cmds, pending{putGrant.Eval(ctx, pipe, s.grantKeys(g.Subject, g.Repository), args...), nil, "put grant"})
		case r.Ownership != nil:
			o := *r.Ownership
			if err := o.Validate(); err != nil {
				return err
			}
			rec, err := jsonString(o)
			if err != nil {
				return err
			}
			keys := []string{s.ownerKey(o.Repository), s.ownedByKey(o.Owner), s.reposKey(), s.accountKey(o.Owner)}
			cmd := reserve.Eval(ctx, pipe, keys, s.channel, accountChanged(o.Owner), o.Repository, rec, 0)
			cmds = append(cmds, pending{cmd, map[string]string{"account": o.Owner, "repository": o.Repository}, "reserve"})
		default:
			return fmt.Errorf("%w: a batch record must be an account, key, grant or ownership", keystore.ErrInvalid)
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	_, err := pipe.Exec(ctx)
	s.changed("*")
	if err == nil {
		s.health.up()
		return nil
	}
	for _, c := range cmds {
		if cerr := c.cmd.Err(); cerr != nil {
			return s.fail(c.op, cerr, c.what)
		}
	}
	return s.fail("write batch", err, nil)
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
