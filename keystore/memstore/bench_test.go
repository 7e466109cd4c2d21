package memstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/regoauth/regoauth/keystore/memstore"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// BenchmarkLoadPrincipal is the data stage of a token request with the records in memory: the
// floor the persistent stores' figures compare with.
func BenchmarkLoadPrincipal(b *testing.B) {
	ctx := context.Background()
	for _, grants := range []int{10, 100} {
		b.Run(fmt.Sprintf("grants=%d", grants), func(b *testing.B) {
			s := memstore.New()
			keyID := storetest.BenchPrincipal(b, s, "user1", grants)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p, err := s.LoadPrincipal(ctx, keyID)
				if err != nil || len(p.Grants) != grants {
					b.Fatal(len(p.Grants), err)
				}
			}
		})
	}
}
