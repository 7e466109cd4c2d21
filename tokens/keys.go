// Package tokens owns registry token signing: signing keys (PEM files or generated), the key id
// forms registries look keys up by, certificate chains for x5c, JWKS export and the claims a
// registry reads. It knows nothing about HTTP.
package tokens

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"time"

	"github.com/docker/libtrust"
	"github.com/go-jose/go-jose/v4"
)

// KIDMode says how the "kid" header is computed from the public key.
type KIDMode string

const (
	// KIDThumbprint is the JWK thumbprint exactly as distribution v3 computes it for the keys
	// in its rootcertbundle (RFC 7638 with unpadded EC coordinates).
	KIDThumbprint KIDMode = "thumbprint"
	// KIDLibtrust is the libtrust fingerprint distribution v2.8 looks keys up by.
	KIDLibtrust KIDMode = "libtrust"
)

// Algorithms this package signs with. All of them are accepted by distribution v2.8 and v3.
var Algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256}

// Key is a signing key with the certificate chain and key id published beside its tokens.
type Key struct {
	Private   crypto.Signer
	Algorithm jose.SignatureAlgorithm
	// Chain is the certificate chain, leaf first; empty when no certificate is configured.
	Chain []*x509.Certificate
	KID   string
}

// Public returns the public half.
func (k *Key) Public() crypto.PublicKey { return k.Private.Public() }

// NewKey describes priv for signing: it derives the algorithm from the key, checks that the
// leaf certificate (if any) holds the same public key, and computes the kid.
func NewKey(priv crypto.Signer, chain []*x509.Certificate, mode KIDMode) (*Key, error) {
	alg, err := algorithmFor(priv.Public())
	if err != nil {
		return nil, err
	}
	if len(chain) > 0 {
		leafKey, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !leafKey.Equal(priv.Public()) {
			return nil, errors.New("the certificate does not belong to the signing key (the first certificate must be the leaf)")
		}
	}
	kid, err := KeyID(priv.Public(), mode)
	if err != nil {
		return nil, err
	}
	return &Key{Private: priv, Algorithm: alg, Chain: chain, KID: kid}, nil
}

func algorithmFor(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
		return "", fmt.Errorf("unsupported EC curve %s (use P-256 or P-384)", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key of %d bits is too small (use 2048 or more)", k.N.BitLen())
		}
		return jose.RS256, nil
	}
	return "", fmt.Errorf("unsupported key type %T (use EC P-256, P-384 or RSA)", pub)
}

// KeyID computes the kid of pub in the given mode.
func KeyID(pub crypto.PublicKey, mode KIDMode) (string, error) {
	switch mode {
	case KIDThumbprint, "":
		return distributionThumbprint(pub)
	case KIDLibtrust:
		k, err := libtrust.FromCryptoPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("libtrust kid: %w", err)
		}
		return k.KeyID(), nil
	}
	return "", fmt.Errorf("unknown kid mode %q (use %q or %q)", mode, KIDThumbprint, KIDLibtrust)
}

// distributionThumbprint is the SHA-256 JWK thumbprint of pub computed the way distribution v3
// does for its trusted keys: members in lexicographic order, integers big-endian without
// leading zero bytes. For EC keys that differs from RFC 7638 (which pads coordinates to the
// field size) for about 1 key in 128; matching distribution is what makes the kid resolve.
func distributionThumbprint(pub crypto.PublicKey) (string, error) {
	var payload string
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		point, err := k.Bytes() // 0x04 || X || Y, each padded to the field size
		if err != nil {
			return "", err
		}
		size := (len(point) - 1) / 2
		x, y := trimLeadingZeros(point[1:1+size]), trimLeadingZeros(point[1+size:])
		payload = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, k.Curve.Params().Name, b64url(x), b64url(y))
	case *rsa.PublicKey:
		e := big.NewInt(int64(k.E)).Bytes()
		payload = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, b64url(e), b64url(k.N.Bytes()))
	default:
		return "", fmt.Errorf("thumbprint kid: unsupported key type %T", pub)
	}
	sum := sha256.Sum256([]byte(payload))
	return b64url(sum[:]), nil
}

func trimLeadingZeros(b []byte) []byte { return bytes.TrimLeft(b, "\x00") }

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// GenerateKey creates a private key for alg.
func GenerateKey(alg jose.SignatureAlgorithm, random io.Reader) (crypto.Signer, error) {
	switch alg {
	case jose.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), random)
	case jose.ES384:
		return ecdsa.GenerateKey(elliptic.P384(), random)
	case jose.RS256:
		return rsa.GenerateKey(random, 3072)
	}
	return nil, fmt.Errorf("cannot generate a key for %q (use ES256, ES384 or RS256)", alg)
}

// SelfSignedCertificate issues a certificate for key, signed by itself, valid from notBefore
// for validity. Registries use it as their rootcertbundle.
func SelfSignedCertificate(key crypto.Signer, commonName string, notBefore time.Time, validity time.Duration) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return createCertificate(tmpl, tmpl, key.Public(), key)
}

// IssueCertificate issues a certificate for pub signed by a certificate authority, valid from
// notBefore for validity but never beyond the authority's own expiry. Registries that trust the
// authority (its certificate in their rootcertbundle) accept tokens whose x5c chain holds this
// certificate, without knowing its key. It is a leaf: it signs tokens, not certificates.
func IssueCertificate(pub crypto.PublicKey, commonName string, notBefore time.Time, validity time.Duration, ca *x509.Certificate, caKey crypto.Signer) (*x509.Certificate, error) {
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("the authority's certificate may not sign certificates (it is not a CA)")
	}
	if caPub, ok := ca.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !caPub.Equal(caKey.Public()) {
		return nil, errors.New("the authority's key does not belong to its certificate")
	}
	notAfter := notBefore.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("the authority's certificate expired at %s", ca.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	return createCertificate(tmpl, ca, pub, caKey)
}

// createCertificate signs tmpl, given a random serial number, with parent's key.
func createCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// ParsePrivateKeyPEM reads a PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) private key.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no private key PEM block found")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
		return signer, nil
	}
}

// ParseCertificatesPEM reads every certificate in data, in order.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block found")
	}
	return certs, nil
}

// EncodePrivateKeyPEM encodes key as PKCS#8.
func EncodePrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodeCertificatesPEM encodes certificates in order.
func EncodeCertificatesPEM(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// LoadKeyFiles reads a private key and, when certPath is not empty, its certificate chain.
func LoadKeyFiles(keyPath, certPath string, mode KIDMode) (*Key, error) {
	raw, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	priv, err := ParsePrivateKeyPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	var chain []*x509.Certificate
	if certPath != "" {
		raw, err := os.ReadFile(certPath)
		if err != nil {
			return nil, err
		}
		if chain, err = ParseCertificatesPEM(raw); err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
	}
	k, err := NewKey(priv, chain, mode)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	return k, nil
}
