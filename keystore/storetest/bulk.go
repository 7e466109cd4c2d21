package storetest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// testGetKeys checks the batch read of keys: hashes included, in the order asked, missing ids
// left out.
func testGetKeys(t *testing.T, s keystore.Store) {
	must(t, s.CreateAccount(ctx, acct("alice")))
	var keys []keystore.Key
	for range 3 {
		k, _ := NewKey(t, "alice")
		must(t, s.CreateKey(ctx, k))
		keys = append(keys, k)
	}
	got, err := s.GetKeys(ctx, []string{keys[2].ID, "aaaaaaaaaaaaaaaa", keys[0].ID})
	must(t, err)
	if len(got) != 2 || !SameKey(got[0], keys[2]) || !SameKey(got[1], keys[0]) {
		t.Fatalf("GetKeys = %+v", got)
	}
	got, err = s.GetKeys(ctx, nil)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("GetKeys(nil) = %+v", got)
	}
}

// testWriteBatch checks the batch write: records in order, each checked as its single write;
// an invalid record refuses the whole batch; otherwise every record is attempted and the first
// failure returned.
func testWriteBatch(t *testing.T, s keystore.Store) {
	a := acct("alice", "sellers")
	k, plain := NewKey(t, "alice")
	g := keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "sellers"}, Repository: "shop/*", Actions: []string{"push"}}
	o := keystore.Ownership{Repository: "alice/app", Owner: "alice", Created: now}
	must(t, s.WriteBatch(ctx, []keystore.Record{{Account: &a}, {Key: &k}, {Grant: &g}, {Ownership: &o}}))
	p, err := keystore.Authenticate(ctx, s, "alice", plain, now)
	must(t, err)
	if len(p.Grants) != 1 || p.Grants[0].Repository != "shop/*" || len(p.Owned) != 1 || p.Owned[0] != "alice/app" {
		t.Fatalf("principal after a batch = %+v", p)
	}

	bob := acct("bob")
	bad := keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "bob"}, Repository: "x", Actions: []string{"fly"}}
	wantErr(t, s.WriteBatch(ctx, []keystore.Record{{Account: &bob}, {Grant: &bad}}), keystore.ErrInvalid)
	_, err = s.GetAccount(ctx, "bob")
	wantErr(t, err, keystore.ErrNotFound)
	wantErr(t, s.WriteBatch(ctx, []keystore.Record{{Header: &keystore.ExportHeader{}}}), keystore.ErrInvalid)

	orphan, _ := NewKey(t, "nobody")
	wantErr(t, s.WriteBatch(ctx, []keystore.Record{{Account: &bob}, {Account: &a}, {Key: &orphan}}), keystore.ErrExists)
	if _, err := s.GetAccount(ctx, "bob"); err != nil {
		t.Fatalf("the valid record of a failed batch: %v", err)
	}
	_, err = s.GetKey(ctx, orphan.ID)
	wantErr(t, err, keystore.ErrNotFound)
	must(t, s.WriteBatch(ctx, nil))
}

// Seed fills a store with one record of every shape an export carries: accounts with groups,
// roles and the disabled flag, keys with expiry, last use, the revoked flag and restrictions,
// grants of both subject kinds, and a reservation. It returns how many records it wrote.
func Seed(t testing.TB, s keystore.Store) int {
	t.Helper()
	created := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	n := 0
	for _, a := range []keystore.Account{
		{Name: "admin", Roles: []string{"admin"}, Created: created},
		{Name: "seller", Groups: []string{"sellers", "staff"}, Created: created.Add(time.Second)},
		{Name: "buyer", Disabled: true, Created: created.Add(2 * time.Second)},
	} {
		must(t, s.CreateAccount(ctx, a))
		n++
	}
	for i, account := range []string{"admin", "seller", "seller", "buyer"} {
		_, id, hash, err := keystore.NewAPIKey(rand.Reader)
		must(t, err)
		k := keystore.Key{ID: id, Account: account, Name: "key " + account, Hash: hash, Created: created}
		switch i {
		case 1:
			k.Expires = created.Add(90 * 24 * time.Hour)
			k.LastUsed = created.Add(time.Hour + 123456789*time.Nanosecond)
			k.Restrictions = keystore.Restrictions{Actions: []string{"pull"}, Repositories: []string{"shop/**"}, CIDRs: []string{"10.0.0.0/8"}}
		case 2:
			k.Revoked = true
			k.LastUsed = created.Add(time.Minute)
		}
		must(t, s.CreateKey(ctx, k))
		n++
	}
	for _, g := range []keystore.Grant{
		{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}, Repository: "shop/app", Actions: []string{"pull"}},
		{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "sellers"}, Repository: "host:5000/shop/*", Actions: []string{"delete", "push"}},
		// A purchase that ends, to the nanosecond.
		{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}, Repository: "shop/tool", Actions: []string{"pull"}, Expires: created.Add(30*24*time.Hour + 5)},
	} {
		must(t, s.PutGrant(ctx, g, keystore.Unguarded))
		n++
	}
	must(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "seller", Created: created}, 0))
	return n + 1
}

// testExportImportRoundTrip exports a store, imports the export into a second, empty store of
// the same backend and exports that: the two exports are byte for byte equal. The first store
// holds more keys than one batch, so the batch reads and writes cross their boundaries.
// Importing the same export again writes nothing.
func testExportImportRoundTrip(t *testing.T, s keystore.Store, newStore NewStore) {
	records := Seed(t, s)
	must(t, s.CreateAccount(ctx, acct("bulk")))
	records++
	bulk := make([]keystore.Record, 1100)
	for i := range bulk {
		k, _ := NewKey(t, "bulk")
		bulk[i].Key = &k
	}
	must(t, s.WriteBatch(ctx, bulk))
	records += len(bulk)
	var first bytes.Buffer
	c, err := keystore.Export(ctx, s, &first)
	must(t, err)
	if c.Accounts+c.Keys+c.Grants+c.Ownerships != records {
		t.Fatalf("exported %s, want %d records", c, records)
	}

	d := newStore(t, func() time.Time { return now })
	t.Cleanup(func() { d.Close() })
	c, err = keystore.Import(ctx, d, bytes.NewReader(first.Bytes()), 4)
	must(t, err)
	if c.Skipped != 0 || c.Keys != 1104 {
		t.Fatalf("imported %s", c)
	}
	var second bytes.Buffer
	_, err = keystore.Export(ctx, d, &second)
	must(t, err)
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatalf("the export of the imported store differs:\n%s", firstDifference(first.String(), second.String()))
	}
	c, err = keystore.Import(ctx, d, bytes.NewReader(first.Bytes()), 4)
	must(t, err)
	if c.Skipped != records || c.Accounts+c.Keys+c.Grants+c.Ownerships != 0 {
		t.Fatalf("importing again: %s, want nothing imported and all %d already present", c, records)
	}
}

func firstDifference(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n%s\n%s", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("%d lines against %d", len(al), len(bl))
}
