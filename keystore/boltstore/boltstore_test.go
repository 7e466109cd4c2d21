package boltstore_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestConformanceCached runs the suite with the principal cache on: every write must empty it.
func TestConformanceCached(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) keystore.Store {
		s, err := boltstore.OpenWith(filepath.Join(t.TempDir(), "store.db"), boltstore.Options{CacheTTL: time.Minute, Now: now})
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
