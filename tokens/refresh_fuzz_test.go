package tokens_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/regoauth/regoauth/tokens"
)

// FuzzRefreshVerify: a refresh token is a bearer credential checked by regoauth alone, so
// anything a client can send must either be refused with ErrInvalidRefresh or be, byte for byte,
// a token this codec issued: no other string may verify, not even one that decodes to the same
// claims.
func FuzzRefreshVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	c, err := tokens.NewRefreshCodec([][]byte{secretA}, time.Hour, func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	// The fuzzing workers run this setup again: the same nonces give them the same tokens.
	c = c.WithRandom(rand.NewChaCha8([32]byte{1}))
	issued := map[string]tokens.RefreshClaims{}
	for _, acct := range []string{"alice", "bob"} {
		tok, err := c.Issue(acct, "aaaaaaaaaaaaaaaa", "registry.example.com")
		if err != nil {
			f.Fatal(err)
		}
		claims, err := c.Verify(tok)
		if err != nil {
			f.Fatal(err)
		}
		issued[tok] = claims
		f.Add(tok)
		f.Add(tok[:len(tok)-1])
		f.Add(strings.Replace(tok, ".", "..", 1))
	}
	for _, s := range []string{"", "rrt_", "rrt_.", "rrt_e30.", "rrt_bnVsbA.AAAA", "rak_aaaaaaaaaaaaaaaa_bbbb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		claims, err := c.Verify(s)
		if err != nil {
			if !errors.Is(err, tokens.ErrInvalidRefresh) {
				t.Fatalf("Verify(%q) failed with %v, not ErrInvalidRefresh", s, err)
			}
			return
		}
		want, ok := issued[s]
		if !ok {
			t.Fatalf("Verify accepted %q, which was never issued (claims %+v)", s, claims)
		}
		if claims != want {
			t.Fatalf("Verify(%q) = %+v, issued with %+v", s, claims, want)
		}
	})
}

// FuzzRefreshRoundTrip: whatever account, key id and service a token is issued for, verifying
// it gives them back unchanged, and changing any one byte of it makes it invalid.
func FuzzRefreshRoundTrip(f *testing.F) {
	f.Add("alice", "aaaaaaaaaaaaaaaa", "registry.example.com", 10)
	f.Add("a\"b", "k\x00", "svc\u2028", 0)
	f.Add("", "k", "s", 3)
	now := time.Unix(1_800_000_000, 0)
	c, err := tokens.NewRefreshCodec([][]byte{secretA}, time.Hour, func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, account, keyID, service string, pos int) {
		valid := account != "" && keyID != "" && service != "" &&
			utf8.ValidString(account) && utf8.ValidString(keyID) && utf8.ValidString(service)
		tok, err := c.Issue(account, keyID, service)
		if err != nil {
			if valid {
				t.Fatalf("Issue(%q, %q, %q): %v", account, keyID, service, err)
			}
			return
		}
		if !valid {
			t.Fatalf("Issue(%q, %q, %q) issued a token it cannot give back", account, keyID, service)
		}
		claims, err := c.Verify(tok)
		switch {
		case err != nil && len(tok) <= 1024:
			t.Fatalf("Verify refused a fresh token for %q %q %q: %v", account, keyID, service, err)
		case err == nil && (claims.Account != account || claims.KeyID != keyID || claims.Service != service):
			t.Fatalf("round trip changed the claims: %+v", claims)
		}
		if err != nil {
			return
		}
		if pos < 0 {
			pos = -pos
		}
		i := pos % len(tok)
		for _, delta := range []byte{1, 2, 4, 8, 16, 32, 64, 128} {
			b := []byte(tok)
			b[i] ^= delta
			if got, err := c.Verify(string(b)); err == nil {
				t.Fatalf("token with byte %d changed (%q -> %q) verified: %+v", i, tok[i], b[i], got)
			}
		}
	})
}
