//go:build unix

package server

import (
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
	file := func(name, content string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // whatever the umask let through
			t.Fatal(err)
		}
		return p
	}
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
	foreign := os.Getegid() + 1
	for groups, _ := os.Getgroups(); slices.Contains(groups, foreign) || foreign == os.Getegid(); foreign++ {
	}
	cfg = Defaults()
	cfg.Listen.Addr = "127.0.0.1:5001"
	cfg.Signing.KeyFile = file("grouped-key.pem", privateKey, 0o640)
	if got := cfg.Warnings(""); len(got) != 0 {
		t.Fatalf("a key readable by the server's own group: warnings %q, want none", got)
	}
	otherGroup := func(path string) (fs.FileInfo, error) {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		sys := *st.Sys().(*syscall.Stat_t)
		sys.Gid = uint32(foreign)
		return withSys{st, &sys}, nil
	}
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
	foreign := os.Getegid() + 1
	for groups, _ := os.Getgroups(); slices.Contains(groups, foreign) || foreign == os.Getegid(); foreign++ {
	}
	otherGroup := func(path string) (fs.FileInfo, error) {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		sys := *st.Sys().(*syscall.Stat_t)
		sys.Gid = uint32(foreign)
		return withSys{st, &sys}, nil
	}
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
