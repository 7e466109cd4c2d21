package keystore_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

func TestAPIKeyRoundTrip(t *testing.T) {
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plain, "rak_"+id+"_") {
		t.Fatalf("key %q does not carry its id %q", plain, id)
	}
	got, ok := keystore.ParseAPIKey(plain)
	if !ok || got != id {
		t.Fatalf("ParseAPIKey = %q, %v; want %q", got, ok, id)
	}
	if bytes.Contains(hash, []byte(plain)) || len(hash) != 32 {
		t.Fatalf("hash looks wrong: %x", hash)
	}
	k := keystore.Key{ID: id, Account: "alice", Hash: hash}
	if !k.Matches(plain) {
		t.Fatal("key does not match its own plaintext")
	}
	other, _, _, _ := keystore.NewAPIKey(rand.Reader)
	flipped := plain[:len(plain)-1] + "a"
	if strings.HasSuffix(plain, "a") {
		flipped = plain[:len(plain)-1] + "b"
	}
	for _, wrong := range []string{other, "", flipped} {
		if k.Matches(wrong) {
			t.Fatalf("key matched %q", wrong)
		}
	}
	if (keystore.Key{}).Matches(plain) {
		t.Fatal("a key without hash matched")
	}
}

func TestNewAPIKeyFailsWithoutRandom(t *testing.T) {
	if _, _, _, err := keystore.NewAPIKey(bytes.NewReader(nil)); err == nil {
		t.Fatal("NewAPIKey succeeded with an empty random source")
	}
}

func TestParseAPIKeyRejects(t *testing.T) {
	plain, _, _, _ := keystore.NewAPIKey(rand.Reader)
	for _, s := range []string{
		"", "rak_", "password", plain + "x", plain[:len(plain)-1],
		strings.Replace(plain, "rak_", "rok_", 1),
		strings.ToUpper(plain),
		plain[:20] + "-" + plain[21:], // id/secret separator moved
		plain[:len(plain)-1] + "1",    // '1' is outside the alphabet
	} {
		if _, ok := keystore.ParseAPIKey(s); ok {
			t.Errorf("ParseAPIKey(%q) accepted", s)
		}
	}
}

func TestValidation(t *testing.T) {
	valid := []string{"a", "user1", "acme.io", "a-b_c", strings.Repeat("a", 64)}
	for _, n := range valid {
		if err := keystore.ValidateName("account", n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"", "A", "-a", "a-", "a/b", "a b", strings.Repeat("a", 65), "é"} {
		if err := keystore.ValidateName("account", n); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalid", n, err)
		}
	}
	for _, p := range []string{"image", "acme/*", "acme/**", "host:5000/a/b", "a/*-dev/c"} {
		if err := keystore.ValidatePattern(p); err != nil {
			t.Errorf("ValidatePattern(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"", "/a", "a/", "a//b", "A", "a b", "a/{b,c}", "a/[bc]", "a?", strings.Repeat("a", 256), "a/../b", "./a", "a/.", "..", "a/./b"} {
		if err := keystore.ValidatePattern(p); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("ValidatePattern(%q) = %v, want ErrInvalid", p, err)
		}
	}
	if err := keystore.ValidateActions([]string{"pull", "push", "delete"}); err != nil {
		t.Error(err)
	}
	for _, a := range [][]string{nil, {"*"}, {"pull", "admin"}} {
		if err := keystore.ValidateActions(a); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("ValidateActions(%v) = %v, want ErrInvalid", a, err)
		}
	}
}
