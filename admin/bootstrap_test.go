package admin_test

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/internal/testenv"
	"github.com/regoauth/regoauth/keystore"
)

func TestEnsureAdmin(t *testing.T) {
	env := testenv.New(t)
	now := time.Now()
	first, err := admin.EnsureAdmin(ctx, env.Store, "admin", "bootstrap", "", now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p, err := keystore.Authenticate(ctx, env.Store, "admin", first, now)
	if err != nil || !p.Account.HasRole(admin.AdminRole) || p.Key.Name != "bootstrap" {
		t.Fatalf("the key does not authenticate an admin: %+v, %v", p, err)
	}

	// A key that still works is kept (as dev keeps DATA/admin.key), with or without its newline.
	if again, err := admin.EnsureAdmin(ctx, env.Store, "admin", "bootstrap", first+"\n", now, rand.Reader); err != nil || again != first {
		t.Fatalf("a working key was replaced: %v", err)
	}
	// One that does not, or none, gets a new key; the account stays.
	if err := env.Store.RevokeKey(ctx, p.Key.ID); err != nil {
		t.Fatal(err)
	}
	second, err := admin.EnsureAdmin(ctx, env.Store, "admin", "bootstrap", first, now, rand.Reader)
	if err != nil || second == first {
		t.Fatalf("a revoked key was kept: %v", err)
	}
	if keys, _ := env.Store.ListKeys(ctx, "admin"); len(keys) != 2 {
		t.Fatalf("admin has %d keys, want 2", len(keys))
	}

	env.Account("user1")
	if _, err := admin.EnsureAdmin(ctx, env.Store, "user1", "bootstrap", "", now, rand.Reader); !errors.Is(err, admin.ErrNotAdmin) {
		t.Fatalf("an account without the role: %v", err)
	}
	if _, err := admin.EnsureAdmin(ctx, env.Store, "Bad Name", "bootstrap", "", now, rand.Reader); err == nil {
		t.Fatal("an invalid account name was accepted")
	}
}
