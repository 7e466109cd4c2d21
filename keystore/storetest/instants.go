package storetest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// testInstantBounds checks the bound on the instants a record carries (keystore.LatestInstant,
// keystore.EarliestInstant): a grant end, a key expiry and a last use at the latest instant
// round-trip exactly, and the grant gives until then; an instant a nanosecond past either
// bound, or in the year 10000 once read in UTC, is ErrInvalid on every write that carries it —
// single, batch and import — and nothing of it is stored.
func testInstantBounds(t *testing.T, s keystore.Store, c *clock) {
	latest := keystore.LatestInstant
	must(t, s.CreateAccount(ctx, acct("buyer")))
	buyer := keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}
	k, _ := NewKey(t, "buyer")
	k.Expires, k.LastUsed = latest, latest
	must(t, s.CreateKey(ctx, k))
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: buyer, Repository: "shop/app", Actions: []string{"pull"}, Expires: latest}, keystore.Unguarded))
	got, err := s.GetKey(ctx, k.ID)
	must(t, err)
	if !SameKey(got, k) {
		t.Fatalf("key expiring and last used at %v read back as %+v", latest, got)
	}
	ends := func() []time.Time {
		t.Helper()
		p, err := s.LoadPrincipal(ctx, k.ID)
		must(t, err)
		var out []time.Time
		for _, g := range p.Grants {
			out = append(out, g.Expires)
		}
		return out
	}
	if e := ends(); len(e) != 1 || !e[0].Equal(latest) {
		t.Fatalf("a grant until %v loads with ends %v", latest, e)
	}
	c.Set(latest.Add(-time.Nanosecond))
	if e := ends(); len(e) != 1 {
		t.Fatalf("a nanosecond before its end, the grant until %v is gone", latest)
	}
	c.Set(latest)
	if e := ends(); len(e) != 0 {
		t.Fatalf("at its end, the grant until %v is still loaded", latest)
	}
	c.Set(now)

	for _, at := range []time.Time{
		latest.Add(time.Nanosecond),
		time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -(23*3600+59*60))),
		keystore.EarliestInstant.Add(-time.Nanosecond),
		time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		t.Run(at.Format(time.RFC3339Nano), func(t *testing.T) {
			g := keystore.Grant{Subject: buyer, Repository: "shop/other", Actions: []string{"pull"}, Expires: at}
			wantErr(t, s.PutGrant(ctx, g, keystore.Unguarded), keystore.ErrInvalid)
			wantErr(t, s.WriteBatch(ctx, []keystore.Record{{Grant: &g}}), keystore.ErrInvalid)
			for name, set := range map[string]func(*keystore.Key){
				"expiry":    func(k *keystore.Key) { k.Expires = at },
				"last use":  func(k *keystore.Key) { k.LastUsed = at },
				"creation":  func(k *keystore.Key) { k.Created = at },
				"all three": func(k *keystore.Key) { k.Expires, k.LastUsed, k.Created = at, at, at },
			} {
				bad, _ := NewKey(t, "buyer")
				set(&bad)
				if err := s.CreateKey(ctx, bad); !errors.Is(err, keystore.ErrInvalid) {
					t.Errorf("a key with its %s at %v: %v, want ErrInvalid", name, at, err)
				}
			}
			wantErr(t, s.CreateAccount(ctx, keystore.Account{Name: "late", Created: at}), keystore.ErrInvalid)
			wantErr(t, s.Reserve(ctx, keystore.Ownership{Repository: "shop/late", Owner: "buyer", Created: at}, 0), keystore.ErrInvalid)
			bad, _ := NewKey(t, "buyer")
			wantErr(t, s.CreateSession(ctx, keystore.Session{ID: sessionID("late"), KeyID: bad.ID, Account: "buyer", Created: now, Expires: at}, 0), keystore.ErrInvalid)

			var export bytes.Buffer
			must(t, keystore.WriteExport(&export, []keystore.Record{{Grant: &g}}))
			_, err := keystore.Import(ctx, s, &export, 1)
			wantErr(t, err, keystore.ErrInvalid)
		})
	}
	grants, err := s.ListGrants(ctx, keystore.GrantFilter{})
	must(t, err)
	keys, err := s.ListKeys(ctx, "")
	must(t, err)
	owned, err := s.ListOwnership(ctx, "")
	must(t, err)
	if len(grants) != 1 || len(keys) != 1 || len(owned) != 0 {
		t.Fatalf("refused records were stored: grants %+v, keys %+v, reservations %+v", grants, keys, owned)
	}
	if _, err := s.GetAccount(ctx, "late"); err == nil {
		t.Fatal("an account created at a refused instant was stored")
	}
	if _, err := s.GetSession(ctx, sessionID("late")); err == nil {
		t.Fatal("a session expiring at a refused instant was stored")
	}
}
