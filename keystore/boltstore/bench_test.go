package boltstore

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// BenchmarkLoadPrincipal is the data stage of a token request on bolt: the key, its account and
// the account's grants (one in ten a glob), read and decoded ("store", the cache off) or served
// by the principal cache ("cache").
func BenchmarkLoadPrincipal(b *testing.B) {
	storetest.BenchLoadPrincipal(b, []time.Duration{0, time.Minute}, func(b *testing.B, ttl time.Duration) (keystore.Store, func(string)) {
		s, err := OpenWith(filepath.Join(b.TempDir(), "store.db"), Options{CacheTTL: ttl, CacheSize: 100})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s, nil
	})
}
