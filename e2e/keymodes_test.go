package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"time"

	"github.com/regoauth/regoauth/tokens"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyModes proves each way a registry can find the signing key, with real registries:
// x5c for every algorithm on v3 and v2.8, the kid alone in each kid mode, and a JWKS file.
func TestKeyModes(t *testing.T) {
	c := crane{bin: tool(t, "crane"), layer: layerTar(t, "keys")}
	tests := []struct {
		name     string
		registry string // v3 or v2.8
		alg      string
		x5c      bool
		kid      string
		jwksOnly bool // the registry trusts only `regoauth signing jwks` output
		wantOK   bool
		// zeroPad uses a P-256 key whose X or Y starts with a zero byte, where distribution's
		// thumbprint departs from RFC 7638.
		zeroPad bool
	}{
		{"ES256 x5c v3", "v3", "ES256", true, "thumbprint", false, true, false},
		{"ES384 x5c v3", "v3", "ES384", true, "thumbprint", false, true, false},
		{"RS256 x5c v3", "v3", "RS256", true, "thumbprint", false, true, false},
		{"ES256 x5c v2.8", "v2.8", "ES256", true, "thumbprint", false, true, false},
		{"ES384 x5c v2.8", "v2.8", "ES384", true, "libtrust", false, true, false},
		{"RS256 x5c v2.8", "v2.8", "RS256", true, "thumbprint", false, true, false},
		{"thumbprint kid v3", "v3", "ES256", false, "thumbprint", false, true, false},
		{"RS256 thumbprint kid v3", "v3", "RS256", false, "thumbprint", false, true, false},
		{"libtrust kid v2.8", "v2.8", "ES256", false, "libtrust", false, true, false},
		{"RS256 libtrust kid v2.8", "v2.8", "RS256", false, "libtrust", false, true, false},
		// Why the modes exist: each registry version resolves only its own kid form.
		{"thumbprint kid refused by v2.8", "v2.8", "ES256", false, "thumbprint", false, false, false},
		{"libtrust kid refused by v3", "v3", "ES256", false, "libtrust", false, false, false},
		{"JWKS v3", "v3", "ES256", false, "thumbprint", true, true, false},
		{"JWKS RS256 v3", "v3", "RS256", false, "thumbprint", true, true, false},
		{"thumbprint kid v3, zero-led coordinate", "v3", "ES256", false, "thumbprint", false, true, true},
		// An x5c that does not chain to the registry's roots is refused, even though the
		// registry trusts the key by kid: there is no fallback.
		{"x5c outside a JWKS-only registry", "v3", "ES256", true, "thumbprint", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.zeroPad {
				writeZeroLedKey(t, dir)
			}
			regAddr := freeAddr(t)
			srv := startServe(t, dir, serveOptions{services: []string{regAddr}, alg: tt.alg, withCert: tt.x5c, kid: tt.kid})
			trust := registryTrust{rootCertBundle: filepath.Join(dir, "signing-cert.pem")}
			if tt.jwksOnly {
				trust = registryTrust{jwks: srv.writeJWKS(t, dir)}
			}
			reg := startRegistryAt(t, tt.registry, regAddr, srv.realm(), "regoauth-e2e", trust)
			key := srv.account(t, "alice")
			srv.cli(t, "grants", "add", "--account", "alice", "--repo", "alice/*", "--actions", "pull,push")
			r := c.push(t, reg.Addr+"/alice/app", "alice", key)
			if (r.code == 0) != tt.wantOK {
				t.Fatalf("push exit %d, want success=%v:\n%s", r.code, tt.wantOK, r.out)
			}
		})
	}
}

