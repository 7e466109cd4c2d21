package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/tokens"
)

// TestKeyModes proves each way a registry can find the signing key, with real registries.
// x5c rows use a certificate issued by a certificate authority and registries that trust only
// the authority: they cannot know the key but through the token's x5c (the control rows show
// the same registries refusing the same key without x5c). kid rows give the registry the key
// itself, in each kid mode, and a JWKS file. A refusal counts only as the registry's own: its
// log names the token invalid.
func TestKeyModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		registry string // v3 or v2.8
		alg      string
		kid      string
		x5c      bool // tokens carry the certificate chain
		caIssued bool // an authority issued the certificate; the registry trusts only the authority
		jwksOnly bool // the registry trusts only `regoauth signing jwks` output
		// zeroPad uses a P-256 key whose X or Y starts with a zero byte, where distribution's
		// thumbprint departs from RFC 7638.
		zeroPad bool
		wantOK  bool
	}{
		{name: "ES256 x5c v3", registry: "v3", alg: "ES256", kid: "thumbprint", x5c: true, caIssued: true, wantOK: true},
		{name: "ES384 x5c v3", registry: "v3", alg: "ES384", kid: "thumbprint", x5c: true, caIssued: true, wantOK: true},
		{name: "RS256 x5c v3", registry: "v3", alg: "RS256", kid: "thumbprint", x5c: true, caIssued: true, wantOK: true},
		{name: "ES256 x5c v2.8", registry: "v2.8", alg: "ES256", kid: "thumbprint", x5c: true, caIssued: true, wantOK: true},
		{name: "ES384 x5c v2.8", registry: "v2.8", alg: "ES384", kid: "libtrust", x5c: true, caIssued: true, wantOK: true},
		{name: "RS256 x5c v2.8", registry: "v2.8", alg: "RS256", kid: "thumbprint", x5c: true, caIssued: true, wantOK: true},
		// The controls: without x5c, a registry trusting only the authority cannot find the key.
		{name: "no x5c with authority-only trust refused by v3", registry: "v3", alg: "ES256", kid: "thumbprint", caIssued: true},
		{name: "no x5c with authority-only trust refused by v2.8", registry: "v2.8", alg: "ES256", kid: "libtrust", caIssued: true},
		{name: "thumbprint kid v3", registry: "v3", alg: "ES256", kid: "thumbprint", wantOK: true},
		{name: "RS256 thumbprint kid v3", registry: "v3", alg: "RS256", kid: "thumbprint", wantOK: true},
		{name: "libtrust kid v2.8", registry: "v2.8", alg: "ES256", kid: "libtrust", wantOK: true},
		{name: "RS256 libtrust kid v2.8", registry: "v2.8", alg: "RS256", kid: "libtrust", wantOK: true},
		// Why the modes exist: each registry version resolves only its own kid form.
		{name: "thumbprint kid refused by v2.8", registry: "v2.8", alg: "ES256", kid: "thumbprint"},
		{name: "libtrust kid refused by v3", registry: "v3", alg: "ES256", kid: "libtrust"},
		{name: "JWKS v3", registry: "v3", alg: "ES256", kid: "thumbprint", jwksOnly: true, wantOK: true},
		{name: "JWKS RS256 v3", registry: "v3", alg: "RS256", kid: "thumbprint", jwksOnly: true, wantOK: true},
		{name: "thumbprint kid v3 with a zero-led coordinate", registry: "v3", alg: "ES256", kid: "thumbprint", zeroPad: true, wantOK: true},
		// An x5c that does not chain to the registry's roots is refused, even though the
		// registry trusts the key by kid: there is no fallback.
		{name: "x5c outside a JWKS-only registry", registry: "v3", alg: "ES256", kid: "thumbprint", x5c: true, jwksOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tt.zeroPad {
				writeZeroLedKey(t, dir)
			}
			regAddr := freeAddr(t)
			srv := startServer(t, serveConfig{dir: dir, services: []string{regAddr}, alg: tt.alg, kid: tt.kid, x5c: tt.x5c, caIssued: tt.caIssued})
			trust := registryTrust{}
			if tt.jwksOnly {
				trust.jwks = writeJWKS(t, srv)
			}
			reg := startRegistry(t, tt.registry, regAddr, srv, trust)
			key := srv.account(t, "alice")
			srv.admin(t, "grants", "add", "--account", "alice", "--repo", "alice/*", "--actions", "pull,push")
			s := newSession(t, "crane", srv, reg, "alice", key)
			s.login()
			since := reg.mark()
			r := s.steps.push(s, "alice/app")
			if (r.code == 0) != tt.wantOK {
				t.Fatalf("push exit %d, want success=%v:\n%s", r.code, tt.wantOK, r.out)
			}
			if tt.wantOK {
				if status, _, _ := reg.manifest(t, srv, "alice/app", "1"); status != http.StatusOK {
					t.Fatalf("the registry answers %d for the pushed manifest", status)
				}
			} else if !reg.refused(since, "alice/app", "invalid token") {
				t.Fatalf("the registry did not refuse the token as invalid; it logged:\n%v\nthe client said:\n%s", reg.requests(since), r.out)
			}
		})
	}
}

