package tokens

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/go-jose/go-jose/v4"
)

// PublicKey is a verification key as registries see it: the key and the kid tokens name it by.
type PublicKey struct {
	Key       crypto.PublicKey
	KID       string
	Algorithm jose.SignatureAlgorithm
}

// PublicKey returns the verification half of a signing key.
func (k *Key) PublicKey() PublicKey {
	return PublicKey{Key: k.Public(), KID: k.KID, Algorithm: k.Algorithm}
}

// JWKS renders keys as a JSON Web Key Set, the file a distribution v3 registry's `jwks` option
// reads: it trusts each key under its "kid". Duplicate kids are an error, since a registry would
// keep only one of them.
func JWKS(keys ...PublicKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.KID] {
			return nil, fmt.Errorf("two published keys share the kid %q", k.KID)
		}
		seen[k.KID] = true
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Key, KeyID: k.KID, Algorithm: string(k.Algorithm), Use: "sig"})
	}
	return json.MarshalIndent(set, "", "  ")
}

// LoadPublicKeyFile reads a verification key from a PEM file holding a certificate (its leaf
// key), a public key, or a private key (its public half), and names it in the given kid mode.
func LoadPublicKeyFile(path string, mode KIDMode) (PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return PublicKey{}, err
	}
	pub, err := parsePublicPEM(raw)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	alg, err := algorithmFor(pub)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	kid, err := KeyID(pub, mode)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return PublicKey{Key: pub, KID: kid, Algorithm: alg}, nil
}

func parsePublicPEM(raw []byte) (crypto.PublicKey, error) {
	if certs, err := ParseCertificatesPEM(raw); err == nil {
		return certs[0].PublicKey, nil
	}
	if priv, err := ParsePrivateKeyPEM(raw); err == nil {
		return priv.Public(), nil
	}
	for rest := raw; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "PUBLIC KEY" {
			return parsePKIX(block.Bytes)
		}
	}
	return nil, errors.New("no CERTIFICATE, PUBLIC KEY or private key PEM block found")
}

func parsePKIX(der []byte) (crypto.PublicKey, error) { return x509.ParsePKIXPublicKey(der) }
