package storetest

import (
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

func testOwnership(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("seller")))
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "seller", Created: now}))
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/tool", Owner: "seller", Created: now}))
	wantErr(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "seller", Created: now}), keystore.ErrExists)
	wantErr(t, s.Reserve(ctx, keystore.Ownership{Repository: "other", Owner: "nobody", Created: now}), keystore.ErrNotFound)

	o, err := s.GetOwnership(ctx, "shop/app")
	must(t, err)
	if o.Owner != "seller" || !o.Created.Equal(now) {
		t.Fatalf("GetOwnership = %+v", o)
	}
	list, err := s.ListOwnership(ctx, "seller")
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListOwnership = %+v", list)
	}
	must(t, s.Release(ctx, "shop/app"))
	_, err = s.GetOwnership(ctx, "shop/app")
	wantErr(t, err, keystore.ErrNotFound)
	list, err = s.ListOwnership(ctx, "seller")
	must(t, err)
	if len(list) != 1 || list[0].Repository != "shop/tool" {
		t.Fatalf("ListOwnership after release = %+v", list)
	}
	wantErr(t, s.Release(ctx, "shop/app"), keystore.ErrNotFound)
}
