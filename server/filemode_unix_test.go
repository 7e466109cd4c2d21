//go:build unix

package server

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Every file of the configuration that holds a secret warns when users other than the server's
// can read or change it; certificates, public keys and private files do not.
func TestSecretFileWarnings(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string, mode os.FileMode) string { return fileWithMode(t, dir, name, content, mode) }
	const privateKey = "-----BEGIN EC PRIVATE KEY-----\nMHc=\n-----END EC PRIVATE KEY-----\n"
	const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	cfg := Defaults()
	cfg.Listen = Listener{Addr: "127.0.0.1:5001", TLS: &TLS{CertFile: file("tls.crt", cert, 0o644), KeyFile: file("tls.key", privateKey, 0o644)}}
	cfg.Metrics = &Listener{Addr: "127.0.0.1:9090", TLS: &TLS{CertFile: file("metrics.crt", cert, 0o644), KeyFile: file("metrics.key", privateKey, 0o600)}}
	cfg.Signing = Signing{KeyFile: file("signing-key.pem", privateKey, 0o640|0o004), CertFile: file("signing-cert.pem", cert, 0o644),
		Publish: []string{file("next-cert.pem", cert, 0o644), file("next-key.pem", privateKey, 0o644)}}
	cfg.RefreshTokens.Secrets = []Secret{{File: file("refresh-0", "s", 0o600)}, {Value: "inline"}, {File: file("refresh-2", "s", 0o602)}}
	cfg.Store.URL = Secret{File: file("store-url", "bolt://"+file("store.db", "", 0o666), 0o440)}
	cfg.Policy.Bundle = file("policy.tar.gz", "", 0o644)
	cfg.Policy.Signing = &PolicySigning{KeyFile: file("bundle-secret", "s", 0o644), Algorithm: "HS256"}
	cfg.Policy.DryRun = &PolicySource{Signing: &PolicySigning{KeyFile: file("bundle.pub", "-----BEGIN PUBLIC KEY-----", 0o644), Algorithm: "RS256"}}

	got := cfg.Warnings("")
	want := []string{
		`listen.tls.key_file "` + dir + `/tls.key" can be read by every user of this host (mode 0644)`,
		`signing.key_file "` + dir + `/signing-key.pem" can be read by every user of this host (mode 0644)`,
		`signing.publish[1] "` + dir + `/next-key.pem" can be read by every user`,
		`refresh_tokens.secrets[2].file "` + dir + `/refresh-2" can be changed by every user of this host (mode 0602)`,
		`store.url "` + dir + `/store.db" can be read and changed by every user of this host (mode 0666)`,
		`policy.signing.key_file "` + dir + `/bundle-secret" can be read by every user`,
	}
	if len(got) != len(want) {
		t.Fatalf("warnings:\n%s\nwant %d, beginning:\n%s", strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) || !strings.HasSuffix(got[i], "chmod 600 it") {
			t.Errorf("warning %q, want one beginning %q and saying to chmod 600 it", got[i], want[i])
		}
	}

	// Group access warns only when the file's group is not one the server runs with (in a
	// Kubernetes secret volume, fsGroup with mode 0440 is the server's own).
	cfg = Defaults()
	cfg.Listen.Addr = "127.0.0.1:5001"
	cfg.Signing.KeyFile = file("grouped-key.pem", privateKey, 0o640)
	if got := cfg.Warnings(""); len(got) != 0 {
		t.Fatalf("a key readable by the server's own group: warnings %q, want none", got)
	}
	otherGroup := otherGroupStat(t)
	got = cfg.warnings("", otherGroup)
	if len(got) != 1 || !strings.HasPrefix(got[0], `signing.key_file "`+cfg.Signing.KeyFile+`" can be read by its group, which the server does not run with (mode 0640)`) {
		t.Fatalf("a key readable by another group: warnings %q", got)
	}
}

// withSys is a FileInfo with other ownership.
type withSys struct {
	fs.FileInfo
	sys any
}

func (w withSys) Sys() any { return w.sys }