// writeJWKS writes `regoauth signing jwks` output and checks the server publishes the same set.
func (s *tokenServer) writeJWKS(t *testing.T, dir string) string {
	t.Helper()
	out := must(t, nil, binary, "signing", "jwks", "--config", filepath.Join(dir, "regoauth.yaml"))
	resp, err := http.Get("http://" + s.Addr + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	served, _ := io.ReadAll(resp.Body)
	if strings.TrimSpace(string(served)) != strings.TrimSpace(out) {
		t.Fatalf("/.well-known/jwks.json differs from `regoauth signing jwks`:\n%s\n%s", served, out)
	}
	p := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKeyRotation publishes the next key before it signs, so a registry reading a JWKS once at
// start accepts tokens from the old key and, after the switch, from the new one.
func TestKeyRotation(t *testing.T) {
	c := crane{bin: tool(t, "crane"), layer: layerTar(t, "rotation")}
	oldDir, newDir := t.TempDir(), t.TempDir()
	must(t, nil, binary, "signing", "generate", "--key", filepath.Join(newDir, "signing-key.pem"), "--cert", filepath.Join(newDir, "signing-cert.pem"))
	regAddr := freeAddr(t)

	// Before the switch: the old key signs, the new one is only published.
	old := startServe(t, oldDir, serveOptions{services: []string{regAddr}, publish: []string{filepath.Join(newDir, "signing-cert.pem")}})
	jwks := old.writeJWKS(t, oldDir)
	raw, _ := os.ReadFile(jwks)
	if n := strings.Count(string(raw), `"kid"`); n != 2 {
		t.Fatalf("JWKS lists %d keys, want the active and the next", n)
	}
	reg := startRegistryAt(t, "v3", regAddr, old.realm(), "regoauth-e2e", registryTrust{jwks: jwks})
	key := old.account(t, "alice")
	old.cli(t, "grants", "add", "--account", "alice", "--repo", "alice/*", "--actions", "pull,push")
	if r := c.push(t, reg.Addr+"/alice/app", "alice", key); r.code != 0 {
		t.Fatalf("push with the old key: %s", r.out)
	}
	old.proc.cmd.Process.Signal(os.Interrupt)
	<-old.proc.exited

	// After the switch: the new key signs over the same store, at the same address.
	if err := os.Rename(filepath.Join(oldDir, "store.db"), filepath.Join(newDir, "store.db")); err != nil {
		t.Fatal(err)
	}
	startServeAt(t, newDir, old.Addr, serveOptions{services: []string{regAddr}, publish: []string{filepath.Join(oldDir, "signing-cert.pem")}})
	if r := c.pull(t, reg.Addr+"/alice/app", "alice", key); r.code != 0 {
		t.Fatalf("pull with a token from the new key: %s", r.out)
	}
}

// TestAudienceAndCatalog: a token is good only at the registry it was issued for, and the
// catalog is for admins only, as the real registries enforce.
func TestAudienceAndCatalog(t *testing.T) {
	craneBin := tool(t, "crane")
	dir := t.TempDir()
	a, b := freeAddr(t), freeAddr(t)
	srv := startServe(t, dir, serveOptions{services: []string{a, b}, withCert: true})
	trust := registryTrust{rootCertBundle: filepath.Join(dir, "signing-cert.pem")}
	regA := startRegistryAt(t, "v3", a, srv.realm(), "regoauth-e2e", trust)
	regB := startRegistryAt(t, "v2.8", b, srv.realm(), "regoauth-e2e", trust)
	key := srv.account(t, "alice")
	srv.cli(t, "grants", "add", "--account", "alice", "--repo", "alice/*", "--actions", "pull,push")

	// A login probe's token (no access at all) opens /v2/; a token for A does not open B.
	tokA := bearer(t, srv, a, "alice", key, "")
	for _, tc := range []struct {
		reg, tok string
		want     int
	}{{regA.Addr, tokA, 200}, {regB.Addr, tokA, 401}, {regB.Addr, bearer(t, srv, b, "alice", key, ""), 200}} {
		req, _ := http.NewRequest("GET", "http://"+tc.reg+"/v2/", nil)
		req.Header.Set("Authorization", "Bearer "+tc.tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("GET %s/v2/: %d, want %d", tc.reg, resp.StatusCode, tc.want)
		}
	}

	// The registry answers a push with a pull-only token with 401 insufficient_scope.
	pullOnly := bearer(t, srv, a, "alice", key, "repository:alice/app:pull")
	req, _ := http.NewRequest("POST", "http://"+regA.Addr+"/v2/alice/app/blobs/uploads/", nil)
	req.Header.Set("Authorization", "Bearer "+pullOnly)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if challenge := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || !strings.Contains(challenge, `error="insufficient_scope"`) {
		t.Fatalf("push with a pull-only token: %d %q", resp.StatusCode, challenge)
	}

	c := crane{bin: craneBin, layer: layerTar(t, "catalog")}
	if r := c.push(t, regA.Addr+"/alice/app", "alice", key); r.code != 0 {
		t.Fatal(r.out)
	}
	cfg := func(user, k string) []string {
		env := []string{"DOCKER_CONFIG=" + t.TempDir()}
		must(t, env, craneBin, "auth", "login", regA.Addr, "-u", user, "-p", k)
		return env
	}
	if out := must(t, cfg("admin", srv.AdminKey), craneBin, "catalog", regA.Addr); !strings.Contains(out, "alice/app") {
		t.Fatalf("admin's catalog: %q", out)
	}
	refused(t, cfg("alice", key), craneBin, "catalog", regA.Addr)
}

// bearer gets a token for service with the given scope ("" for a login probe).
func bearer(t *testing.T, s *tokenServer, service, user, key, scope string) string {
	t.Helper()
	q := url.Values{"service": {service}}
	if scope != "" {
		q.Set("scope", scope)
	}
	req, _ := http.NewRequest("GET", s.realm()+"?"+q.Encode(), nil)
	req.SetBasicAuth(user, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token string `json:"token"`
	}
	if err := jsonDecode(resp, &body); err != nil || body.Token == "" {
		t.Fatalf("no token (HTTP %d)", resp.StatusCode)
	}
	return body.Token
}

// writeZeroLedKey writes a P-256 signing key whose X or Y coordinate starts with a zero byte,
// and its certificate, where startServe looks for them.
func writeZeroLedKey(t *testing.T, dir string) {
	t.Helper()
	for i := 0; i < 5000; i++ {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		point, _ := priv.PublicKey.Bytes()
		if point[1] != 0 && point[33] != 0 {
			continue
		}
		cert, err := tokens.SelfSignedCertificate(priv, "regoauth-e2e", time.Now().Add(-time.Hour), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := tokens.EncodePrivateKeyPEM(priv)
		os.WriteFile(filepath.Join(dir, "signing-key.pem"), keyPEM, 0o600)
		os.WriteFile(filepath.Join(dir, "signing-cert.pem"), tokens.EncodeCertificatesPEM(cert), 0o644)
		return
	}
	t.Fatal("no zero-led key in 5000 tries")
}
