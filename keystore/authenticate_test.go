package keystore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

type loaderFunc func(ctx context.Context, id string) (Principal, error)

func (f loaderFunc) LoadPrincipal(ctx context.Context, id string) (Principal, error) {
	return f(ctx, id)
}

// TestAuthenticateDropsEndedGrants: whatever a store returns (a cache, a store whose clock
// lags), authentication hands on only the grants that have not ended at its own now.
func TestAuthenticateDropsEndedGrants(t *testing.T) {
	plain, id, hash, err := NewAPIKey(zeroReader{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := Principal{
		Key:     Key{ID: id, Account: "buyer", Hash: hash},
		Account: Account{Name: "buyer"},
		Grants: []Grant{
			{Repository: "ended", Actions: []string{"pull"}, Expires: now},
			{Repository: "live", Actions: []string{"pull"}, Expires: now.Add(time.Nanosecond)},
			{Repository: "forever", Actions: []string{"pull"}},
		},
	}
	s := loaderFunc(func(context.Context, string) (Principal, error) { return p, nil })
	for name, auth := range map[string]func() (Principal, error){
		"api key": func() (Principal, error) { return Authenticate(context.Background(), s, "buyer", plain, now) },
		"key id":  func() (Principal, error) { return AuthenticateKey(context.Background(), s, id, "buyer", now) },
	} {
		t.Run(name, func(t *testing.T) {
			got, err := auth()
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Grants) != 2 || got.Grants[0].Repository != "live" || got.Grants[1].Repository != "forever" {
				t.Fatalf("grants = %+v, want live and forever", got.Grants)
			}
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A key stored before the limits on restrictions existed (an import of an old export, an old
// Redis) does not authenticate: every decision about it would cost what the limits prevent.
func TestAuthenticateRefusesKeysOverTheLimits(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	plain, id, hash, err := NewAPIKey(zeroReader{})
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
			s := loaderFunc(func(context.Context, string) (Principal, error) { return p, nil })
			_, err := Authenticate(context.Background(), s, "a", plain, now)
			if want := name != "at the limits"; errors.Is(err, ErrBadCredentials) != want {
				t.Fatalf("Authenticate = %v, refused want %v", err, want)
			}
		})
	}
}
