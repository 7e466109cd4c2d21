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
		if err := s.PutGrant(ctx, g); err != nil {
			tb.Fatal(err)
		}
	}
	return id
}
