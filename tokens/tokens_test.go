package tokens_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	disttoken "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/tokens"
)

func newKey(t testing.TB, alg jose.SignatureAlgorithm, withCert bool) *tokens.Key {
	t.Helper()
	priv, err := tokens.GenerateKey(alg, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	if withCert {
		cert, err := tokens.SelfSignedCertificate(priv, "test", time.Now().Add(-time.Hour), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		chain = []*x509.Certificate{cert}
	}
	k, err := tokens.NewKey(priv, chain, tokens.KIDThumbprint)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSigner(t testing.TB, k *tokens.Key) *tokens.Signer {
	t.Helper()
	s, err := tokens.NewSigner(k, tokens.SignerOptions{Issuer: "regoauth", TTL: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var access = []tokens.Access{{Type: "repository", Name: "image", Actions: []string{"pull"}}}

// TestDistributionVerifies proves that distribution v3's own token code accepts the tokens,
// through the x5c chain and through the kid alone, for every algorithm offered.
func TestDistributionVerifies(t *testing.T) {
	for _, alg := range tokens.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg, true)
			tok, err := newSigner(t, k).Sign("user1", "registry.example.com", access)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(k.Chain[0])

			t.Run("x5c", func(t *testing.T) {
				claims := verify(t, tok.Raw, disttoken.VerifyOptions{
					TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{"registry.example.com"}, Roots: roots,
				})
				if len(claims.Access) != 1 || claims.Access[0].Name != "image" || strings.Join(claims.Access[0].Actions, ",") != "pull" || claims.Subject != "user1" {
					t.Fatalf("claims = %+v", claims)
				}
			})
			t.Run("kid", func(t *testing.T) {
				// A registry configured with the rootcertbundle trusts the certificate's key
				// under distribution's own thumbprint; a token without x5c must resolve by kid.
				noCert := newKey(t, alg, false)
				tok, err := newSigner(t, noCert).Sign("user1", "registry.example.com", access)
				if err != nil {
					t.Fatal(err)
				}
				verify(t, tok.Raw, disttoken.VerifyOptions{
					TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{"registry.example.com"}, Roots: x509.NewCertPool(),
					TrustedKeys: map[string]crypto.PublicKey{disttoken.GetJWKThumbprint(noCert.Public()): noCert.Public()},
				})
			})
			t.Run("wrong audience", func(t *testing.T) {
				tk, err := disttoken.NewToken(tok.Raw, []jose.SignatureAlgorithm{alg})
				if err != nil {
					t.Fatal(err)
				}
				_, err = tk.Verify(disttoken.VerifyOptions{TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{"other"}, Roots: roots})
				if err == nil {
					t.Fatal("token verified for another audience")
				}
			})
		})
	}
}

// TestCAIssuedLeaf: a key whose certificate an operator's CA issued signs tokens that
// distribution accepts with only the CA in its roots, through x5c; the same key without x5c is
// not found, so x5c alone makes the token verifiable.
func TestCAIssuedLeaf(t *testing.T) {
	caKey, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	ca, err := tokens.SelfSignedCertificate(caKey, "example CA", time.Now().Add(-time.Hour), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	opts := disttoken.VerifyOptions{TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{"registry.example.com"}, Roots: roots,
		TrustedKeys: map[string]crypto.PublicKey{disttoken.GetJWKThumbprint(caKey.Public()): caKey.Public()}}
	for _, alg := range tokens.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			priv, _ := tokens.GenerateKey(alg, rand.Reader)
			leaf, err := tokens.IssueCertificate(priv.Public(), "token signer", time.Now().Add(-time.Minute), 365*24*time.Hour, ca, caKey)
			if err != nil {
				t.Fatal(err)
			}
			if leaf.IsCA || leaf.CheckSignatureFrom(ca) != nil || !leaf.NotAfter.Equal(ca.NotAfter) {
				t.Fatalf("leaf: CA %v, signature %v, not after %s (the CA's: %s)", leaf.IsCA, leaf.CheckSignatureFrom(ca), leaf.NotAfter, ca.NotAfter)
			}
			for _, chain := range [][]*x509.Certificate{{leaf}, {leaf, ca}} {
				k, err := tokens.NewKey(priv, chain, tokens.KIDThumbprint)
				if err != nil {
					t.Fatal(err)
				}
				tok, err := newSigner(t, k).Sign("user1", "registry.example.com", access)
				if err != nil {
					t.Fatal(err)
				}
				if claims := verify(t, tok.Raw, opts); claims.Subject != "user1" {
					t.Fatalf("claims = %+v", claims)
				}
			}
			bare, _ := tokens.NewKey(priv, nil, tokens.KIDThumbprint)
			tok, _ := newSigner(t, bare).Sign("user1", "registry.example.com", access)
			tk, _ := disttoken.NewToken(tok.Raw, []jose.SignatureAlgorithm{alg})
			if _, err := tk.Verify(opts); err == nil {
				t.Fatal("a token without x5c verified against the CA alone")
			}
		})
	}
}

