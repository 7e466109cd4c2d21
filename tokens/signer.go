package tokens

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-jose/go-jose/v4"
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

// Signer issues registry tokens with one active key.
type Signer struct {
	key    *Key
	signer jose.Signer
	issuer string
	ttl    time.Duration
	now    func() time.Time
	random io.Reader
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
	so := (&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), key.KID)
	if len(key.Chain) > 0 {
		x5c := make([]string, len(key.Chain))
		for i, c := range key.Chain {
			x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
		}
		so = so.WithHeader(jose.HeaderKey("x5c"), x5c)
	}
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: key.Algorithm, Key: key.Private}, so)
	if err != nil {
		return nil, fmt.Errorf("preparing signer: %w", err)
	}
	s := &Signer{key: key, signer: js, issuer: opts.Issuer, ttl: opts.TTL, now: opts.Now, random: opts.Random}
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
	payload, err := json.Marshal(c)
	if err != nil {
		return Token{}, err
	}
	obj, err := s.signer.Sign(payload)
	if err != nil {
		return Token{}, fmt.Errorf("signing: %w", err)
	}
	raw, err := obj.CompactSerialize()
	if err != nil {
		return Token{}, err
	}
	return Token{Raw: raw, IssuedAt: now, ExpiresIn: s.ttl, Claims: c}, nil
}
