//go:build unix

package boltstore_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/regoauth/regoauth/keystore/boltstore"
)

// TestFileIsPrivate: the store file holds key and session hashes, grants and reservations, and
// whoever can write it can give any account any right; it is created readable and writable by
// its owner alone, whatever the process's umask lets through.
func TestFileIsPrivate(t *testing.T) {
	old := syscall.Umask(0o002) // a permissive umask: the mode must come from the store itself
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Fatalf("store file mode %v, want 0600", mode)
	}
}
