package tokens

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// MinTTL is the shortest token lifetime: clients assume a token lives at least a minute.
const MinTTL = 60 * time.Second

// Access is one resource and the actions granted on it, as registries read it.
type Access struct {
	Type    string   `json:"type"`
	Class   string   `json:"class,omitempty"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Claims is the payload of a registry token. Audience is a single string on purpose:
// distribution v2.8 rejects an array.
type Claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  string   `json:"aud"`
	Expiry    int64    `json:"exp"`
	NotBefore int64    `json:"nbf"`
	IssuedAt  int64    `json:"iat"`
	ID        string   `json:"jti"`
	Access    []Access `json:"access"`
}

// Signer issues registry tokens with one active key. The protected header never changes for a
// key, so it is encoded once; each token costs its claims, one digest and one signature.
type Signer struct {
	key    *Key
	issuer string
	ttl    time.Duration
	now    func() time.Time
	random io.Reader
	// header is the base64url protected header followed by the ".".
	header []byte
	hash   crypto.Hash
	// ecSize is the size of each of r and s in an ECDSA signature (0 for RSA): JWS (RFC 7518
	// section 3.4) wants them as fixed-size big-endian integers, not in ASN.1.
	ecSize int
	// sigLen is the length of a signature in the token.
	sigLen int
}

// SignerOptions configure a Signer.
type SignerOptions struct {
	Issuer string
	TTL    time.Duration
	// Now and Random default to time.Now and crypto/rand; tests inject their own.
	Now    func() time.Time
	Random io.Reader
}

// NewSigner prepares key for signing. The protected header carries kid, and x5c when the key
// has a certificate chain: x5c is the one form distribution v2.8 and v3 both accept.
func NewSigner(key *Key, opts SignerOptions) (*Signer, error) {
	if opts.Issuer == "" {
		return nil, errors.New("an issuer is required")
	}
	if opts.TTL < MinTTL {
		return nil, fmt.Errorf("token TTL %s is below the minimum of %s", opts.TTL, MinTTL)
	}
	s := &Signer{key: key, issuer: opts.Issuer, ttl: opts.TTL, now: opts.Now, random: opts.Random}
	switch key.Algorithm {
	case jose.ES256:
		s.hash, s.ecSize = crypto.SHA256, 32
	case jose.ES384:
		s.hash, s.ecSize = crypto.SHA384, 48
	case jose.RS256:
		pub, ok := key.Public().(*rsa.PublicKey)
		if !ok {
			return nil, errors.New("preparing signer: RS256 needs an RSA key")
		}
		s.hash, s.sigLen = crypto.SHA256, pub.Size()
	default:
		return nil, fmt.Errorf("preparing signer: unsupported algorithm %q", key.Algorithm)
	}
	header := struct {
		Alg string   `json:"alg"`
		Kid string   `json:"kid"`
		Typ string   `json:"typ"`
		X5c []string `json:"x5c,omitempty"`
	}{Alg: string(key.Algorithm), Kid: key.KID, Typ: "JWT"}
	for _, c := range key.Chain {
		header.X5c = append(header.X5c, base64.StdEncoding.EncodeToString(c.Raw))
	}
	raw, err := json.Marshal(header)
	if err != nil {
		return nil, fmt.Errorf("preparing signer: %w", err)
	}
	s.header = append(base64.RawURLEncoding.AppendEncode(nil, raw), '.')
	if s.ecSize > 0 {
		s.sigLen = 2 * s.ecSize
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.random == nil {
		s.random = rand.Reader
	}
	return s, nil
}

// Key returns the active signing key.
func (s *Signer) Key() *Key { return s.key }

// Token is a signed token with the times a response reports.
type Token struct {
	Raw       string
	IssuedAt  time.Time
	ExpiresIn time.Duration
	Claims    Claims
}

// Sign issues a token for subject, valid for audience, carrying access.
func (s *Signer) Sign(subject, audience string, access []Access) (Token, error) {
	now := s.now().UTC().Truncate(time.Second)
	var jti [16]byte
	if _, err := io.ReadFull(s.random, jti[:]); err != nil {
		return Token{}, fmt.Errorf("reading random: %w", err)
	}
	if access == nil {
		access = []Access{}
	}
	c := Claims{
		Issuer:    s.issuer,
		Subject:   subject,
		Audience:  audience,
		Expiry:    now.Add(s.ttl).Unix(),
		NotBefore: now.Unix(),
		IssuedAt:  now.Unix(),
		ID:        hex.EncodeToString(jti[:]),
		Access:    access,
	}
	var buf [1024]byte
	payload := c.appendJSON(buf[:0])
	// One buffer holds the whole token: header, payload and signature, base64url each.
	enc := base64.RawURLEncoding
	out := make([]byte, 0, len(s.header)+enc.EncodedLen(len(payload))+1+enc.EncodedLen(s.sigLen))
	out = append(out, s.header...)
	out = enc.AppendEncode(out, payload)
	digest, err := s.digest(out)
	if err != nil {
		return Token{}, err
	}
	sig, err := s.key.Private.Sign(rand.Reader, digest, s.hash)
	if err != nil {
		return Token{}, fmt.Errorf("signing: %w", err)
	}
	if s.ecSize > 0 {
		var fixed [2 * 66]byte
		if sig, err = rawECDSA(fixed[:0], sig, s.ecSize); err != nil {
			return Token{}, fmt.Errorf("signing: %w", err)
		}
	}
	out = append(out, '.')
	out = enc.AppendEncode(out, sig)
	return Token{Raw: string(out), IssuedAt: now, ExpiresIn: s.ttl, Claims: c}, nil
}

func (s *Signer) digest(signingInput []byte) ([]byte, error) {
	switch s.hash {
	case crypto.SHA256:
		sum := sha256.Sum256(signingInput)
		return sum[:], nil
	case crypto.SHA384:
		sum := sha512.Sum384(signingInput)
		return sum[:], nil
	}
	return nil, fmt.Errorf("signing: unsupported hash %v", s.hash)
}

// rawECDSA appends to dst an ASN.1 ECDSA signature in the form JWS wants: r and s as size-byte
// big-endian integers, one after the other.
func rawECDSA(dst, der []byte, size int) ([]byte, error) {
	var r, sv cryptobyte.String
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!readUnsigned(&seq, &r) || !readUnsigned(&seq, &sv) || !seq.Empty() ||
		len(r) > size || len(sv) > size {
		return nil, errors.New("malformed ECDSA signature")
	}
	for _, v := range [2]cryptobyte.String{r, sv} {
		for range size - len(v) {
			dst = append(dst, 0)
		}
		dst = append(dst, v...)
	}
	return dst, nil
}

// readUnsigned reads a non-negative ASN.1 INTEGER as its big-endian bytes, leading zeros removed.
func readUnsigned(s *cryptobyte.String, out *cryptobyte.String) bool {
	var b cryptobyte.String
	if !s.ReadASN1(&b, asn1.INTEGER) || len(b) == 0 || b[0]&0x80 != 0 {
		return false
	}
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	*out = b
	return true
}
