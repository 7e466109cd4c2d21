package keystore_test

import (
	"crypto/rand"
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

// BenchmarkKeyCheck is the key check of a token request: parse the API key for its id, then
// compare its hash with the stored one in constant time (the store lookup between the two is
// measured by the stores' BenchmarkLoadPrincipal).
func BenchmarkKeyCheck(b *testing.B) {
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	stored := keystore.Key{ID: id, Account: "user1", Hash: hash}
	b.ReportAllocs()
	for b.Loop() {
		got, ok := keystore.ParseAPIKey(plain)
		if !ok || got != id || !stored.Matches(plain) {
			b.Fatal("the key does not check")
		}
	}
}
