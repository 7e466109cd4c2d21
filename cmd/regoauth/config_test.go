package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "regoauth.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	t.Setenv("TEST_STORE_URL", "bolt:///tmp/x.db")
	cfg, err := LoadConfig(writeConfig(t, `
issuer: regoauth
services: [registry.example.com, other.example.com]
token_ttl: 90s
listen: {addr: "127.0.0.1:5001"}
signing: {key_file: key.pem, cert_file: cert.pem, kid: libtrust}
store: {url: {env: TEST_STORE_URL}}
trusted_proxies: [10.0.0.0/8]
`))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(cfg.TokenTTL) != 90*time.Second || cfg.Signing.KID != "libtrust" || len(cfg.Services) != 2 {
		t.Fatalf("config = %+v", cfg)
	}
	if cfg.Limits.MaxScopes != 32 || cfg.Log.Format != "json" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	if u, err := cfg.Store.URL.Resolve(); err != nil || u != "bolt:///tmp/x.db" {
		t.Fatalf("store url = %q, %v", u, err)
	}
}

func TestConfigErrorsAreStrictAndComplete(t *testing.T) {
	_, err := LoadConfig(writeConfig(t, "issuer: x\nservicez: [a]\n"))
	if err == nil || !strings.Contains(err.Error(), "servicez") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = LoadConfig(writeConfig(t, `
issuer: ""
token_ttl: 30s
signing: {kid: sha1}
store: {url: "mysql://x"}
log: {format: xml}
trusted_proxies: [nonsense]
listen: {addr: ":1", tls: {cert_file: a}}
`))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"issuer", "services", "token_ttl", "signing.key_file", "signing.kid", "store.url", "log.format", "trusted_proxies[0]", "listen.tls"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	_, err = LoadConfig(writeConfig(t, "token_ttl: soon\n"))
	if err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Fatalf("bad duration: %v", err)
	}
	_, err = LoadConfig(writeConfig(t, "store: {url: {env: A, file: B}}\n"))
	if err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Fatalf("ambiguous secret: %v", err)
	}
}

func TestSecretSources(t *testing.T) {
	f := filepath.Join(t.TempDir(), "s")
	os.WriteFile(f, []byte("from-file\n"), 0o600)
	for s, want := range map[Secret]string{{Value: "v"}: "v", {File: f}: "from-file"} {
		if got, err := s.Resolve(); err != nil || got != want {
			t.Errorf("%+v: %q, %v", s, got, err)
		}
	}
	if _, err := (Secret{Env: "REGOAUTH_TEST_UNSET"}).Resolve(); err == nil {
		t.Error("unset variable resolved")
	}
}

func TestRedactHidesPasswords(t *testing.T) {
	if got := redact("redis://user:hunter2@host:6379/0"); strings.Contains(got, "hunter2") {
		t.Fatalf("redact = %q", got)
	}
}
