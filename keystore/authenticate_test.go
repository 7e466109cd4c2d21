package keystore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"
)

type oneKey struct{ p Principal }

func (o oneKey) LoadPrincipal(_ context.Context, id string) (Principal, error) {
	if id != o.p.Key.ID {
		return Principal{}, ErrNotFound
	}
	return o.p, nil
}

// A key stored before the limits on restrictions existed (an import of an old export, an old
// Redis) does not authenticate: every decision about it would cost what the limits prevent.
func TestAuthenticateRefusesKeysOverTheLimits(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	plain, id, hash, err := NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	base := Principal{Key: Key{ID: id, Account: "a", Hash: hash}, Account: Account{Name: "a"}}
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("10.0.%d.0/24", i)
		}
		return out
	}
	for name, r := range map[string]Restrictions{
		"at the limits":     {Repositories: many(MaxKeyRepositories), CIDRs: many(MaxKeyCIDRs)},
		"too many patterns": {Repositories: many(MaxKeyRepositories + 1)},
		"too many networks": {CIDRs: many(MaxKeyCIDRs + 1)},
	} {
		t.Run(name, func(t *testing.T) {
			p := base
			p.Key.Restrictions = r
			_, err := Authenticate(context.Background(), oneKey{p}, "a", plain, now)
			if want := name != "at the limits"; errors.Is(err, ErrBadCredentials) != want {
				t.Fatalf("Authenticate = %v, refused want %v", err, want)
			}
		})
	}
}
