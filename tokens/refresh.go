package tokens

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Refresh tokens are what `docker login` stores as its identity token and what clients later
// trade (grant_type=refresh_token) for access tokens. They are bound to an account, the API key
// they were obtained with, and a service. They carry no rights: each use loads the key again,
// so revoking the key or disabling the account kills its refresh tokens at once, and the policy
// decides afresh. A refresh token is reusable until it expires, because docker keeps the first
// one it gets and ignores rotated ones.
//
// Form: "rrt_" base64url(JSON claims) "." base64url(HMAC-SHA256). They are checked only by
// regoauth (never by a registry), so a symmetric secret shared by the replicas is enough.

// RefreshPrefix starts every refresh token.
const RefreshPrefix = "rrt_"

// MinRefreshSecret is the shortest accepted secret.
const MinRefreshSecret = 32

// ErrInvalidRefresh is every reason a refresh token is refused.
var ErrInvalidRefresh = errors.New("invalid refresh token")

// RefreshClaims is what a refresh token binds.
type RefreshClaims struct {
	Account  string `json:"acct"`
	KeyID    string `json:"kid"`
	Service  string `json:"svc"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	Nonce    string `json:"n"`
}

// RefreshCodec issues and verifies refresh tokens.
type RefreshCodec struct {
	secrets [][]byte // the first signs; all verify (rotation)
	ttl     time.Duration
	now     func() time.Time
	random  io.Reader
}

// NewRefreshCodec signs with secrets[0] and accepts any of secrets.
func NewRefreshCodec(secrets [][]byte, ttl time.Duration, now func() time.Time) (*RefreshCodec, error) {
	if len(secrets) == 0 {
		return nil, errors.New("refresh tokens need a secret")
	}
	for i, s := range secrets {
		if len(s) < MinRefreshSecret {
			return nil, fmt.Errorf("refresh token secret %d is %d bytes; at least %d are required", i, len(s), MinRefreshSecret)
		}
	}
	if ttl < time.Minute {
		return nil, fmt.Errorf("refresh token TTL %s is below one minute", ttl)
	}
	if now == nil {
		now = time.Now
	}
	return &RefreshCodec{secrets: secrets, ttl: ttl, now: now, random: rand.Reader}, nil
}

// WithRandom returns a copy of the codec that draws token nonces from r (crypto/rand by
// default), so that tests can issue the same tokens in every run.
func (c *RefreshCodec) WithRandom(r io.Reader) *RefreshCodec {
	d := *c
	d.random = r
	return &d
}

// TTL is how long issued refresh tokens live.
func (c *RefreshCodec) TTL() time.Duration { return c.ttl }

// Issue returns a refresh token for the account's key and service.
func (c *RefreshCodec) Issue(account, keyID, service string) (string, error) {
	for _, v := range []string{account, keyID, service} {
		// JSON would turn invalid UTF-8 into U+FFFD: the token would name someone else.
		if v == "" || !utf8.ValidString(v) {
			return "", fmt.Errorf("refresh token claims must be non-empty UTF-8: account %q, key %q, service %q", account, keyID, service)
		}
	}
	var nonce [12]byte
	if _, err := io.ReadFull(c.random, nonce[:]); err != nil {
		return "", err
	}
	now := c.now()
	claims, err := json.Marshal(RefreshClaims{
		Account: account, KeyID: keyID, Service: service,
		IssuedAt: now.Unix(), Expiry: now.Add(c.ttl).Unix(),
		Nonce: base64.RawURLEncoding.EncodeToString(nonce[:]),
	})
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(claims)
	return RefreshPrefix + payload + "." + base64.RawURLEncoding.EncodeToString(mac(c.secrets[0], payload)), nil
}

func mac(secret []byte, payload string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(payload))
	return h.Sum(nil)
}

// IsRefreshToken reports whether s has the form of a refresh token (it may still be invalid).
func IsRefreshToken(s string) bool { return strings.HasPrefix(s, RefreshPrefix) }

// Verify checks the token's signature and expiry and returns its claims. The caller still checks
// that the key and account behind it are valid, and that the service matches the request.
func (c *RefreshCodec) Verify(token string) (RefreshClaims, error) {
	payload, sig, ok := strings.Cut(strings.TrimPrefix(token, RefreshPrefix), ".")
	if !IsRefreshToken(token) || !ok || len(token) > 1024 {
		return RefreshClaims{}, fmt.Errorf("%w: malformed", ErrInvalidRefresh)
	}
	// The signature is compared in its encoded form: decoding would accept other spellings of
	// the same bytes (line breaks, padding bits), so one token would have many valid strings.
	valid := false
	for _, s := range c.secrets {
		if hmac.Equal([]byte(sig), []byte(base64.RawURLEncoding.EncodeToString(mac(s, payload)))) {
			valid = true
		}
	}
	if !valid {
		return RefreshClaims{}, fmt.Errorf("%w: bad signature", ErrInvalidRefresh)
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return RefreshClaims{}, fmt.Errorf("%w: malformed claims", ErrInvalidRefresh)
	}
	var claims RefreshClaims
	if err := json.Unmarshal(raw, &claims); err != nil || claims.Account == "" || claims.KeyID == "" || claims.Service == "" {
		return RefreshClaims{}, fmt.Errorf("%w: incomplete claims", ErrInvalidRefresh)
	}
	// A token ends at its own expiry or at its issue plus the codec's ttl, whichever comes
	// first: shortening refresh_tokens.ttl shortens the tokens already handed out too.
	end := min(claims.Expiry, time.Unix(claims.IssuedAt, 0).Add(c.ttl).Unix())
	if !c.now().Before(time.Unix(end, 0)) {
		return RefreshClaims{}, fmt.Errorf("%w: expired", ErrInvalidRefresh)
	}
	return claims, nil
}