func TestIssueCertificateRefuses(t *testing.T) {
	caKey, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	ca, _ := tokens.SelfSignedCertificate(caKey, "example CA", time.Now().Add(-time.Hour), time.Hour/2)
	otherKey, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	priv, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	live, _ := tokens.SelfSignedCertificate(caKey, "example CA", time.Now().Add(-time.Hour), 48*time.Hour)
	leaf, _ := tokens.IssueCertificate(priv.Public(), "leaf", time.Now(), time.Hour, live, caKey)
	for name, tt := range map[string]struct {
		ca  *x509.Certificate
		key crypto.Signer
		msg string
	}{
		"expired authority": {ca, caKey, "expired"},
		"foreign key":       {live, otherKey, "does not belong"},
		"a leaf as CA":      {leaf, priv, "not a CA"},
	} {
		if _, err := tokens.IssueCertificate(priv.Public(), "x", time.Now(), time.Hour, tt.ca, tt.key); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v, want an error with %q", name, err, tt.msg)
		}
	}
}

func verify(t *testing.T, raw string, opts disttoken.VerifyOptions) *disttoken.ClaimSet {
	t.Helper()
	tk, err := disttoken.NewToken(raw, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := tk.Verify(opts)
	if err != nil {
		t.Fatalf("distribution rejected the token: %v", err)
	}
	return claims
}

// TestThumbprintMatchesDistribution includes keys whose coordinates start with a zero byte, the
// case where distribution's computation departs from RFC 7638.
func TestThumbprintMatchesDistribution(t *testing.T) {
	var padded int
	for i := 0; i < 3000 && padded < 3; i++ {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		point, _ := priv.PublicKey.Bytes()
		if point[1] == 0 || point[33] == 0 {
			padded++
		} else if i > 20 {
			continue // enough ordinary keys seen; keep searching for padded ones only
		}
		assertSameKID(t, priv.Public())
	}
	if padded < 3 {
		t.Fatalf("found only %d keys with a leading zero coordinate", padded)
	}
	for _, alg := range []jose.SignatureAlgorithm{jose.ES384, jose.RS256} {
		priv, err := tokens.GenerateKey(alg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		assertSameKID(t, priv.Public())
	}
}

func assertSameKID(t *testing.T, pub crypto.PublicKey) {
	t.Helper()
	got, err := tokens.KeyID(pub, tokens.KIDThumbprint)
	if err != nil {
		t.Fatal(err)
	}
	if want := disttoken.GetJWKThumbprint(pub); got != want {
		t.Fatalf("kid = %s, distribution computes %s", got, want)
	}
}

func TestLibtrustKID(t *testing.T) {
	priv, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	kid, err := tokens.KeyID(priv.Public(), tokens.KIDLibtrust)
	if err != nil {
		t.Fatal(err)
	}
	// 30 bytes of SHA-256 in base32, 12 groups of 4 joined by ':'.
	if !regexp.MustCompile(`^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$`).MatchString(kid) {
		t.Fatalf("libtrust kid %q has the wrong form", kid)
	}
	if _, err := tokens.KeyID(priv.Public(), "sha1"); err == nil {
		t.Fatal("unknown kid mode accepted")
	}
}

func TestHeaderAndClaims(t *testing.T) {
	k := newKey(t, jose.ES256, true)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s, err := tokens.NewSigner(k, tokens.SignerOptions{Issuer: "iss", TTL: 90 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign("alice", "reg", nil)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok.Raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok.Raw)
	}
	var header struct {
		Alg string   `json:"alg"`
		Typ string   `json:"typ"`
		Kid string   `json:"kid"`
		X5c []string `json:"x5c"`
	}
	decodeSegment(t, parts[0], &header)
	if header.Alg != "ES256" || header.Typ != "JWT" || header.Kid != k.KID || len(header.X5c) != 1 {
		t.Fatalf("header = %+v", header)
	}
	der, err := base64.StdEncoding.DecodeString(header.X5c[0])
	if err != nil || !bytes.Equal(der, k.Chain[0].Raw) {
		t.Fatal("x5c is not the standard-base64 DER of the certificate")
	}
	var claims map[string]any
	decodeSegment(t, parts[1], &claims)
	if _, ok := claims["aud"].(string); !ok {
		t.Fatalf("aud is %T, want a single string", claims["aud"])
	}
	if claims["exp"] != float64(now.Add(90*time.Second).Unix()) || claims["nbf"] != float64(now.Unix()) || claims["iss"] != "iss" {
		t.Fatalf("claims = %v", claims)
	}
	if a, ok := claims["access"].([]any); !ok || len(a) != 0 {
		t.Fatalf("access = %#v, want an empty array", claims["access"])
	}
	if tok.ExpiresIn != 90*time.Second || !tok.IssuedAt.Equal(now) {
		t.Fatalf("token times = %v, %v", tok.IssuedAt, tok.ExpiresIn)
	}
	other, _ := s.Sign("alice", "reg", nil)
	if other.Claims.ID == tok.Claims.ID {
		t.Fatal("two tokens share a jti")
	}
}

func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

func TestSignerOptionsRejected(t *testing.T) {
	k := newKey(t, jose.ES256, false)
	if _, err := tokens.NewSigner(k, tokens.SignerOptions{Issuer: "x", TTL: 59 * time.Second}); err == nil {
		t.Error("TTL below 60s accepted")
	}
	if _, err := tokens.NewSigner(k, tokens.SignerOptions{TTL: time.Minute}); err == nil {
		t.Error("empty issuer accepted")
	}
}

func TestNewKeyRejectsForeignCertificate(t *testing.T) {
	a, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	b, _ := tokens.GenerateKey(jose.ES256, rand.Reader)
	cert, err := tokens.SelfSignedCertificate(b, "b", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.NewKey(a, []*x509.Certificate{cert}, tokens.KIDThumbprint); err == nil {
		t.Fatal("a certificate of another key was accepted")
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := tokens.NewKey(small, nil, tokens.KIDThumbprint); err == nil {
		t.Fatal("a 1024-bit RSA key was accepted")
	}
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if _, err := tokens.NewKey(p521, nil, tokens.KIDThumbprint); err == nil {
		t.Fatal("a P-521 key was accepted")
	}
}

func TestPEMForms(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs8, _ := tokens.EncodePrivateKeyPEM(ec)
	for name, data := range map[string][]byte{
		"pkcs8":           pkcs8,
		"sec1":            pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"pkcs1":           pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rs)}),
		"after EC PARAMS": append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8}}), pkcs8...),
	} {
		if _, err := tokens.ParsePrivateKeyPEM(data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := tokens.ParsePrivateKeyPEM([]byte("nonsense")); err == nil {
		t.Error("nonsense parsed as a key")
	}
	if _, err := tokens.ParseCertificatesPEM(pkcs8); err == nil {
		t.Error("a key parsed as a certificate")
	}
}

// TestJWKSIsAcceptedByDistribution round-trips the set the way a v3 registry's jwks option
// does: parse it with go-jose, trust each key under its kid, verify a kid-only token.
func TestJWKSIsAcceptedByDistribution(t *testing.T) {
	active := newKey(t, jose.ES256, false)
	previous := newKey(t, jose.RS256, false)
	raw, err := tokens.JWKS(active.PublicKey(), previous.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	trusted := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.Use != "sig" {
			t.Fatalf("key %s: public=%v use=%q", k.KeyID, k.IsPublic(), k.Use)
		}
		trusted[k.KeyID] = k.Public().Key
	}
	if len(trusted) != 2 {
		t.Fatalf("JWKS holds %d keys", len(trusted))
	}
	for _, k := range []*tokens.Key{active, previous} {
		tok, err := newSigner(t, k).Sign("user1", "registry.example.com", access)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, tok.Raw, disttoken.VerifyOptions{TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{"registry.example.com"},
			Roots: x509.NewCertPool(), TrustedKeys: trusted})
	}
	if _, err := tokens.JWKS(active.PublicKey(), active.PublicKey()); err == nil {
		t.Fatal("duplicate kid accepted")
	}
}

func TestLoadPublicKeyFile(t *testing.T) {
	k := newKey(t, jose.ES256, true)
	dir := t.TempDir()
	keyPEM, _ := tokens.EncodePrivateKeyPEM(k.Private)
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	files := map[string][]byte{
		"cert.pem": tokens.EncodeCertificatesPEM(k.Chain...),
		"key.pem":  keyPEM,
		"pub.pem":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		pk, err := tokens.LoadPublicKeyFile(p, tokens.KIDThumbprint)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if pk.KID != k.KID || pk.Algorithm != jose.ES256 {
			t.Fatalf("%s: %+v", name, pk)
		}
	}
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("nothing"), 0o600)
	if _, err := tokens.LoadPublicKeyFile(bad, tokens.KIDThumbprint); err == nil {
		t.Fatal("a file without a key was accepted")
	}
}