// A configuration file that other users can read warns when it holds a secret inline, naming the
// file and each setting that holds one, never the secret; one only its owner reads does not, nor
// does one whose secrets are files or environment variables it names.
func TestConfigFileSecretsWarn(t *testing.T) {
	const base = "issuer: x\nservices: [r]\nlisten: {addr: \"127.0.0.1:5001\"}\nsigning: {key_file: k.pem}\n"
	const bolt = "store: {url: \"bolt:///tmp/x.db\"}\n"
	secrets := []string{"hunter2-store", "sentinel-pw", "refresh-inline-0123456789abcdef0123456789", "opa-bearer-token",
		"opa-header-token", "opa-url-pw", "opa-hmac-secret", "opa-client-secret", "opa-plugin-pw", "opa-passphrase"}
	for _, tt := range []struct {
		name, yaml string
		want       []string // the settings named, in order
	}{
		{"a Redis password", "store: {url: \"redis://:hunter2-store@redis:6379/0\"}\n", []string{"store.url (its password)"}},
		{"a Sentinel password", "store: {url: \"redis+sentinel://s1:26379/mymaster?sentinel_password=sentinel-pw\"}\n", []string{"store.url (its password)"}},
		{"refresh token secrets", bolt + "refresh_tokens: {secrets: [{file: /run/secrets/r}, refresh-inline-0123456789abcdef0123456789, {value: refresh-inline-0123456789abcdef0123456789}]}\n",
			[]string{"refresh_tokens.secrets[1]", "refresh_tokens.secrets[2]"}},
		{"an OPA bearer token", bolt + "policy: {opa: {services: {acr: {url: \"https://bundles.example.com\", credentials: {bearer: {token: opa-bearer-token, scheme: Bearer}}}}, bundles: {authz: {service: acr, resource: b.tar.gz}}}}\n",
			[]string{"policy.opa.services.acr.credentials"}},
		{"an OPA header", bolt + "policy: {opa: {services: {acr: {url: \"https://bundles.example.com\", headers: {Authorization: \"Bearer opa-header-token\"}}}}}\n",
			[]string{"policy.opa.services.acr.headers.Authorization"}},
		{"a password in an OPA service URL", bolt + "policy: {opa: {services: [{name: acr, url: \"https://robot:opa-url-pw@bundles.example.com/v1\"}]}}\n",
			[]string{"policy.opa.services[0].url (its password)"}},
		{"an OPA HMAC key", bolt + "policy: {opa: {keys: {k: {algorithm: HS256, key: opa-hmac-secret}}}}\n", []string{"policy.opa.keys.k.key"}},
		{"a dry run's OAuth2 client secret", bolt + "policy: {dry_run: {opa: {services: {s: {url: \"https://b.example.com\", credentials: {oauth2: {token_url: \"https://idp.example.com/token\", client_id: regoauth, client_secret: opa-client-secret}}}}}}}\n",
			[]string{"policy.dry_run.opa.services.s.credentials"}},
		{"an OPA client TLS key passphrase", bolt + "policy: {opa: {services: {acr: {url: \"https://b.example.com\", credentials: {client_tls: {cert: /c.pem, private_key: /k.pem, private_key_passphrase: opa-passphrase}}}}}}\n",
			[]string{"policy.opa.services.acr.credentials"}},
		{"a plugin's password", bolt + "policy: {opa: {plugins: {envoy: {api_password: opa-plugin-pw}}}}\n", []string{"policy.opa.plugins.envoy.api_password"}},
		{"all of them at once", "store: {url: \"redis://:hunter2-store@redis:6379/0\"}\nrefresh_tokens: {secrets: [refresh-inline-0123456789abcdef0123456789]}\n" +
			"policy: {opa: {services: {acr: {url: \"https://robot:opa-url-pw@b.example.com\", credentials: {bearer: {token: opa-bearer-token}}}}}}\n",
			[]string{"store.url (its password)", "refresh_tokens.secrets[0]", "policy.opa.services.acr.credentials", "policy.opa.services.acr.url (its password)"}},

		{"a bolt store", bolt, nil},
		{"a Redis URL without a password", "store: {url: \"redis://regoauth@redis:6379/0\"}\n", nil},
		{"a store URL from a file", "store: {url: {file: /run/secrets/store-url}}\n", nil},
		{"refresh token secrets from files and the environment", bolt + "refresh_tokens: {secrets: [{file: /run/secrets/r}, {env: REFRESH_SECRET}]}\n", nil},
		{"an OPA token from a file", bolt + "policy: {opa: {services: {acr: {url: \"https://b.example.com\", credentials: {bearer: {token_path: /run/secrets/t, scheme: Bearer}}}}}}\n", nil},
		{"OPA secrets from the environment", bolt + "policy: {opa: {services: {acr: {url: \"https://robot:${PW}@b.example.com\", headers: {Authorization: \"Bearer ${TOKEN}\"}, credentials: {bearer: {token: \"${TOKEN}\"}}}}}}\n", nil},
		{"OPA client TLS files", bolt + "policy: {opa: {services: {acr: {url: \"https://b.example.com\", credentials: {client_tls: {cert: /c.pem, private_key: /k.pem}}}}}}\n", nil},
		{"an OPA public key", bolt + "policy: {opa: {keys: {k: {algorithm: RS256, key: \"-----BEGIN PUBLIC KEY-----\"}, d: {key: \"-----BEGIN PUBLIC KEY-----\"}}}}\n", nil},
		{"OPA settings without secrets", bolt + "policy: {opa: {services: {acr: {url: \"https://b.example.com\", credentials: {s3_signing: {environment_credentials: {}}}}}, decision_logs: {console: true}}}\n", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "regoauth.yaml")
			if err := os.WriteFile(path, []byte(base+tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Warnings(path); len(got) != 0 {
				t.Fatalf("mode 0600: warnings %q, want none", got)
			}
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
			got := cfg.Warnings(path)
			if tt.want == nil {
				if len(got) != 0 {
					t.Fatalf("mode 0644, no secret inline: warnings %q, want none", got)
				}
				return
			}
			want := `configuration file "` + path + `" can be read by every user of this host (mode 0644), and it holds secrets inline: ` + strings.Join(tt.want, ", ") + ": chmod 600 it, or move them out of it"
			if len(got) != 1 || !strings.HasPrefix(got[0], want) {
				t.Fatalf("mode 0644: warnings %q, want one beginning %q", got, want)
			}
			for _, s := range secrets {
				if strings.Contains(got[0], s) {
					t.Fatalf("the warning %q shows the secret %q", got[0], s)
				}
			}
		})
	}
}

