package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIErrors checks that bad input gets one clear line and a non-zero exit, never a stack.
func TestCLIErrors(t *testing.T) {
	t.Parallel()
	d := startDev(t, "")
	key := d.account(t, "user1")
	// An authority, and a leaf it issued, which is no authority.
	ca := t.TempDir()
	generateSigningKey(t, ca, "ES256", true)
	caKey, caCert := filepath.Join(ca, "ca-key.pem"), filepath.Join(ca, "ca-cert.pem")
	leafKey, leafCert := filepath.Join(ca, "signing-key.pem"), filepath.Join(ca, "signing-cert.pem")
	out := func() string { return filepath.Join(t.TempDir(), "key.pem") }
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		code int
		msg  string
	}{
		{"unknown command", nil, []string{"frobnicate"}, 2, "unknown command"},
		{"missing argument", d.cliEnv(d.AdminKey), []string{"accounts", "create"}, 2, "accepts 1 arg"},
		{"no key", []string{"REGOAUTH_KEY=", "REGOAUTH_KEY_FILE="}, []string{"accounts", "list"}, 2, "no API key"},
		{"bad server URL", append(d.cliEnv(d.AdminKey), "REGOAUTH_SERVER=ftp://x"), []string{"accounts", "list"}, 2, "http:// or https://"},
		{"both subjects", d.cliEnv(d.AdminKey), []string{"grants", "add", "--account", "a", "--group", "b", "--repo", "r", "--actions", "pull"}, 2, "exactly one of --account and --group"},
		{"invalid name", d.cliEnv(d.AdminKey), []string{"accounts", "create", "Bad Name"}, 1, "account name"},
		{"duplicate", d.cliEnv(d.AdminKey), []string{"accounts", "create", "user1"}, 1, "already exists"},
		{"bad action", d.cliEnv(d.AdminKey), []string{"grants", "add", "--account", "user1", "--repo", "x", "--actions", "fly"}, 1, "must be one of"},
		{"two ends", d.cliEnv(d.AdminKey), []string{"grants", "add", "--account", "user1", "--repo", "x", "--actions", "pull", "--expires", "1h", "--until", "2099-01-01"}, 2, "not both"},
		{"bad until", d.cliEnv(d.AdminKey), []string{"grants", "add", "--account", "user1", "--repo", "x", "--actions", "pull", "--until", "tomorrow"}, 2, "--until"},
		{"until in the past", d.cliEnv(d.AdminKey), []string{"grants", "add", "--account", "user1", "--repo", "x", "--actions", "pull", "--until", "2000-01-01"}, 1, "not in the future"},
		{"forbidden", d.cliEnv(key), []string{"accounts", "create", "user9"}, 1, "forbidden"},
		{"wrong key", d.cliEnv(key + "x"), []string{"whoami"}, 1, "invalid username or API key"},
		{"unreachable", append(d.cliEnv(d.AdminKey), "REGOAUTH_SERVER=http://localhost:1"), []string{"accounts", "list"}, 1, "connection refused"},
		{"missing config", nil, []string{"serve", "--config", filepath.Join(t.TempDir(), "nope.yaml")}, 1, "no such file"},
		{"dev bad address", nil, []string{"dev", "--registry-addr", "nonsense"}, 2, "HOST:PORT"},
		{"dev missing policy", nil, []string{"dev", "--data", t.TempDir(), "--policy", filepath.Join(t.TempDir(), "none")}, 2, "--policy"},
		{"authority without a certificate", nil, []string{"signing", "generate", "--key", out(), "--ca-key", caKey, "--ca-cert", caCert}, 2, "--ca-key and --ca-cert go together"},
		{"authority key alone", nil, []string{"signing", "generate", "--key", out(), "--cert", out(), "--ca-key", caKey}, 2, "--ca-key and --ca-cert go together"},
		{"a leaf as authority", nil, []string{"signing", "generate", "--key", out(), "--cert", out(), "--ca-key", leafKey, "--ca-cert", leafCert}, 1, "not a CA"},
		{"authority's key and another certificate", nil, []string{"signing", "generate", "--key", out(), "--cert", out(), "--ca-key", caKey, "--ca-cert", leafCert}, 1, "certificate does not belong"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.env, binary, tt.args...)
			lines := strings.Split(strings.TrimSpace(res.out), "\n")
			if res.code != tt.code || len(lines) != 1 || !strings.HasPrefix(lines[0], "regoauth: ") || !strings.Contains(lines[0], tt.msg) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and one line with %q", res.code, res.out, tt.code, tt.msg)
			}
		})
	}
}

// TestCheckConfig: --check-config loads everything and fails, in one line, when the store does
// not answer.
func TestCheckConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, cert := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	must(t, nil, binary, "signing", "generate", "--key", key, "--cert", cert)
	write := func(store string) string {
		p := filepath.Join(dir, "regoauth.yaml")
		cfg := "issuer: x\nservices: [r]\nsigning: {key_file: " + key + ", cert_file: " + cert + "}\nstore: {url: \"" + store + "\"}\n"
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if out := must(t, nil, binary, "serve", "--check-config", "--config", write("bolt://"+filepath.Join(dir, "store.db"))); !strings.Contains(out, "configuration OK") {
		t.Fatalf("check of a good config: %q", out)
	}
	res := run(t, nil, binary, "serve", "--check-config", "--config", write("redis://localhost:1/0"))
	if res.code != 1 || !strings.Contains(res.out, "regoauth: the store does not answer") {
		t.Fatalf("check with Redis down: exit %d\n%s", res.code, res.out)
	}
}
