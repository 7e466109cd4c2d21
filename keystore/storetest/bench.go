package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// BenchPrincipal gives a store the principal the backends' LoadPrincipal benchmarks load: an
// account with one key and n grants on repositories, one in ten a glob. It returns the key id.
func BenchPrincipal(tb testing.TB, s keystore.Store, account string, n int) string {
	tb.Helper()
	ctx := context.Background()
	if err := s.CreateAccount(ctx, keystore.Account{Name: account, Created: time.Now().UTC()}); err != nil {
		tb.Fatal(err)
	}
	_, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.CreateKey(ctx, keystore.Key{ID: id, Account: account, Name: "ci", Hash: hash, Created: time.Now().UTC()}); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		repo := fmt.Sprintf("%s/app%d", account, i)
		if i%10 == 9 {
			repo = fmt.Sprintf("team%d/*", i)
		}
		g := keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: account}, Repository: repo, Actions: []string{"pull", "push"}}
		if err := s.PutGrant(ctx, g, keystore.Unguarded); err != nil {
			tb.Fatal(err)
		}
	}
	return id
}

// BenchLoadPrincipal is the backends' LoadPrincipal benchmark, the data stage of a token
// request: the principal of BenchPrincipal with 10 and 100 grants, loaded from a fresh store
// for each cache TTL in ttls (0 is the cache off, named "store"; any other "cache"). open
// returns that store, closed by a cleanup of b, and ready, when not nil, is called with the key
// id before the clock starts (a store whose cache serves only once it is proven safe waits
// there).
func BenchLoadPrincipal(b *testing.B, ttls []time.Duration, open func(b *testing.B, cacheTTL time.Duration) (s keystore.Store, ready func(keyID string))) {
	ctx := context.Background()
	for _, grants := range []int{10, 100} {
		for _, ttl := range ttls {
			mode := "store"
			if ttl > 0 {
				mode = "cache"
			}
			b.Run(fmt.Sprintf("grants=%d/%s", grants, mode), func(b *testing.B) {
				s, ready := open(b, ttl)
				keyID := BenchPrincipal(b, s, "user1", grants)
				if ready != nil {
					ready(keyID)
				}
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
