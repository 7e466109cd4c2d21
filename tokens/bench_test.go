package tokens_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/tokens"
)

// BenchmarkRawES256 is the baseline every figure is reported against: one bare P-256
// signature over a SHA-256 digest, no JWT around it.
func BenchmarkRawES256(b *testing.B) {
	k := newKey(b, jose.ES256, false)
	digest := sha256.Sum256([]byte("header.payload"))
	priv := k.Private.(*ecdsa.PrivateKey)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, priv, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSign is a whole registry token: claims, header with kid and x5c, ES256 signature.
func BenchmarkSign(b *testing.B) {
	s := newSigner(b, newKey(b, jose.ES256, true))
	access := []tokens.Access{{Type: "repository", Name: "acme/app", Actions: []string{"pull", "push"}},
		{Type: "repository", Name: "acme/base", Actions: []string{"pull"}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign("user1", "registry.example.com", access); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawRS256 is one raw RS256 signature with a 2048-bit key: what a token server signing
// with an RSA key spends per token on the signature alone, for comparison.
func BenchmarkRawRS256(b *testing.B) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("header.payload"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}
