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

// TestStartWarnings: serve logs, once at start, what its configuration may expose — here a
// refresh token secret every user can read, a public network among the trusted proxies and,
// under --check-config, the default listener on every interface without TLS and a
// configuration file every user can read and change that holds a secret inline. regoauth dev,
// on loopback with private files, logs no warning.
func TestStartWarnings(t *testing.T) {
	t.Parallel()
	warnings := func(out string) []string {
		var msgs []string
		for line := range strings.SplitSeq(out, "\n") {
			if rec := parseLogLine(line); rec != nil && rec["level"] == "WARN" {
				msgs = append(msgs, rec["msg"])
			}
		}
		return msgs
	}
	dir := t.TempDir()
	secret := writeFile(t, filepath.Join(dir, "refresh-secret"), strings.Repeat("s3cr3t", 8), 0o600)
	if err := os.Chmod(secret, 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, serveConfig{dir: dir, refreshSecrets: []string{secret}, extra: "trusted_proxies: [10.0.0.0/8, 203.0.113.0/24]"})
	want := []string{
		`refresh_tokens.secrets[0].file "` + secret + `" can be read by every user of this host (mode 0644)`,
		`trusted_proxies[1] "203.0.113.0/24" holds public addresses`,
	}
	got := warnings(s.logs())
	if len(got) != len(want) || !strings.HasPrefix(got[0], want[0]) || !strings.HasPrefix(got[1], want[1]) {
		t.Fatalf("serve logged the warnings %q, want two beginning %q", got, want)
	}

	// --check-config loads what serve does, and binds nothing: the default ":5001" is safe to ask.
	// Its configuration file every user can read and change, holding a refresh token secret
	// inline, warns twice more, and shows no secret.
	const inline = "inline-refresh-secret-0123456789abcdef0123456789"
	cfg := strings.Replace(string(mustRead(t, s.configFile())), "listen: {addr: \""+s.Addr+"\"}\n", "", 1)
	cfg = strings.Replace(cfg, "refresh_tokens: {secrets: [", "refresh_tokens: {secrets: ["+inline+", ", 1)
	check := writeFile(t, filepath.Join(dir, "check.yaml"), cfg, 0o600)
	if err := os.Chmod(check, 0o666); err != nil {
		t.Fatal(err)
	}
	out := must(t, []string{"REGOAUTH_E2E_STORE_URL=bolt://" + filepath.Join(t.TempDir(), "store.db")}, binary, "serve", "--check-config", "--config", check)
	want = []string{
		`listen.addr ":5001" serves plain HTTP`,
		`configuration file "` + check + `" can be read by every user of this host (mode 0666), and it holds secrets inline: refresh_tokens.secrets[0]:`,
		`configuration file "` + check + `" can be changed by every user of this host (mode 0666)`,
		`refresh_tokens.secrets[1].file "` + secret + `" can be read by every user`,
		`trusted_proxies[1] "203.0.113.0/24" holds public addresses`,
	}
	got = warnings(out)
	if len(got) != len(want) || strings.Contains(out, inline) {
		t.Fatalf("serve --check-config logged the warnings %q, want %d beginning %q, and no secret", got, len(want), want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("serve --check-config logged the warnings %q, want %d beginning %q", got, len(want), want)
		}
	}

	d := startDev(t, "")
	if got := warnings(d.logs()); len(got) != 0 {
		t.Fatalf("regoauth dev logged the warnings %q, want none", got)
	}
}
