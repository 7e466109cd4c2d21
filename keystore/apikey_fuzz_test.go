package keystore_test

import (
	"strings"
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

// FuzzParseAPIKey: whatever a client sends as a password, ParseAPIKey never panics, and an id
// it returns is a well-formed key id taken from the key's own id position, so the store is only
// ever asked for ids of the documented form.
func FuzzParseAPIKey(f *testing.F) {
	for _, s := range []string{
		"", "rak_", "hunter2", "rak_aaaaaaaaaaaaaaaa_" + strings.Repeat("a", 52),
		"rak_AAAAAAAAAAAAAAAA_" + strings.Repeat("a", 52), "rak_aaaaaaaaaaaaaaaa-" + strings.Repeat("a", 52),
		"rrt_eyJ9.sig", "rak_aaaaaaaaaaaaaaa\x00_" + strings.Repeat("a", 52),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := keystore.ParseAPIKey(s)
		if !ok {
			if id != "" {
				t.Fatalf("ParseAPIKey(%q) refused the key but returned id %q", s, id)
			}
			return
		}
		if !keystore.ValidKeyID(id) {
			t.Fatalf("ParseAPIKey(%q) returned a malformed id %q", s, id)
		}
		if !strings.HasPrefix(s, "rak_"+id+"_") {
			t.Fatalf("ParseAPIKey(%q) = %q, not the key's own id", s, id)
		}
		// The key's hash is what the store compares; a parsed key never matches an empty hash.
		if (keystore.Key{ID: id}).Matches(s) {
			t.Fatal("a key without a stored hash matched")
		}
		if !(keystore.Key{ID: id, Hash: keystore.HashAPIKey(s)}).Matches(s) {
			t.Fatal("a key does not match its own hash")
		}
	})
}