// Whoever can change the configuration file, or OPA's, chooses the policy: a file other users
// can change warns whatever it holds, and one they can read warns when it holds secrets. Group
// access is the server's own when it runs with the file's group.
func TestConfigFileModesWarn(t *testing.T) {
	dir := t.TempDir()
	opa := filepath.Join(dir, "opa.yaml")
	if err := os.WriteFile(opa, []byte("services:\n  acr:\n    url: https://b.example.com\n    credentials: {bearer: {token: opa-bearer-token}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const base = "issuer: x\nservices: [r]\nlisten: {addr: \"127.0.0.1:5001\"}\nsigning: {key_file: k.pem}\n"
	withSecret := filepath.Join(dir, "with-secret.yaml")
	if err := os.WriteFile(withSecret, []byte(base+"store: {url: \"redis://:hunter2@redis:6379/0\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain.yaml")
	if err := os.WriteFile(plain, []byte(base+"store: {url: \"bolt:///tmp/x.db\"}\npolicy: {opa: "+opa+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherGroup := otherGroupStat(t)
	const read = "can be read by every user of this host"
	for _, tt := range []struct {
		name       string
		file       string
		mode, opa  os.FileMode
		otherGroup bool
		want       []string // the beginnings of the warnings, in order
	}{
		{"private", withSecret, 0o600, 0o600, false, nil},
		{"readable by all, with a secret", withSecret, 0o644, 0o600, false, []string{`configuration file "` + withSecret + `" ` + read + ` (mode 0644), and it holds secrets inline: store.url`}},
		{"readable by the server's own group", withSecret, 0o640, 0o600, false, nil},
		{"readable by another group", withSecret, 0o640, 0o600, true, []string{`configuration file "` + withSecret + `" can be read by its group, which the server does not run with (mode 0640), and it holds secrets inline`}},
		{"readable and changeable by all", withSecret, 0o666, 0o600, false, []string{
			`configuration file "` + withSecret + `" ` + read + ` (mode 0666), and it holds secrets inline`,
			`configuration file "` + withSecret + `" can be changed by every user of this host (mode 0666), and whoever changes it chooses the policy`}},
		{"changeable by all", withSecret, 0o602, 0o600, false, []string{`configuration file "` + withSecret + `" can be changed by every user of this host (mode 0602)`}},
		{"readable by all, without a secret", plain, 0o644, 0o600, false, nil},
		{"changeable by another group, without a secret", plain, 0o664, 0o600, true, []string{`configuration file "` + plain + `" can be changed by its group, which the server does not run with (mode 0664)`}},
		{"OPA's, readable by all, with a token", plain, 0o644, 0o644, false, []string{`policy.opa "` + opa + `" ` + read + ` (mode 0644), and it holds secrets inline: services.acr.credentials: chmod 600 it`}},
		{"OPA's, changeable by all", plain, 0o600, 0o622, false, []string{`policy.opa "` + opa + `" can be changed by every user of this host (mode 0622), and whoever changes it chooses the bundle servers`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for path, mode := range map[string]os.FileMode{tt.file: tt.mode, opa: tt.opa} {
				if err := os.Chmod(path, mode); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := LoadConfig(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			stat := os.Stat
			if tt.otherGroup {
				stat = otherGroup
			}
			got := cfg.warnings(tt.file, stat)
			if len(got) != len(tt.want) {
				t.Fatalf("warnings:\n%s\nwant %d, beginning:\n%s", strings.Join(got, "\n"), len(tt.want), strings.Join(tt.want, "\n"))
			}
			for i := range tt.want {
				if !strings.HasPrefix(got[i], tt.want[i]) || strings.Contains(got[i], "hunter2") || strings.Contains(got[i], "opa-bearer-token") {
					t.Errorf("warning %q, want one beginning %q, without the secret", got[i], tt.want[i])
				}
			}
		})
	}
}

// otherGroupStat is os.Stat with every file's group one the server does not run with.
func otherGroupStat(t *testing.T) func(string) (fs.FileInfo, error) {
	t.Helper()
	foreign := os.Getegid() + 1
	for groups, _ := os.Getgroups(); slices.Contains(groups, foreign) || foreign == os.Getegid(); foreign++ {
	}
	return func(path string) (fs.FileInfo, error) {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		sys := *st.Sys().(*syscall.Stat_t)
		sys.Gid = uint32(foreign)
		return withSys{st, &sys}, nil
	}
}

// mkdir makes a folder of exactly mode (os.ModeSticky for the sticky bit), whatever the umask.
func mkdir(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeMode writes a file of exactly mode, whatever the umask.
func writeMode(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// Whoever can change policy.dir — the folder, or any folder or file under it — chooses the
// policy: a folder or file others can change warns, naming the first and counting the rest, and
// a tree of 0755 folders and 0644 files does not. A sticky folder warns too (adding a file is
// enough), links out of the tree are not followed, and the walk stops at walkLimit entries.
func TestPolicyDirWarnings(t *testing.T) {
	// tree is a bundle folder: root 0755, a .rego file, and a subfolder holding data.json.
	tree := func(t *testing.T) (root, sub, rego, data string) {
		root = mkdir(t, filepath.Join(t.TempDir(), "bundle"), 0o755)
		sub = mkdir(t, filepath.Join(root, "sub"), 0o755)
		rego = writeMode(t, filepath.Join(root, "authz.rego"), "package x\n", 0o644)
		data = writeMode(t, filepath.Join(sub, "data.json"), "{}", 0o644)
		return root, sub, rego, data
	}
	config := func(dir string) Config {
		cfg := Defaults()
		cfg.Listen.Addr = "127.0.0.1:5001"
		cfg.Policy.Dir = dir
		return cfg
	}
	const every = "can be changed by every user of this host"
	for _, tt := range []struct {
		name       string
		edit       func(t *testing.T, root, sub, rego, data string) (first string)
		otherGroup bool
		want       string // what follows `policy.dir "ROOT" holds what others can change: "FIRST" `
	}{
		{"0755 folders and 0644 files", func(*testing.T, string, string, string, string) string { return "" }, false, ""},
		{"a subfolder every user can change", func(t *testing.T, _, sub, _, _ string) string { return mkdir(t, sub, 0o777) }, false, every + " (mode 0777); "},
		{"a file every user can change", func(t *testing.T, _, _, _, data string) string { return writeMode(t, data, "{}", 0o666) }, false, every + " (mode 0666); "},
		{"the folder itself, sticky", func(t *testing.T, root, _, _, _ string) string { return mkdir(t, root, 0o777|os.ModeSticky) }, false, every + " (mode 1777); "},
		{"a subfolder and two files", func(t *testing.T, _, sub, rego, data string) string {
			mkdir(t, sub, 0o757)
			writeMode(t, data, "{}", 0o606)
			return writeMode(t, rego, "package x\n", 0o646) // walked first, in lexical order
		}, false, every + " (mode 0646), as can 2 more folders and files in it; "},
		{"a subfolder its group can change, the server's", func(t *testing.T, _, sub, _, _ string) string { mkdir(t, sub, 0o775); return "" }, false, ""},
		{"a subfolder another group can change", func(t *testing.T, _, sub, _, _ string) string { return mkdir(t, sub, 0o775) }, true,
			"can be changed by its group, which the server does not run with (mode 0775); "},
		{"a file another group can change", func(t *testing.T, _, _, rego, _ string) string { return writeMode(t, rego, "package x\n", 0o664) }, true,
			"can be changed by its group, which the server does not run with (mode 0664); "},
		{"files another group can only read", func(t *testing.T, _, _, rego, _ string) string { writeMode(t, rego, "package x\n", 0o644); return "" }, true, ""},
		{"a link to a folder every user can change", func(t *testing.T, root, _, _, _ string) string {
			outside := mkdir(t, filepath.Join(t.TempDir(), "outside"), 0o777)
			writeMode(t, filepath.Join(outside, "x.rego"), "package y\n", 0o666)
			if err := os.Symlink(outside, filepath.Join(root, "linked")); err != nil {
				t.Fatal(err)
			}
			return ""
		}, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root, sub, rego, data := tree(t)
			first := tt.edit(t, root, sub, rego, data)
			stat := os.Stat
			if tt.otherGroup {
				stat = otherGroupStat(t)
			}
			for _, field := range []string{"policy", "policy.dry_run"} {
				cfg := config("")
				if field == "policy" {
					cfg.Policy.Dir = root
				} else {
					cfg.Policy.DryRun = &PolicySource{Dir: root}
				}
				got := cfg.warnings("", stat)
				if tt.want == "" {
					if len(got) != 0 {
						t.Fatalf("%s.dir: warnings %q, want none", field, got)
					}
					continue
				}
				want := field + `.dir "` + root + `" holds what others can change: "` + first + `" ` + tt.want +
					`whoever changes what it holds chooses the policy: chmod -R go-w "` + root + `"`
				if len(got) != 1 || got[0] != want {
					t.Fatalf("%s.dir: warnings %q, want\n%q", field, got, want)
				}
			}
		})
	}

	t.Run("signed", func(t *testing.T) {
		root, sub, _, _ := tree(t)
		mkdir(t, sub, 0o777)
		cfg := config(root)
		cfg.Policy.Signing = &PolicySigning{KeyFile: "bundle.pub", Algorithm: "RS256"}
		got := cfg.Warnings("")
		if len(got) != 1 || !strings.HasSuffix(got[0], `whoever changes what it holds can put back any bundle ever signed with policy.signing's key, or keep the policy from loading: chmod -R go-w "`+root+`"`) {
			t.Fatalf("a signed policy.dir: warnings %q, want one saying an older signed bundle can be put back", got)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		root, _, _, _ := tree(t)
		// Walked in lexical order: two files others can change first, then more than the limit.
		writeMode(t, filepath.Join(root, "a0.rego"), "", 0o666)
		writeMode(t, filepath.Join(root, "a1.rego"), "", 0o666)
		for i := range walkLimit {
			writeMode(t, filepath.Join(root, fmt.Sprintf("b%05d.json", i)), "", 0o644)
		}
		writeMode(t, filepath.Join(root, "c.rego"), "", 0o666) // beyond the limit: not looked at
		got := config(root).Warnings("")
		want := fmt.Sprintf(`policy.dir "%s" holds what others can change: "%s/a0.rego" %s (mode 0666), as can 1 more folders and files in it (of the first %d looked at); `, root, root, every, walkLimit)
		if len(got) != 1 || !strings.HasPrefix(got[0], want) {
			t.Fatalf("warnings %q, want one beginning %q", got, want)
		}
	})
}

// Whoever can change policy.bundle chooses the policy, like policy.dir: the tarball warns when
// others can change it, not when they can only read it.
func TestPolicyBundleWarnings(t *testing.T) {
	dir := t.TempDir()
	bundle := writeMode(t, filepath.Join(dir, "policy.tar.gz"), "", 0o644)
	cfg := Defaults()
	cfg.Listen.Addr = "127.0.0.1:5001"
	cfg.Policy.DryRun = &PolicySource{Bundle: bundle}
	if got := cfg.Warnings(""); len(got) != 0 {
		t.Fatalf("a 0644 bundle: warnings %q, want none", got)
	}
	writeMode(t, bundle, "", 0o664)
	if got := cfg.Warnings(""); len(got) != 0 {
		t.Fatalf("a 0664 bundle of the server's own group: warnings %q, want none", got)
	}
	want := `policy.dry_run.bundle "` + bundle + `" can be changed by its group, which the server does not run with (mode 0664), and whoever changes it chooses the policy: chmod go-w it`
	if got := cfg.warnings("", otherGroupStat(t)); len(got) != 1 || got[0] != want {
		t.Fatalf("a 0664 bundle of another group: warnings %q, want %q", got, want)
	}
	writeMode(t, bundle, "", 0o646)
	want = `policy.dry_run.bundle "` + bundle + `" can be changed by every user of this host (mode 0646)`
	if got := cfg.Warnings(""); len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Fatalf("a 0646 bundle: warnings %q, want one beginning %q", got, want)
	}
}

// Whoever can rename what a folder holds can put another file in place of the configuration
// file, OPA's, a secret file or the policy, whatever the file's own mode: a folder on the way
// that others can change warns, naming the file, the folder and what whoever replaces the file
// chooses. The sticky bit (/tmp) stops others renaming what is not theirs: a file of the
// server's user or root, in a sticky folder of the server's user or root, is safe.
func TestFolderWarnings(t *testing.T) {
	const privateKey = "-----BEGIN EC PRIVATE KEY-----\nMHc=\n-----END EC PRIVATE KEY-----\n"
	const every = "can be changed by every user of this host"
	// place writes the configuration file, OPA's, a signing key and a policy bundle, each 0600,
	// in the folder dir, and returns the configuration naming them and the configuration file.
	place := func(t *testing.T, dir string) (Config, string) {
		cfg := Defaults()
		cfg.Listen.Addr = "127.0.0.1:5001"
		cfg.Signing.KeyFile = writeMode(t, filepath.Join(dir, "signing-key.pem"), privateKey, 0o600)
		cfg.Policy.OPA.File = writeMode(t, filepath.Join(dir, "opa.yaml"), "{}", 0o600)
		cfg.Policy.DryRun = &PolicySource{Bundle: writeMode(t, filepath.Join(dir, "candidate.tar.gz"), "", 0o600)}
		return cfg, writeMode(t, filepath.Join(dir, "regoauth.yaml"), "issuer: x\n", 0o600)
	}
	// replaced are the beginnings of the warnings of place's files when others can rename what
	// the folder holds: where names the folder.
	replaced := func(cfg Config, file, where string) []string {
		return []string{
			`configuration file "` + file + `" can be replaced: ` + where,
			`policy.opa "` + cfg.Policy.OPA.File + `" can be replaced: ` + where,
			`signing.key_file "` + cfg.Signing.KeyFile + `" can be replaced: ` + where,
			`policy.dry_run.bundle "` + cfg.Policy.DryRun.Bundle + `" can be replaced: ` + where,
		}
	}
	check := func(t *testing.T, got, want []string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("warnings:\n%s\nwant %d, beginning:\n%s", strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
		}
		for i := range want {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Errorf("warning\n%q\nwant one beginning\n%q", got[i], want[i])
			}
		}
	}

	t.Run("a private folder", func(t *testing.T) {
		cfg, file := place(t, mkdir(t, filepath.Join(t.TempDir(), "etc"), 0o755))
		check(t, cfg.Warnings(file), nil)
	})

	t.Run("a folder every user can change", func(t *testing.T) {
		dir := mkdir(t, filepath.Join(t.TempDir(), "etc"), 0o777)
		cfg, file := place(t, dir)
		got := cfg.Warnings(file)
		check(t, got, replaced(cfg, file, `its folder "`+dir+`" `+every+` (mode 0777), and whoever replaces the file `))
		for i, chooses := range []string{"chooses the policy, the signing key and the store", "chooses the bundle servers, and with them the policy",
			"chooses the key every token is signed with", "chooses the policy"} {
			if want := " whoever replaces the file " + chooses + `: chmod go-w "` + dir + `"`; !strings.HasSuffix(got[i], want) {
				t.Errorf("warning %q does not end %q", got[i], want)
			}
		}
	})

	t.Run("a folder above it every user can change", func(t *testing.T) {
		above := mkdir(t, filepath.Join(t.TempDir(), "srv"), 0o777)
		cfg, file := place(t, mkdir(t, filepath.Join(above, "regoauth"), 0o700))
		check(t, cfg.Warnings(file), replaced(cfg, file, `the folder "`+above+`" on its way `+every+` (mode 0777)`))
	})

	t.Run("a folder another group can change", func(t *testing.T) {
		dir := mkdir(t, filepath.Join(t.TempDir(), "etc"), 0o775)
		cfg, file := place(t, dir)
		check(t, cfg.Warnings(file), nil) // the server's own group
		check(t, cfg.warnings(file, otherGroupStat(t)), replaced(cfg, file, `its folder "`+dir+`" can be changed by its group, which the server does not run with (mode 0775)`))
	})

	t.Run("a link from a private folder into one every user can change", func(t *testing.T) {
		open := mkdir(t, filepath.Join(t.TempDir(), "open"), 0o777)
		private := mkdir(t, filepath.Join(t.TempDir(), "private"), 0o700)
		target := writeMode(t, filepath.Join(open, "regoauth.yaml"), "issuer: x\n", 0o600)
		file := filepath.Join(private, "regoauth.yaml")
		if err := os.Symlink(target, file); err != nil {
			t.Fatal(err)
		}
		cfg := Defaults()
		cfg.Listen.Addr = "127.0.0.1:5001"
		check(t, cfg.Warnings(file), []string{`configuration file "` + file + `" can be replaced: its folder "` + open + `" ` + every + ` (mode 0777)`})
	})

	t.Run("policy.dir in a folder every user can change", func(t *testing.T) {
		dir := mkdir(t, filepath.Join(t.TempDir(), "open"), 0o777)
		bundle := mkdir(t, filepath.Join(dir, "bundle"), 0o755)
		cfg := Defaults()
		cfg.Listen.Addr = "127.0.0.1:5001"
		cfg.Policy.Dir = bundle
		check(t, cfg.Warnings(""), []string{`policy.dir "` + bundle + `" can be replaced: its folder "` + dir + `" ` + every + ` (mode 0777), and whoever replaces the folder chooses the policy`})
	})

	// A folder like /tmp: 1777, root's. The test's own files are the server's user's.
	t.Run("a sticky folder", func(t *testing.T) {
		tmp := mkdir(t, filepath.Join(t.TempDir(), "tmp"), 0o777|os.ModeSticky)
		cfg, file := place(t, tmp)
		check(t, cfg.Warnings(file), nil)

		if os.Geteuid() != 0 {
			t.Skip("giving a file to another user needs root")
		}
		const nobody = 65534
		if err := os.Lchown(file, nobody, -1); err != nil {
			t.Fatal(err)
		}
		check(t, cfg.Warnings(file), []string{`configuration file "` + file + `" can be replaced: its folder "` + tmp + `" ` + every + ` (mode 1777)`})
		if got := cfg.Warnings(file); !strings.HasSuffix(got[0], `: the folder has the sticky bit, but "`+file+`" is neither the server's user's nor root's: chown it, or keep the file in a folder only they can change`) {
			t.Errorf("warning %q does not say whose file it is", got[0])
		}
		if err := os.Lchown(file, 0, -1); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(tmp, nobody, -1); err != nil { // its owner renames anything in it
			t.Fatal(err)
		}
		check(t, cfg.Warnings(file), replaced(cfg, file, `its folder "`+tmp+`" `+every+` (mode 1777)`))
	})
}

// A reload can bring what the warnings cover: a secret file others can read, a folder others
// can change. Reload logs, at WARN after its own record, each warning of the new configuration
// not logged before, and its record counts those that stand; one that stands is not repeated,
// and one that went away is logged again when it comes back.
func TestReloadLogsNewWarnings(t *testing.T) {
	f := newFileSet(t)
	s, _, logs := f.start()
	// reload reloads and returns the warnings it logged and the count in its record.
	seen := 0
	reload := func() (warned []string, count float64) {
		t.Helper()
		if err := s.Reload("SIGHUP"); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		for _, line := range lines[seen:] {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			switch {
			case rec["msg"] == "configuration reloaded":
				count, _ = rec["warnings"].(float64)
			case rec["level"] == "WARN":
				if rec["generation"] == nil {
					t.Errorf("warning %q names no generation", rec["msg"])
				}
				warned = append(warned, rec["msg"].(string))
			}
		}
		seen = len(lines)
		return warned, count
	}
	if got, n := reload(); len(got) != 0 || n != 0 {
		t.Fatalf("private files: a reload warned %q (counting %v), want nothing", got, n)
	}

	// A second refresh secret, readable by every user.
	readable := f.secret(1)
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}
	f.set("refresh_tokens", fmt.Sprintf("{secrets: [{file: %q}, {file: %q}]}", f.secret(0), readable))
	want := `refresh_tokens.secrets[1].file "` + readable + `" can be read by every user of this host (mode 0644)`
	if got, n := reload(); len(got) != 1 || !strings.HasPrefix(got[0], want) || n != 1 {
		t.Fatalf("a reload bringing a readable secret warned %q (counting %v), want one beginning %q", got, n, want)
	}
	if got, n := reload(); len(got) != 0 || n != 1 {
		t.Fatalf("a reload changing nothing warned %q (counting %v), want nothing, counting 1", got, n)
	}

	// The folder of every file turns changeable by every user: every file warns anew, the
	// readable secret not again.
	if err := os.Chmod(f.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	got, n := reload()
	if len(got) == 0 || int(n) != len(got)+1 {
		t.Fatalf("a reload after the folder turned 0777 warned %q (counting %v), want every file warned of, and the secret counted", got, n)
	}
	for _, w := range got {
		if !strings.Contains(w, `can be replaced: its folder "`+f.dir+`" can be changed by every user of this host (mode 0777)`) {
			t.Errorf("warning %q, want only those of the folder", w)
		}
	}
	if !slices.ContainsFunc(got, func(w string) bool { return strings.HasPrefix(w, `configuration file "`+f.path+`" can be replaced`) }) {
		t.Errorf("warnings %q, none of the configuration file", got)
	}

	// Put right, then wrong again: the warning is news again.
	if err := os.Chmod(f.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(readable, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, n := reload(); len(got) != 0 || n != 0 {
		t.Fatalf("a reload after the modes were put right warned %q (counting %v), want nothing", got, n)
	}
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, n := reload(); len(got) != 1 || !strings.HasPrefix(got[0], want) || n != 1 {
		t.Fatalf("a reload after the secret turned readable again warned %q (counting %v), want one beginning %q", got, n, want)
	}
}

// TestPublicFileWarnings: files that hold nothing secret still choose what is trusted — a key
// the JWKS publishes (registries reading it accept tokens signed with it), the certificate chain
// tokens carry, the public key bundles are verified with — so others able to change them warns.
func TestPublicFileWarnings(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string, mode os.FileMode) string { return fileWithMode(t, dir, name, content, mode) }
	const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	const privateKey = "-----BEGIN EC PRIVATE KEY-----\nMHc=\n-----END EC PRIVATE KEY-----\n"
	cfg := Defaults()
	cfg.Listen.Addr = "127.0.0.1:5001"
	cfg.Signing = Signing{KeyFile: file("signing-key.pem", privateKey, 0o600), CertFile: file("signing-cert.pem", cert, 0o646),
		Publish: []string{file("next.pub", "-----BEGIN PUBLIC KEY-----\n", 0o666), file("kept.pem", cert, 0o644), file("next-key.pem", privateKey, 0o600)}}
	cfg.Policy.DryRun = &PolicySource{Signing: &PolicySigning{KeyFile: file("bundle.pub", "-----BEGIN PUBLIC KEY-----\n", 0o662), Algorithm: "ES256"}}

	got := cfg.Warnings("")
	want := []string{
		`signing.publish[0] "` + dir + `/next.pub" can be changed by every user of this host (mode 0666), and whoever changes it chooses a key the JWKS publishes`,
		`signing.cert_file "` + dir + `/signing-cert.pem" can be changed by every user of this host (mode 0646), and whoever changes it chooses the certificate chain`,
		`policy.dry_run.signing.key_file "` + dir + `/bundle.pub" can be changed by every user of this host (mode 0662), and whoever changes it chooses the key bundles are verified with`,
	}
	if len(got) != len(want) {
		t.Fatalf("warnings:\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) || !strings.HasSuffix(got[i], "chmod go-w it") {
			t.Errorf("warning %q, want one beginning %q and saying to chmod go-w it", got[i], want[i])
		}
	}
}

// fileWithMode writes content to dir/name with exactly mode, whatever the umask lets through.
func fileWithMode(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}
