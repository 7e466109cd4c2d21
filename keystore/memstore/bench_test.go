package memstore_test

import (
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/memstore"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// BenchmarkLoadPrincipal is the data stage of a token request with the records in memory: the
// floor the persistent stores' figures compare with.
func BenchmarkLoadPrincipal(b *testing.B) {
	storetest.BenchLoadPrincipal(b, []time.Duration{0}, func(*testing.B, time.Duration) (keystore.Store, func(string)) {
		return memstore.New(), nil
	})
}
