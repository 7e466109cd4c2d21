package boltstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore/storetest"
)

// BenchmarkLoadPrincipal is the data stage of a token request on bolt: the key, its account and
// the account's grants (one in ten a glob), read and decoded ("store", the cache off) or served
// by the principal cache ("cache").
func BenchmarkLoadPrincipal(b *testing.B) {
	ctx := context.Background()
	for _, grants := range []int{10, 100} {
		for _, mode := range []struct {
			name string
			ttl  time.Duration
		}{{"store", 0}, {"cache", time.Minute}} {
			b.Run(fmt.Sprintf("grants=%d/%s", grants, mode.name), func(b *testing.B) {
				s, err := OpenWith(filepath.Join(b.TempDir(), "store.db"), Options{CacheTTL: mode.ttl, CacheSize: 100})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
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
}
