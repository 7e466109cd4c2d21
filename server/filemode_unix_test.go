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

	got := cfg.Warnings()
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
	if got := cfg.Warnings(); len(got) != 0 {
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
	got = cfg.warnings(otherGroup)
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