// writeJWKS writes `regoauth signing jwks` output beside the server's configuration and checks
// the server publishes the same set.
func writeJWKS(t *testing.T, s *server) string {
	t.Helper()
	out := must(t, nil, binary, "signing", "jwks", "--config", filepath.Join(s.Dir, "regoauth.yaml"))
	resp, err := http.Get("http://" + s.Addr + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	served, _ := io.ReadAll(resp.Body)
	if strings.TrimSpace(string(served)) != strings.TrimSpace(out) {
		t.Fatalf("/.well-known/jwks.json differs from `regoauth signing jwks`:\n%s\n%s", served, out)
	}
	return writeFile(t, filepath.Join(s.Dir, "jwks.json"), out, 0o644)
}

// TestKeyRotation publishes the next key before it signs, so a registry reading a JWKS once at
// start accepts tokens from the old key and, after the switch, from the new one.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldDir, newDir := t.TempDir(), t.TempDir()
	generateSigningKey(t, newDir, "ES256", false)
	regAddr := freeAddr(t)

	// Before the switch: the old key signs, the new one is only published.
	old := startServer(t, serveConfig{dir: oldDir, services: []string{regAddr}, publish: []string{filepath.Join(newDir, "signing-cert.pem")}})
	jwks := writeJWKS(t, old)
	if n := strings.Count(string(mustRead(t, jwks)), `"kid"`); n != 2 {
		t.Fatalf("JWKS lists %d keys, want the active and the next", n)
	}
	reg := startRegistry(t, "v3", regAddr, old, registryTrust{jwks: jwks})
	key := old.account(t, "alice")
	old.admin(t, "grants", "add", "--account", "alice", "--repo", "alice/*", "--actions", "pull,push")
	s := newSession(t, "crane", old, reg, "alice", key)
	s.login()
	if r := s.steps.push(s, "alice/app"); r.code != 0 {
		t.Fatalf("push with the old key: %s", r.out)
	}
	_, digest, _ := reg.manifest(t, old, "alice/app", "1")
	old.stop(t)

	// After the switch: the new key signs over the same store, at the same address.
	if err := os.Rename(filepath.Join(oldDir, "store.db"), filepath.Join(newDir, "store.db")); err != nil {
		t.Fatal(err)
	}
	s.srv = startServer(t, serveConfig{dir: newDir, addr: old.Addr, services: []string{regAddr}, publish: []string{filepath.Join(oldDir, "signing-cert.pem")}})
	if r, p := s.steps.pull(s, "alice/app"); r.code != 0 || p.digest != digest {
		t.Fatalf("pull with a token from the new key: digest %q, want %s\n%s", p.digest, digest, r.out)
	}
}

// TestAudienceAndCatalog: a token is good only at the registry it was issued for, and the
// catalog is for admins only, as the real registries enforce.
func TestAudienceAndCatalog(t *testing.T) {
	t.Parallel()
	craneBin := tool(t, "crane")
	a, b := freeAddr(t), freeAddr(t)
	srv := startServer(t, serveConfig{services: []string{a, b}, x5c: true})
	regA := startRegistry(t, "v3", a, srv, registryTrust{})
	regB := startRegistry(t, "v2.8", b, srv, registryTrust{})
	key := srv.account(t, "alice")
	srv.admin(t, "grants", "add", "--account", "alice", "--repo", "alice/*", "--actions", "pull,push")
	bearer := func(service, scope string) string {
		t.Helper()
		req := tokenRequest{user: "alice", key: key, service: service}
		if scope != "" {
			req.scopes = []string{scope}
		}
		r := srv.token(req)
		if r.status != http.StatusOK || r.err != nil {
			t.Fatalf("token: HTTP %d %v", r.status, r.err)
		}
		return r.body["token"].(string)
	}
	send := func(method, url, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// A login probe's token (no access at all) opens /v2/; a token for A does not open B.
	tokA := bearer(a, "")
	for _, tc := range []struct {
		reg, tok string
		want     int
	}{{regA.Addr, tokA, 200}, {regB.Addr, tokA, 401}, {regB.Addr, bearer(b, ""), 200}} {
		if resp := send("GET", "http://"+tc.reg+"/v2/", tc.tok); resp.StatusCode != tc.want {
			t.Fatalf("GET %s/v2/: %d, want %d", tc.reg, resp.StatusCode, tc.want)
		}
	}

	// The registry answers a push with a pull-only token with 401 insufficient_scope.
	resp := send("POST", "http://"+regA.Addr+"/v2/alice/app/blobs/uploads/", bearer(a, "repository:alice/app:pull"))
	if challenge := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || !strings.Contains(challenge, `error="insufficient_scope"`) {
		t.Fatalf("push with a pull-only token: %d %q", resp.StatusCode, challenge)
	}

	s := newSession(t, "crane", srv, regA, "alice", key)
	s.login()
	if r := s.steps.push(s, "alice/app"); r.code != 0 {
		t.Fatal(r.out)
	}
	admin := newSession(t, "crane", srv, regA, "admin", srv.AdminKey)
	admin.login()
	if r := admin.run(craneBin, "catalog", regA.Addr); r.code != 0 || !slices.Contains(strings.Fields(r.out), "alice/app") {
		t.Fatalf("admin's catalog: exit %d %q", r.code, r.out)
	}
	since := regA.mark()
	if r := s.run(craneBin, "catalog", regA.Addr); r.code == 0 {
		t.Fatalf("alice read the catalog: %s", r.out)
	}
	if !regA.refused(since, "_catalog", "insufficient scope") {
		t.Fatalf("the registry did not refuse alice's catalog request for insufficient scope: %v", regA.requests(since))
	}
}

// writeZeroLedKey writes a P-256 signing key whose X or Y coordinate starts with a zero byte,
// and its certificate, where startServer looks for them.
func writeZeroLedKey(t *testing.T, dir string) {
	t.Helper()
	for range 5000 {
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
		writeFile(t, filepath.Join(dir, "signing-key.pem"), string(keyPEM), 0o600)
		writeFile(t, filepath.Join(dir, "signing-cert.pem"), string(tokens.EncodeCertificatesPEM(cert)), 0o644)
		return
	}
	t.Fatal("no zero-led key in 5000 tries")
}
