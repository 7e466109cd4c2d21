package secretfile_test

import (
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/internal/secretfile"
)

func read(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// onlyFile fails unless path is the one file in its directory: no temporary file is left.
func onlyFile(t *testing.T, path string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != filepath.Base(path) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only %s", names, filepath.Base(path))
	}
}

func TestWriteReplacesWithItsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := secretfile.Write(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 || read(t, path) != "new" {
		t.Fatalf("after Write: %v, %v, %q", st.Mode(), err, read(t, path))
	}
	onlyFile(t, path)
}

// TestFailedWriteKeepsTheOldFile: a writer that fails half way leaves the old content, and no
// temporary file.
func TestFailedWriteKeepsTheOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "export.jsonl")
	if err := secretfile.Write(path, []byte("good"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("store went away")
	err := secretfile.WriteFrom(path, 0o600, func(w io.Writer) error {
		io.WriteString(w, "half")
		return boom
	})
	if !errors.Is(err, boom) || read(t, path) != "good" {
		t.Fatalf("after a failed write: %v, %q", err, read(t, path))
	}
	onlyFile(t, path)
}

func TestCreateNeverReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := secretfile.Create(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := secretfile.Create(path, []byte("second"), 0o600)
	if !errors.Is(err, fs.ErrExist) || read(t, path) != "first" {
		t.Fatalf("second Create: %v, content %q", err, read(t, path))
	}
	onlyFile(t, path)
}

func TestEnsureSecretKeepsTheSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "refresh-secret")
	if err := secretfile.EnsureSecret(path, rand.Reader); err != nil {
		t.Fatal(err)
	}
	first := read(t, path)
	if len(first) != 65 {
		t.Fatalf("secret %q, want 64 hex characters and a newline", first)
	}
	if err := secretfile.EnsureSecret(path, rand.Reader); err != nil || read(t, path) != first {
		t.Fatalf("a second call changed the secret: %v", err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestEnsureSigningKeyKeepsKey(t *testing.T) {
	dir := t.TempDir()
	keyPath, certPath := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	first, err := secretfile.EnsureSigningKey(keyPath, certPath, jose.ES256, "regoauth", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	second, err := secretfile.EnsureSigningKey(keyPath, certPath, jose.ES256, "regoauth", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if first.KID != second.KID || !first.Chain[0].Equal(second.Chain[0]) {
		t.Fatal("a second start generated a new key")
	}
	if st, _ := os.Stat(keyPath); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
}
