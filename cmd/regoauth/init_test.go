package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/tokens"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "regoauth.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// initFixture is a configuration naming files that do not exist yet, as on a first start.
type initFixture struct {
	dir, config, key, cert, refresh, adminKey, store string
}

func newInitFixture(t *testing.T) initFixture {
	t.Helper()
	dir := t.TempDir()
	f := initFixture{
		dir:      dir,
		key:      filepath.Join(dir, "private", "signing-key.pem"),
		cert:     filepath.Join(dir, "public", "signing-cert.pem"),
		refresh:  filepath.Join(dir, "private", "refresh-secret"),
		adminKey: filepath.Join(dir, "private", "admin.key"),
		store:    filepath.Join(dir, "private", "store.db"),
	}
	f.config = writeConfig(t, `
issuer: regoauth
services: [registry]
signing: {key_file: `+f.key+`, cert_file: `+f.cert+`}
refresh_tokens: {secrets: [{file: `+f.refresh+`}]}
store: {url: "bolt://`+f.store+`"}
`)
	return f
}

func (f initFixture) run(t *testing.T) (string, error) {
	t.Helper()
	out, _, err := runCLI(t, "", "init", "--config", f.config, "--admin-key-file", f.adminKey)
	return out, err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestInitCreatesWhatServeNeeds(t *testing.T) {
	f := newInitFixture(t)
	out, err := f.run(t)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	for _, want := range []string{"created signing key " + f.key, "created signing certificate " + f.cert,
		"created refresh-token secret " + f.refresh, "created admin API key " + f.adminKey, "signing kid "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for path, mode := range map[string]os.FileMode{f.key: 0o600, f.refresh: 0o600, f.adminKey: 0o600, f.cert: 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	adminKey := strings.TrimSpace(readFile(t, f.adminKey))
	secret := strings.TrimSpace(readFile(t, f.refresh))
	if strings.Contains(out, adminKey) || strings.Contains(out, secret) || len(secret) != 64 {
		t.Fatalf("a secret was printed, or the refresh secret is not 32 hex bytes:\n%s", out)
	}
	// The certificate is the registries' trust anchor for this very key.
	key, err := tokens.LoadKeyFiles(f.key, f.cert, tokens.KIDThumbprint)
	if err != nil {
		t.Fatal(err)
	}
	if key.Algorithm != "ES256" || len(key.Chain) != 1 || key.Chain[0].Subject.CommonName != "regoauth" {
		t.Fatalf("key %s, chain %d", key.Algorithm, len(key.Chain))
	}

	// The server accepts what init made, and the admin key written is the admin's.
	if out, _, err := runCLI(t, "", "serve", "--config", f.config, "--check-config"); err != nil {
		t.Fatalf("serve --check-config after init: %v\n%s", err, out)
	}
	store, err := boltstore.Open(f.store)
	if err != nil {
		t.Fatal(err)
	}
	p, err := keystore.Authenticate(context.Background(), store, "admin", adminKey, time.Now())
	store.Close()
	if err != nil || !p.Account.HasRole("admin") {
		t.Fatalf("the admin key does not authenticate an admin: %+v, %v", p.Account, err)
	}
}

func TestInitKeepsWhatExists(t *testing.T) {
	f := newInitFixture(t)
	if out, err := f.run(t); err != nil {
		t.Fatalf("first init: %v\n%s", err, out)
	}
	before := map[string]string{}
	for _, p := range []string{f.key, f.cert, f.refresh, f.adminKey} {
		before[p] = readFile(t, p)
	}
	out, err := f.run(t)
	if err != nil {
		t.Fatalf("second init: %v\n%s", err, out)
	}
	if strings.Contains(out, "created") || strings.Count(out, "kept ") != 4 {
		t.Fatalf("second init changed something:\n%s", out)
	}
	for p, v := range before {
		if readFile(t, p) != v {
			t.Errorf("%s changed", p)
		}
	}

	// A key file holding a key the store does not know (a wiped store, a revoked key) is
	// replaced by a working one; the signing key stays.
	if err := os.WriteFile(f.adminKey, []byte("rak_nope_nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err = f.run(t); err != nil || !strings.Contains(out, "created admin API key") {
		t.Fatalf("init over a stale admin key: %v\n%s", err, out)
	}
	if readFile(t, f.key) != before[f.key] {
		t.Fatal("the signing key changed")
	}
}

func TestInitCertifiesAnExistingKey(t *testing.T) {
	f := newInitFixture(t)
	os.MkdirAll(filepath.Dir(f.key), 0o700)
	if out, _, err := runCLI(t, "", "signing", "generate", "--key", f.key); err != nil {
		t.Fatalf("signing generate: %v\n%s", err, out)
	}
	keyPEM := readFile(t, f.key)
	out, _, err := runCLI(t, "", "init", "--config", f.config)
	if err != nil || !strings.Contains(out, "kept signing key") || !strings.Contains(out, "created signing certificate") {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if readFile(t, f.key) != keyPEM {
		t.Fatal("the existing key was replaced")
	}
	if _, err := tokens.LoadKeyFiles(f.key, f.cert, tokens.KIDThumbprint); err != nil {
		t.Fatalf("the new certificate does not hold the existing key: %v", err)
	}
	if _, err := os.Stat(f.adminKey); err == nil {
		t.Fatal("an admin key was written without --admin-key-file")
	}
}

func TestInitRefuses(t *testing.T) {
	t.Run("a certificate of another key", func(t *testing.T) {
		f := newInitFixture(t)
		other := filepath.Join(f.dir, "other")
		if out, _, err := runCLI(t, "", "signing", "generate", "--key", other+".pem", "--cert", other+".crt"); err != nil {
			t.Fatalf("signing generate: %v\n%s", err, out)
		}
		os.MkdirAll(filepath.Dir(f.cert), 0o755)
		if err := os.Rename(other+".crt", f.cert); err != nil {
			t.Fatal(err)
		}
		if out, err := f.run(t); err == nil {
			t.Fatalf("init accepted a certificate that does not hold the signing key:\n%s", out)
		}
	})
	t.Run("an admin account without the admin role", func(t *testing.T) {
		f := newInitFixture(t)
		os.MkdirAll(filepath.Dir(f.store), 0o700)
		store, err := boltstore.Open(f.store)
		if err != nil {
			t.Fatal(err)
		}
		err = store.CreateAccount(context.Background(), keystore.Account{Name: "admin", Created: time.Now().UTC()})
		store.Close()
		if err != nil {
			t.Fatal(err)
		}
		out, err := f.run(t)
		if err == nil || !strings.Contains(err.Error(), "without the admin role") {
			t.Fatalf("init = %v\n%s", err, out)
		}
		if _, err := os.Stat(f.adminKey); err == nil {
			t.Fatal("a key was written for an account that is not an admin")
		}
	})
	t.Run("no config", func(t *testing.T) {
		if _, _, err := runCLI(t, "", "init"); err == nil || !strings.Contains(err.Error(), "--config is required") {
			t.Fatalf("init without --config: %v", err)
		}
	})
}
