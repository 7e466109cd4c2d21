package tokens_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/tokens"
)

var (
	secretA = bytes.Repeat([]byte("a"), 32)
	secretB = bytes.Repeat([]byte("b"), 32)
)

func TestRefreshRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, err := tokens.NewRefreshCodec([][]byte{secretA}, 30*24*time.Hour, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Issue("alice", "keyid", "registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !tokens.IsRefreshToken(tok) {
		t.Fatalf("%q lacks the prefix", tok)
	}
	claims, err := c.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if claims.Account != "alice" || claims.KeyID != "keyid" || claims.Service != "registry.example.com" ||
		claims.Expiry != now.Add(30*24*time.Hour).Unix() {
		t.Fatalf("claims = %+v", claims)
	}
	// Reusable: verifying does not consume it.
	if _, err := c.Verify(tok); err != nil {
		t.Fatal(err)
	}
	other, _ := c.Issue("alice", "keyid", "registry.example.com")
	if other == tok {
		t.Fatal("two refresh tokens are identical")
	}
}

func TestRefreshRejects(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	c, _ := tokens.NewRefreshCodec([][]byte{secretA}, time.Hour, clock)
	tok, _ := c.Issue("alice", "keyid", "svc")
	payload, sig, _ := strings.Cut(strings.TrimPrefix(tok, tokens.RefreshPrefix), ".")
	forged, _ := tokens.NewRefreshCodec([][]byte{secretB}, time.Hour, clock)
	forgedTok, _ := forged.Issue("alice", "keyid", "svc")
	flipped := []byte(sig)
	flipped[0] ^= 1
	for name, s := range map[string]string{
		"empty":           "",
		"no prefix":       strings.TrimPrefix(tok, tokens.RefreshPrefix),
		"no signature":    tokens.RefreshPrefix + payload,
		"other secret":    forgedTok,
		"flipped sig":     tokens.RefreshPrefix + payload + "." + string(flipped),
		"changed payload": tokens.RefreshPrefix + payload + "x." + sig,
		"api key":         "rak_aaaaaaaaaaaaaaaa_bbbb",
		"huge":            tokens.RefreshPrefix + strings.Repeat("a", 2000) + "." + sig,
	} {
		if _, err := c.Verify(s); !errors.Is(err, tokens.ErrInvalidRefresh) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	now = now.Add(time.Hour)
	if _, err := c.Verify(tok); !errors.Is(err, tokens.ErrInvalidRefresh) {
		t.Fatalf("expired token accepted: %v", err)
	}
}

func TestRefreshSecretRotation(t *testing.T) {
	old, _ := tokens.NewRefreshCodec([][]byte{secretA}, time.Hour, nil)
	tok, _ := old.Issue("alice", "k", "svc")
	rotated, _ := tokens.NewRefreshCodec([][]byte{secretB, secretA}, time.Hour, nil)
	if _, err := rotated.Verify(tok); err != nil {
		t.Fatalf("token from the previous secret refused: %v", err)
	}
	retired, _ := tokens.NewRefreshCodec([][]byte{secretB}, time.Hour, nil)
	if _, err := retired.Verify(tok); err == nil {
		t.Fatal("token of a retired secret accepted")
	}
}

func TestRefreshCodecOptions(t *testing.T) {
	if _, err := tokens.NewRefreshCodec(nil, time.Hour, nil); err == nil {
		t.Error("no secret accepted")
	}
	if _, err := tokens.NewRefreshCodec([][]byte{[]byte("short")}, time.Hour, nil); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := tokens.NewRefreshCodec([][]byte{secretA}, time.Second, nil); err == nil {
		t.Error("one-second TTL accepted")
	}
}
