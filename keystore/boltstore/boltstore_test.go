package boltstore_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/keystore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) keystore.Store {
		s, err := boltstore.OpenWith(filepath.Join(t.TempDir(), "store.db"), boltstore.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestConformanceCached runs the suite with the principal and negative caches on: every write
// must empty them.
func TestConformanceCached(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) keystore.Store {
		s, err := boltstore.OpenWith(filepath.Join(t.TempDir(), "store.db"), boltstore.Options{CacheTTL: time.Minute, NegativeTTL: time.Minute, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestReopenKeepsRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.CreateAccount(ctx, keystore.Account{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	k, plain := storetest.NewKey(t, "alice")
	if err := s.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := s.LoadPrincipal(ctx, k.ID)
	if err != nil || !p.Key.Matches(plain) {
		t.Fatalf("after reopen: %+v, %v", p, err)
	}
}

func TestSecondOpenFailsClearly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = boltstore.Open(path)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open error = %v, want 'in use'", err)
	}
}

// TestIndexBuiltForOlderFiles: a file written before the by-repository index existed gets it
// when opened, so listing a repository's grants finds every row.
func TestIndexBuiltForOlderFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		g := keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: name}, Repository: "shop/app", Actions: []string{"pull"}}
		if err := s.PutGrant(ctx, g, keystore.Unguarded); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("grants_on")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err = boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.ListGrants(ctx, keystore.GrantFilter{Repository: "shop/app"})
	if err != nil || len(got) != 2 {
		t.Fatalf("grants on shop/app after reopening = %+v, %v", got, err)
	}
}
