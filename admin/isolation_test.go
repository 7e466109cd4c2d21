package admin_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// Each test here is an account with a legitimate key trying to reach what it must not, through
// the admin API and GET /token, on bolt and on Redis.

// A reservation is one literal repository name: a pattern reserved as a listing would make its
// "owner" the seller of every name it matches.
func TestReservationIsOneLiteralName(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{Bundle: "marketplace"})
		sam := s.client(s.account("sam", "sellers"))
		bobKey := s.account("bob", "buyers")
		eveKey := s.account("eve", "sellers")
		eve := s.client(eveKey)
		if _, err := eve.ReserveRepository(t.Context(), admin.RepositoryRequest{Repository: "shop/premium"}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"shop/*", "shop/**", "shop/prem*", "shop/premium*", "*/premium", "Shop/premium", "shop/Premium", "shop//premium", "shop/premium/"} {
			_, err := sam.ReserveRepository(t.Context(), admin.RepositoryRequest{Repository: name})
			if status(err) != http.StatusBadRequest {
				t.Errorf("seller reserving %q: %v, want HTTP 400", name, err)
			}
			// Whatever the answer, the seller must not sell what the name matches.
			_, err = sam.AddGrant(t.Context(), admin.GrantRequest{Account: "bob", Repository: name, Actions: []string{"pull"}})
			if status(err) < 400 {
				t.Errorf("seller granted pull on %q", name)
			}
		}
		if s.pulls("bob", bobKey, "shop/premium") {
			t.Fatal("a buyer of another seller pulls eve's listing")
		}
		// Without a bundle's rules, an admin's reservation of a pattern would do the same.
		for _, name := range []string{"team/*", "team/**", "team/x*"} {
			_, err := s.admin.ReserveRepository(t.Context(), admin.RepositoryRequest{Repository: name, Owner: "sam"})
			if status(err) != http.StatusBadRequest {
				t.Errorf("admin reserving %q: %v, want HTTP 400", name, err)
			}
		}
		if list, err := s.admin.ListRepositories(t.Context(), ""); err != nil || len(list) != 1 {
			t.Fatalf("reservations = %+v, %v; want eve's only", list, err)
		}
	})
}

// A pattern-like reservation written by an earlier version is still listed (so an admin can see
// and release it), but no rule reads it as ownership.
func TestPatternReservationInTheStoreIsIgnored(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{Bundle: "marketplace"})
		samKey := s.account("sam", "sellers")
		sam := s.client(samKey)
		bobKey := s.account("bob", "buyers")
		eve := s.client(s.account("eve", "sellers"))
		if _, err := eve.ReserveRepository(t.Context(), admin.RepositoryRequest{Repository: "shop/premium"}); err != nil {
			t.Fatal(err)
		}
		s.rawOwnership("shop/*", "sam")

		for _, who := range []string{"bob", "sam"} {
			_, err := sam.AddGrant(t.Context(), admin.GrantRequest{Account: who, Repository: "shop/*", Actions: []string{"pull"}})
			if status(err) != http.StatusForbidden {
				t.Errorf("owner of a stored pattern granting %s pull on it: %v, want HTTP 403", who, err)
			}
		}
		if s.pulls("bob", bobKey, "shop/premium") || s.pulls("sam", samKey, "shop/premium") {
			t.Fatal("a stored pattern reservation reaches eve's listing")
		}
		if got := s.access("sam", samKey, "repository:previews/premium:push"); len(got["previews/premium"]) != 0 {
			t.Fatalf("a stored pattern reservation publishes eve's preview: %v", got)
		}
		list, err := s.admin.ListRepositories(t.Context(), "sam")
		if err != nil || len(list) != 1 || list[0].Repository != "shop/*" {
			t.Fatalf("sam's reservations = %+v, %v", list, err)
		}
		if err := s.admin.ReleaseRepository(t.Context(), "shop/*"); err != nil {
			t.Fatalf("releasing the stored pattern: %v", err)
		}
	})
}

// Releasing a name takes every right on that exact name with it, so the next owner of the name
// does not inherit the previous owner's buyers.
func TestReleaseTakesTheGrantsOnTheName(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{Bundle: "marketplace"})
		samKey := s.account("sam", "sellers")
		sam := s.client(samKey)
		bobKey := s.account("bob", "buyers")
		staffKey := s.account("stella", "staff")
		eveKey := s.account("eve", "sellers")
		eve := s.client(eveKey)
		ctx := t.Context()

		if _, err := sam.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/app"}); err != nil {
			t.Fatal(err)
		}
		for _, g := range []struct {
			c   *admin.Client
			req admin.GrantRequest
		}{
			{sam, admin.GrantRequest{Account: "bob", Repository: "shop/app", Actions: []string{"pull"}}},
			{sam, admin.GrantRequest{Account: "sam", Repository: "shop/app", Actions: []string{"pull"}}},
			{s.admin, admin.GrantRequest{Group: "buyers", Repository: "shop/app", Actions: []string{"pull"}}},
			{s.admin, admin.GrantRequest{Group: "staff", Repository: "shop/*", Actions: []string{"pull"}}},
			{s.admin, admin.GrantRequest{Account: "bob", Repository: "shop/app2", Actions: []string{"pull"}}},
		} {
			if _, err := g.c.AddGrant(ctx, g.req); err != nil {
				t.Fatalf("grant %+v: %v", g.req, err)
			}
		}
		if !s.pulls("bob", bobKey, "shop/app") {
			t.Fatal("the buyer does not pull before the release")
		}
		if err := sam.ReleaseRepository(ctx, "shop/app"); err != nil {
			t.Fatal(err)
		}
		left, err := s.admin.ListGrants(ctx, admin.GrantRequest{Repository: "shop/app"})
		if err != nil || len(left) != 0 {
			t.Fatalf("grants on shop/app after its release = %+v, %v", left, err)
		}
		for _, other := range []string{"shop/*", "shop/app2"} {
			if kept, err := s.admin.ListGrants(ctx, admin.GrantRequest{Repository: other}); err != nil || len(kept) != 1 {
				t.Fatalf("grants on %s after releasing shop/app = %+v, %v; want it kept", other, kept, err)
			}
		}

		if _, err := eve.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/app"}); err != nil {
			t.Fatal(err)
		}
		for user, key := range map[string]string{"bob": bobKey, "sam": samKey} {
			if s.pulls(user, key, "shop/app") {
				t.Errorf("%s still pulls shop/app after sam released it and eve reserved it", user)
			}
		}
		if !s.pulls("stella", staffKey, "shop/app") || !s.pulls("eve", eveKey, "shop/app") {
			t.Fatal("the pattern grant or the new owner lost pull")
		}
	})
}

func actionsOf(grants []keystore.Grant, subject string) []string {
	for _, g := range grants {
		if g.Subject.String() == subject {
			return slices.Clone(g.Actions)
		}
	}
	return nil
}

// A key's restrictions hold on every admin endpoint, reads included: a key limited to a network
// gets nothing from outside it, a key limited to repositories nothing beyond them.
func TestKeyRestrictionsHoldOnTheAdminAPI(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{})
		ctx := t.Context()
		s.account("user1")
		must(s.admin.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/app", Owner: "user1"}))
		must(s.admin.AddGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "shop/app", Actions: []string{"pull"}}))

		// The test's requests come from 127.0.0.1.
		elsewhere := s.client(s.newKey("root", admin.KeyRequest{Restrictions: keystore.Restrictions{CIDRs: []string{"10.0.0.0/8"}}}))
		userElsewhere := s.client(s.newKey("user1", admin.KeyRequest{Restrictions: keystore.Restrictions{CIDRs: []string{"10.0.0.0/8", "192.168.0.0/16"}}}))
		for name, err := range map[string]error{
			"whoami":              second(elsewhere.Whoami(ctx)),
			"list accounts":       second(elsewhere.ListAccounts(ctx)),
			"get an account":      second(elsewhere.GetAccount(ctx, "user1")),
			"list keys":           second(elsewhere.ListKeys(ctx, "")),
			"list grants":         second(elsewhere.ListGrants(ctx, admin.GrantRequest{})),
			"list repositories":   second(elsewhere.ListRepositories(ctx, "")),
			"explain":             second(elsewhere.Explain(ctx, admin.ExplainRequest{Account: "user1", Scopes: []string{"repository:shop/app:pull"}})),
			"own keys":            second(userElsewhere.ListKeys(ctx, "user1")),
			"own account":         second(userElsewhere.GetAccount(ctx, "user1")),
			"own grants":          second(userElsewhere.ListGrants(ctx, admin.GrantRequest{Account: "user1"})),
			"own repositories":    second(userElsewhere.ListRepositories(ctx, "user1")),
			"owned name's grants": second(userElsewhere.ListGrants(ctx, admin.GrantRequest{Repository: "shop/app"})),
			"whoami of the user":  second(userElsewhere.Whoami(ctx)),
		} {
			if status(err) != http.StatusForbidden {
				t.Errorf("a key limited to other networks: %s: %v, want HTTP 403", name, err)
			}
		}

		// A key limited to repositories reads only what concerns them.
		limited := s.client(s.newKey("root", admin.KeyRequest{Restrictions: keystore.Restrictions{Repositories: []string{"shop/app"}}}))
		if _, err := limited.ListGrants(ctx, admin.GrantRequest{Repository: "shop/app"}); err != nil {
			t.Errorf("a key limited to shop/app listing its grants: %v", err)
		}
		// It may have a request of shop/app explained, and sees no reservation but shop/app,
		// even of its own account.
		must(s.admin.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "hidden/thing", Owner: "user1"}))
		own := s.client(s.newKey("user1", admin.KeyRequest{Restrictions: keystore.Restrictions{Repositories: []string{"shop/app"}}}))
		for who, c := range map[string]*admin.Client{"an admin's key": limited, "user1's own key": own} {
			x, err := c.Explain(ctx, admin.ExplainRequest{Account: "user1", Scopes: []string{"repository:shop/app:pull"}})
			if err != nil {
				t.Errorf("%s limited to shop/app explaining a request of it: %v", who, err)
			} else if !slices.Equal(x.Input.Owned, []string{"shop/app"}) {
				t.Errorf("%s limited to shop/app is shown the reservations %v", who, x.Input.Owned)
			}
		}
		for name, err := range map[string]error{
			"list accounts":           second(limited.ListAccounts(ctx)),
			"list keys":               second(limited.ListKeys(ctx, "")),
			"list every grant":        second(limited.ListGrants(ctx, admin.GrantRequest{})),
			"grants of another name":  second(limited.ListGrants(ctx, admin.GrantRequest{Repository: "other"})),
			"an account's grants":     second(limited.ListGrants(ctx, admin.GrantRequest{Account: "user1"})),
			"list repositories":       second(limited.ListRepositories(ctx, "")),
			"explain of another name": second(limited.Explain(ctx, admin.ExplainRequest{Account: "user1", Scopes: []string{"repository:other:pull"}})),
			"explain of two names":    second(limited.Explain(ctx, admin.ExplainRequest{Account: "user1", Scopes: []string{"repository:shop/app:pull", "repository:other:pull"}})),
		} {
			if status(err) != http.StatusForbidden {
				t.Errorf("a key limited to shop/app: %s: %v, want HTTP 403", name, err)
			}
		}
	})
}

// A grant, a grant's removal and a release are decided on who owns the name, then written. A
// write of another request that lands in between — the owner's own release, sent at the same
// moment, and another seller's reservation — must fail the write, not leave a right nobody
// authorized: an owner granting itself pull while releasing the name would otherwise keep pull
// on the name's next listing. Each case puts the other request's writes exactly there.
func TestWritesDecidedOnAFormerOwnerFail(t *testing.T) {
	pull := []string{"pull"}
	for _, tt := range []struct {
		name string
		// setup runs first; between runs through the store between the decision and the
		// write; then sam, who owned shop/app when the operation was decided, makes it.
		setup, between func(s *stack)
		op             func(sam *admin.Client) error
		// rows are the grants on shop/app afterwards: none of sam's operation; eve's is
		// whether eve still owns the name (with bob's pull when she sold it to him).
		rows      []string
		eves, bob bool
	}{
		{
			name:    "a grant to oneself, as the name is released",
			between: func(s *stack) { s.must(s.store.Release(s.t.Context(), "shop/app", keystore.Unguarded)) },
			op: func(sam *admin.Client) error {
				_, err := sam.AddGrant(context.Background(), admin.GrantRequest{Account: "sam", Repository: "shop/app", Actions: pull})
				return err
			},
		},
		{
			name: "a grant to a buyer, as the name is released and reserved by another",
			between: func(s *stack) {
				s.must(s.store.Release(s.t.Context(), "shop/app", keystore.Unguarded))
				s.must(s.store.Reserve(s.t.Context(), keystore.Ownership{Repository: "shop/app", Owner: "eve", Created: time.Now().UTC().Truncate(time.Second)}, 0))
			},
			op: func(sam *admin.Client) error {
				_, err := sam.AddGrant(context.Background(), admin.GrantRequest{Account: "bob", Repository: "shop/app", Actions: pull})
				return err
			},
			eves: true,
		},
		{
			name: "a release, as the name is released and reserved by another who sells it",
			between: func(s *stack) {
				s.must(s.store.Release(s.t.Context(), "shop/app", keystore.Unguarded))
				s.must(s.store.Reserve(s.t.Context(), keystore.Ownership{Repository: "shop/app", Owner: "eve", Created: time.Now().UTC().Truncate(time.Second)}, 0))
				s.must(s.store.PutGrant(s.t.Context(), keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "bob"}, Repository: "shop/app", Actions: pull}, keystore.Unguarded))
			},
			op:   func(sam *admin.Client) error { return sam.ReleaseRepository(context.Background(), "shop/app") },
			rows: []string{"account:bob pull"}, eves: true, bob: true,
		},
		{
			name: "a buyer's removal, as the name is released and reserved by another who sells it to the same buyer",
			setup: func(s *stack) {
				s.must(s.store.PutGrant(s.t.Context(), keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "bob"}, Repository: "shop/app", Actions: pull}, keystore.Unguarded))
			},
			between: func(s *stack) {
				s.must(s.store.Release(s.t.Context(), "shop/app", keystore.Unguarded))
				s.must(s.store.Reserve(s.t.Context(), keystore.Ownership{Repository: "shop/app", Owner: "eve", Created: time.Now().UTC().Truncate(time.Second)}, 0))
				s.must(s.store.PutGrant(s.t.Context(), keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "bob"}, Repository: "shop/app", Actions: pull}, keystore.Unguarded))
			},
			op: func(sam *admin.Client) error {
				return sam.RemoveGrant(context.Background(), admin.GrantRequest{Account: "bob", Repository: "shop/app", Actions: pull})
			},
			rows: []string{"account:bob pull"}, eves: true, bob: true,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			backends(t, func(t *testing.T, backend string) {
				var s *stack
				armed := false
				s = newStack(t, backend, stackOptions{Bundle: "marketplace", BeforeWrite: func(string) {
					if armed {
						armed = false
						tt.between(s)
					}
				}})
				samKey := s.account("sam", "sellers")
				sam := s.client(samKey)
				bobKey := s.account("bob", "buyers")
				s.account("eve", "sellers")
				must(sam.ReserveRepository(t.Context(), admin.RepositoryRequest{Repository: "shop/app"}))
				if tt.setup != nil {
					tt.setup(s)
				}
				armed = true
				err := tt.op(sam)
				if armed {
					t.Fatal("the operation made no write")
				}
				if status(err) != http.StatusConflict {
					t.Fatalf("the operation answered %v, want HTTP 409: the name changed owner after it was decided", err)
				}
				if got := grantsOn(s, "shop/app"); !slices.Equal(got, tt.rows) {
					t.Fatalf("grants on shop/app = %v, want %v", got, tt.rows)
				}
				if s.pulls("sam", samKey, "shop/app") {
					t.Fatal("sam pulls shop/app, which it no longer owns")
				}
				if tt.eves {
					if o, err := s.store.GetOwnership(t.Context(), "shop/app"); err != nil || o.Owner != "eve" {
						t.Fatalf("shop/app: %+v, %v; want it still eve's", o, err)
					}
				}
				if got := s.pulls("bob", bobKey, "shop/app"); got != tt.bob {
					t.Fatalf("bob pulls shop/app: %v, want %v", got, tt.bob)
				}
			})
		})
	}
}

// An account update writes only what it changes: an admin disabling a compromised account
// while another changes its groups (the change read the account before the disabling, and
// writes after it) leaves it disabled, with the new groups, and its key gets no token.
func TestAccountChangesDoNotUndoEachOther(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		var s *stack
		armed := false
		s = newStack(t, backend, stackOptions{BeforeWrite: func(op string) {
			if op == "update account" && armed {
				armed = false
				disabled := true
				if _, err := s.admin.UpdateAccount(s.t.Context(), "mallory", admin.AccountUpdate{Disabled: &disabled}); err != nil {
					s.t.Errorf("disabling mallory: %v", err)
				}
			}
		}})
		key := s.account("mallory", "buyers")
		s.must(s.store.PutGrant(t.Context(), keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "mallory"}, Repository: "shop/app", Actions: []string{"pull"}}, keystore.Unguarded))
		armed = true
		groups := []string{"buyers", "vip"}
		got, err := s.admin.UpdateAccount(t.Context(), "mallory", admin.AccountUpdate{Groups: &groups})
		if err != nil || armed {
			t.Fatalf("changing mallory's groups: %v (the disabling ran: %v)", err, !armed)
		}
		stored := must(s.store.GetAccount(t.Context(), "mallory"))
		if !stored.Disabled || !slices.Equal(stored.Groups, groups) || !got.Disabled || !slices.Equal(got.Groups, groups) {
			t.Fatalf("mallory after a disabling and a change of groups at once: stored %+v, answered %+v; want both changes", stored, got)
		}
		if status, _ := s.token("mallory", key, "repository:shop/app:pull"); status != http.StatusUnauthorized {
			t.Fatalf("the disabled account's key got HTTP %d from /token, want 401", status)
		}
	})
}

// An account holds at most MaxKeysPerAccount live keys: creating keys without end would
// otherwise fill the store. A revoked or expired key frees its place; the bound holds for an
// admin creating the account's keys too, and is the account's own.
func TestKeysPerAccountAreBounded(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{MaxKeysPerAccount: 3})
		ctx := t.Context()
		sam := s.client(s.account("sam")) // its first key
		s.account("eve")
		create := func(c *admin.Client, req admin.KeyRequest) (admin.KeyCreated, error) {
			req.Account = "sam"
			return c.CreateKey(ctx, req)
		}
		second := must(create(sam, admin.KeyRequest{Name: "ci"}))
		must(create(sam, admin.KeyRequest{Name: "short", ExpiresIn: "1h"}))
		for who, c := range map[string]*admin.Client{"sam": sam, "an admin": s.admin} {
			_, err := create(c, admin.KeyRequest{Name: "fourth"})
			var apiErr *admin.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden || apiErr.Code != "limit" {
				t.Fatalf("%s creating sam's fourth live key: %v, want HTTP 403 limit", who, err)
			}
		}
		if keys := must(s.admin.ListKeys(ctx, "sam")); len(keys) != 3 {
			t.Fatalf("sam holds %d keys after the refusals, want 3", len(keys))
		}
		// Another account has its own bound.
		must(s.admin.CreateKey(ctx, admin.KeyRequest{Account: "eve", Name: "second"}))

		must(sam.RevokeKey(ctx, second.ID))
		must(create(sam, admin.KeyRequest{Name: "after a revocation"}))
		if _, err := create(sam, admin.KeyRequest{Name: "one more"}); status(err) != http.StatusForbidden {
			t.Fatalf("a fourth live key after the revocation was replaced: %v, want 403", err)
		}
		s.advance(2 * time.Hour) // the short key expires
		must(create(sam, admin.KeyRequest{Name: "after an expiry"}))
	})
}

// The bound on live keys holds against creations racing each other: an account (or a script
// of its owner's) sending many at once gets exactly as many as the bound leaves room for, the
// rest 403 limit, on every backend.
func TestKeysPerAccountHoldAgainstRacingCreations(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		const limit, attempts = 3, 48
		s := newStack(t, backend, stackOptions{MaxKeysPerAccount: limit})
		sam := s.client(s.account("sam")) // its first key
		var wg sync.WaitGroup
		statuses := make(chan int, attempts)
		for range attempts {
			wg.Go(func() {
				_, err := sam.CreateKey(t.Context(), admin.KeyRequest{Name: "burst"})
				statuses <- status(err)
			})
		}
		wg.Wait()
		close(statuses)
		created, limited := 0, 0
		for st := range statuses {
			switch st {
			case http.StatusCreated, http.StatusOK:
				created++
			case http.StatusForbidden:
				limited++
			default:
				t.Errorf("a racing creation answered %d", st)
			}
		}
		keys := must(s.admin.ListKeys(t.Context(), "sam"))
		if len(keys) != limit || created != limit-1 || limited != attempts-(limit-1) {
			t.Fatalf("%d racing creations: %d created, %d refused, sam holds %d keys; want %d, %d and %d",
				attempts, created, limited, len(keys), limit-1, attempts-(limit-1), limit)
		}
	})
}

// An account keeps at most 100 dead keys (keystore.DeadKeysKept): creating or revoking a key
// removes its oldest dead keys beyond them, so that an account creating and revoking keys in a
// loop does not grow the store without end. The dead keys that stopped working last stay
// listed, live keys are never touched, a removed key authenticates nowhere, and another
// account's keys stay whatever it holds until it creates or revokes one itself.
func TestDeadKeysPerAccountAreBounded(t *testing.T) {
	const kept = 100
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{})
		ctx := t.Context()
		samKey := s.account("sam")
		sam := s.client(samKey)
		samID, _ := keystore.ParseAPIKey(samKey)
		lasting := must(sam.CreateKey(ctx, admin.KeyRequest{Name: "lasting", ExpiresIn: "3650d"}))
		eveKey := s.account("eve")
		eveID, _ := keystore.ParseAPIKey(eveKey)
		// Dead keys of eve's beyond the bound, written to the store as an earlier version kept
		// them.
		var eves []string
		for range kept + 10 {
			k, _ := storetest.NewKey(t, "eve")
			k.Revoked = true
			s.must(s.store.CreateKey(ctx, k))
			eves = append(eves, k.ID)
		}

		// sam's keys in the order they stopped working: most revoked, some left to expire.
		var dead []string
		secrets := map[string]string{}
		for i := range 150 {
			s.advance(time.Minute)
			req := admin.KeyRequest{Name: fmt.Sprintf("loop %d", i)}
			expires := i%10 == 3
			if expires {
				req.ExpiresIn = "30s"
			}
			k := must(sam.CreateKey(ctx, req))
			if !expires {
				must(sam.RevokeKey(ctx, k.ID))
			}
			dead = append(dead, k.ID)
			secrets[k.ID] = k.Secret
		}
		now := time.Unix(0, s.clock.Load())
		split := func(account string) (live, dead []string) {
			t.Helper()
			keys, err := s.store.ListKeys(ctx, account)
			s.must(err)
			for _, k := range keys {
				if k.Live(now) {
					live = append(live, k.ID)
				} else {
					dead = append(dead, k.ID)
				}
			}
			slices.Sort(live)
			slices.Sort(dead)
			return live, dead
		}
		sorted := func(ids ...string) []string { return slices.Sorted(slices.Values(ids)) }

		// The loop ended on a revocation: it removed what was beyond the bound.
		live, held := split("sam")
		if want := sorted(dead[len(dead)-kept:]...); !slices.Equal(held, want) {
			t.Fatalf("after 150 keys created and revoked, sam holds %d dead keys; want the %d that stopped working last", len(held), kept)
		}
		if want := sorted(samID, lasting.ID); !slices.Equal(live, want) {
			t.Fatalf("sam's live keys are %v, want %v", live, want)
		}
		for _, id := range dead[:len(dead)-kept] {
			if _, err := s.store.GetKey(ctx, id); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("a removed key is still stored: %v", err)
			}
			if status, _ := s.token("sam", secrets[id]); status != http.StatusUnauthorized {
				t.Fatalf("GET /token with a removed key: HTTP %d, want 401", status)
			}
		}
		for _, key := range []string{samKey, lasting.Secret} {
			if status, body := s.token("sam", key); status != http.StatusOK {
				t.Fatalf("GET /token with a live key of sam's: HTTP %d %s", status, body.Error)
			}
		}

		// eve's keys are eve's: untouched by sam's removals, bounded by her own next creation,
		// which removes her oldest dead keys and keeps her live one.
		live, held = split("eve")
		if !slices.Equal(live, []string{eveID}) || !slices.Equal(held, sorted(eves...)) {
			t.Fatalf("sam's keys removed eve's: she holds %d dead keys of %d, live %v", len(held), len(eves), live)
		}
		if status, body := s.token("eve", eveKey); status != http.StatusOK {
			t.Fatalf("GET /token with eve's key: HTTP %d %s", status, body.Error)
		}
		second := must(s.client(eveKey).CreateKey(ctx, admin.KeyRequest{Name: "second"}))
		live, held = split("eve")
		if !slices.Equal(live, sorted(eveID, second.ID)) || len(held) != kept {
			t.Fatalf("after a creation eve holds %d dead keys, live %v; want %d dead and her two live keys", len(held), live, kept)
		}
	})
}

// grantsOn lists the rows on exactly repository as "subject actions".
func grantsOn(s *stack, repository string) []string {
	s.t.Helper()
	rows, err := s.store.ListGrants(s.t.Context(), keystore.GrantFilter{Repository: repository})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, g := range rows {
		out = append(out, g.Subject.String()+" "+strings.Join(g.Actions, ","))
	}
	return out
}

// The admin API reads the client address as GET /token does: X-Forwarded-For counts only from
// a trusted proxy.
func TestAdminAPIReadsTheClientAddressLikeTheTokenEndpoint(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tt := range []struct {
		name    string
		proxies []netip.Prefix
		via     string
		// network is the key's (10.0.0.0/8 when empty).
		network string
		inside  bool
	}{
		{"direct, outside", nil, "", "", false},
		{"a forged header from an untrusted peer", nil, "10.1.2.3", "", false},
		{"through a trusted proxy, inside", loopback, "10.1.2.3", "", true},
		{"through a trusted proxy, outside", loopback, "192.0.2.1", "", false},
		{"a trusted proxy without the header", loopback, "", "", false},
		{"through a trusted proxy that writes the port, inside", loopback, "10.1.2.3:4711", "", true},
		{"through a trusted proxy that writes the port, outside", loopback, "192.0.2.1:4711", "", false},
		// A key whose networks hold the proxy: a client the proxy could not name is not the
		// proxy.
		{"a trusted proxy without the header, the key's network holds it", loopback, "", "127.0.0.0/8", true},
		{"through a trusted proxy, a hop it could not read", loopback, "192.0.2.1, unknown", "127.0.0.0/8", false},
		{"through a trusted proxy, outside, the key's network holds the proxy", loopback, "192.0.2.1", "127.0.0.0/8", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, "bolt", stackOptions{TrustedProxies: tt.proxies})
			s.account("user1")
			must(s.admin.AddGrant(t.Context(), admin.GrantRequest{Account: "user1", Repository: "app", Actions: []string{"pull"}}))
			network := cmp.Or(tt.network, "10.0.0.0/8")
			key := s.newKey("user1", admin.KeyRequest{Restrictions: keystore.Restrictions{CIDRs: []string{network}}})
			_, err := s.clientVia(key, tt.via).ListKeys(t.Context(), "user1")
			if got := err == nil; got != tt.inside {
				t.Fatalf("admin API answers: %v, want inside=%v", err, tt.inside)
			}
			// GET /token, through the same path, agrees.
			q := url.Values{"service": {service}, "scope": {"repository:app:pull"}}
			req, _ := http.NewRequestWithContext(t.Context(), "GET", s.server.URL+"/token?"+q.Encode(), nil)
			req.SetBasicAuth("user1", key)
			if tt.via != "" {
				req.Header.Set("X-Forwarded-For", tt.via)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body tokenBody
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if pulls := strings.Contains(accessClaim(t, body.Token), `"pull"`); pulls != tt.inside {
				t.Fatalf("token endpoint grants pull: %v, want %v", pulls, tt.inside)
			}
		})
	}
}

// accessClaim is the raw access claim of a token (the stack's access verifies; here only the
// comparison with the admin API matters).
func accessClaim(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Access json.RawMessage `json:"access"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return string(claims.Access)
}

// A removal without actions removes the whole row, so the policy must judge the row's actions:
// an owner, or the checkout role, may remove pull, never the push an admin granted.
func TestRemovalIsJudgedOnWhatItRemoves(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{Bundle: "marketplace"})
		ctx := t.Context()
		sam := s.client(s.account("sam", "sellers"))
		s.account("bob", "buyers")
		s.account("carol", "buyers")
		checkout := s.client(s.role("shopfront", "checkout"))
		must(sam.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/app"}))
		must(s.admin.AddGrant(ctx, admin.GrantRequest{Account: "bob", Repository: "shop/app", Actions: []string{"pull", "push"}}))
		must(s.admin.AddGrant(ctx, admin.GrantRequest{Account: "carol", Repository: "shop/app", Actions: []string{"delete", "pull"}}))
		rows := func() []keystore.Grant {
			t.Helper()
			return must(s.admin.ListGrants(ctx, admin.GrantRequest{Repository: "shop/app"}))
		}

		for who, c := range map[string]*admin.Client{"the owner": sam, "checkout": checkout} {
			for _, account := range []string{"bob", "carol"} {
				err := c.RemoveGrant(ctx, admin.GrantRequest{Account: account, Repository: "shop/app"})
				if status(err) != http.StatusForbidden {
					t.Errorf("%s removing %s's whole row: %v, want HTTP 403", who, account, err)
				}
			}
		}
		if got := rows(); !slices.Equal(actionsOf(got, "account:bob"), []string{"pull", "push"}) || !slices.Equal(actionsOf(got, "account:carol"), []string{"delete", "pull"}) {
			t.Fatalf("rows after refused removals = %+v", got)
		}
		// Pull alone is theirs to take back.
		if err := sam.RemoveGrant(ctx, admin.GrantRequest{Account: "bob", Repository: "shop/app", Actions: []string{"pull"}}); err != nil {
			t.Fatal(err)
		}
		if err := checkout.RemoveGrant(ctx, admin.GrantRequest{Account: "carol", Repository: "shop/app", Actions: []string{"pull"}}); err != nil {
			t.Fatal(err)
		}
		if got := rows(); !slices.Equal(actionsOf(got, "account:bob"), []string{"push"}) || !slices.Equal(actionsOf(got, "account:carol"), []string{"delete"}) {
			t.Fatalf("rows after removing pull = %+v", got)
		}
		// A row holding only pull goes whole; a row that is not there is not found.
		must(sam.AddGrant(ctx, admin.GrantRequest{Account: "sam", Repository: "shop/app", Actions: []string{"pull"}}))
		if err := sam.RemoveGrant(ctx, admin.GrantRequest{Account: "sam", Repository: "shop/app"}); err != nil {
			t.Fatal(err)
		}
		if err := sam.RemoveGrant(ctx, admin.GrantRequest{Account: "sam", Repository: "shop/app"}); status(err) != http.StatusNotFound {
			t.Fatalf("removing a row that is gone: %v, want HTTP 404", err)
		}
	})
}

// With personal namespaces on, an account named like an organisation would get push in the
// organisation's namespace. teams ships personal namespaces on, organisations acme and globex.
func TestPersonalNamespacesDoNotAliasOrganisations(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{Bundle: "teams"})
		ctx := t.Context()
		for _, name := range []string{"acme", "globex"} {
			if _, err := s.admin.CreateAccount(ctx, admin.AccountRequest{Name: name}); status(err) != http.StatusForbidden {
				t.Errorf("creating an account named like organisation %s: %v, want HTTP 403", name, err)
			}
		}
		// An account that existed before the organisation did gets nothing in its namespace.
		if err := s.store.CreateAccount(ctx, keystore.Account{Name: "acme"}); err != nil && !errors.Is(err, keystore.ErrExists) {
			t.Fatal(err)
		}
		acme := s.newKey("acme", admin.KeyRequest{})
		got := s.access("acme", acme, "repository:acme/api:push,pull", "repository:acme/scratch:push")
		if len(got["acme/api"]) != 0 || len(got["acme/scratch"]) != 0 {
			t.Fatalf("account acme in organisation acme's namespace: %v", got)
		}
		bob := s.account("bob")
		if got := s.access("bob", bob, "repository:bob/scratch:push"); !slices.Equal(got["bob/scratch"], []string{"push"}) {
			t.Fatalf("bob's personal namespace: %v", got)
		}
		s.account("alice")
		if _, err := s.admin.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "bob/app", Owner: "alice"}); status(err) != http.StatusForbidden {
			t.Fatalf("reserving bob/app for alice: %v, want HTTP 403", err)
		}
	})
}

// The marketplace's max_listings_per_seller (20) holds however many reservations a seller sends
// at once: the count and the write are one step.
func TestListingLimitHoldsUnderConcurrency(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{Bundle: "marketplace"})
		sam := s.client(s.account("sam", "sellers"))
		var wg sync.WaitGroup
		var ok, refused atomic.Int64
		for i := range 40 {
			wg.Go(func() {
				_, err := sam.ReserveRepository(t.Context(), admin.RepositoryRequest{Repository: fmt.Sprintf("shop/l%d", i)})
				switch status(err) {
				case http.StatusCreated, http.StatusOK:
					ok.Add(1)
				case http.StatusForbidden:
					refused.Add(1)
				default:
					t.Errorf("reservation %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		list := must(s.admin.ListRepositories(t.Context(), "sam"))
		if len(list) != 20 || ok.Load() != 20 || refused.Load() != 20 {
			t.Fatalf("%d reservations held (%d accepted, %d refused), want exactly 20", len(list), ok.Load(), refused.Load())
		}
	})
}

// A registry may send names whose first segment reads as a host: lower case with dots or a
// :port they are ordinary names, matched like any other segment; upper case is no repository
// anything can name, and gets nothing, even for an admin.
func TestFirstSegmentNames(t *testing.T) {
	s := newStack(t, "bolt", stackOptions{})
	ctx := t.Context()
	key := s.account("user1")
	must(s.admin.AddGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "*/app", Actions: []string{"pull"}}))
	must(s.admin.AddGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "**", Actions: []string{"push"}}))
	got := s.access("user1", key, "repository:example.com/app:pull,push", "repository:host:5000/app:pull", "repository:Acme/app:pull,push", "repository:Example.com/app:pull")
	want := map[string][]string{"example.com/app": {"pull", "push"}, "host:5000/app": {"pull"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("access = %v, want %v", got, want)
	}
	rootKey := s.newKey("root", admin.KeyRequest{})
	if got := s.access("root", rootKey, "repository:Acme/app:pull,push,delete"); len(got) != 0 {
		t.Fatalf("an admin's token for an upper-case name: %v", got)
	}
}

// An account gives its own key restrictions; their number is bounded, so that no key makes
// every decision about it expensive.
func TestKeyRestrictionsAreBounded(t *testing.T) {
	s := newStack(t, "bolt", stackOptions{})
	self := s.client(s.account("user1"))
	many := func(n int, format string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(format, i)
		}
		return out
	}
	for name, r := range map[string]keystore.Restrictions{
		"patterns": {Repositories: many(17, "user1/a%d*")},
		"networks": {CIDRs: many(17, "10.0.%d.0/24")},
		"actions":  {Actions: []string{"pull", "pull", "pull"}},
	} {
		if _, err := self.CreateKey(t.Context(), admin.KeyRequest{Restrictions: r}); status(err) != http.StatusBadRequest {
			t.Errorf("a key with too many %s: %v, want HTTP 400", name, err)
		}
	}
	if _, err := self.CreateKey(t.Context(), admin.KeyRequest{Restrictions: keystore.Restrictions{Repositories: many(16, "user1/a%d*"), CIDRs: many(16, "10.0.%d.0/24")}}); err != nil {
		t.Fatalf("a key at the limits: %v", err)
	}
	pulls := make([]string, 1000)
	for i := range pulls {
		pulls[i] = "pull"
	}
	if _, err := s.admin.AddGrant(t.Context(), admin.GrantRequest{Account: "user1", Repository: "x", Actions: pulls}); status(err) != http.StatusBadRequest {
		t.Fatalf("a grant of pull a thousand times: %v, want HTTP 400", err)
	}
}

// A key never creates a key that outlives it: a key made to expire in two minutes must not
// leave behind one that works forever.
func TestAKeyNeverOutlivesTheKeyThatMadeIt(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{})
		ctx := t.Context()
		s.account("user1")
		s.account("user2")
		must(s.admin.AddGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "app", Actions: []string{"pull"}}))
		must(s.admin.AddGrant(ctx, admin.GrantRequest{Account: "user2", Repository: "app", Actions: []string{"pull"}}))
		short := s.client(s.newKey("user1", admin.KeyRequest{ExpiresIn: "2m"}))
		parent := must(short.Whoami(ctx)).Key

		child, err := short.CreateKey(ctx, admin.KeyRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if child.Expires.IsZero() || child.Expires.After(parent.Expires) {
			t.Fatalf("a key expiring at %v created one expiring at %v", parent.Expires, child.Expires)
		}
		if _, err := short.CreateKey(ctx, admin.KeyRequest{ExpiresIn: "30d"}); status(err) != http.StatusBadRequest {
			t.Fatalf("asking for a longer life: %v, want HTTP 400", err)
		}
		// An admin's temporary key is bound the same way, for keys of other accounts too.
		tempAdmin := s.client(s.newKey("root", admin.KeyRequest{ExpiresIn: "2m"}))
		other, err := tempAdmin.CreateKey(ctx, admin.KeyRequest{Account: "user2"})
		if err != nil {
			t.Fatal(err)
		}

		if !s.pulls("user1", child.Secret, "app") || !s.pulls("user2", other.Secret, "app") {
			t.Fatal("the new keys do not work before the expiry")
		}
		s.advance(3 * time.Minute)
		for user, key := range map[string]string{"user1": child.Secret, "user2": other.Secret} {
			if status, _ := s.token(user, key, "repository:app:pull"); status != http.StatusUnauthorized {
				t.Errorf("%s's key made by an expired key: HTTP %d, want 401", user, status)
			}
		}
	})
}

// The marketplace's checkout role records purchases only with a key whose restrictions cover
// the write: a read-only checkout key, or one limited to another listing or to other networks,
// sells nothing.
func TestCheckoutKeysKeepTheirRestrictions(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{Bundle: "marketplace"})
		ctx := t.Context()
		sam := s.client(s.account("sam", "sellers"))
		bobKey := s.account("bob", "buyers")
		must(sam.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/app"}))
		must(sam.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/only-this"}))
		s.role("shopfront", "checkout")
		purchase := admin.GrantRequest{Account: "bob", Repository: "shop/app", Actions: []string{"pull"}}
		for name, r := range map[string]keystore.Restrictions{
			"read-only":              {Actions: []string{"pull"}},
			"limited to one listing": {Repositories: []string{"shop/only-this"}},
			"limited to networks":    {CIDRs: []string{"10.0.0.0/8"}},
		} {
			checkout := s.client(s.newKey("shopfront", admin.KeyRequest{Restrictions: r}))
			if _, err := checkout.AddGrant(ctx, purchase); status(err) != http.StatusForbidden {
				t.Errorf("a %s checkout key records a purchase: %v, want HTTP 403", name, err)
			}
		}
		if s.pulls("bob", bobKey, "shop/app") {
			t.Fatal("the buyer pulls after purchases by restricted checkout keys")
		}
		// A key limited to the listings it sells (here every listing) still records them.
		shop := s.client(s.newKey("shopfront", admin.KeyRequest{Restrictions: keystore.Restrictions{Repositories: []string{"shop/*"}}}))
		must(shop.AddGrant(ctx, purchase))
		must(s.admin.AddGrant(ctx, admin.GrantRequest{Account: "bob", Repository: "shop/only-this", Actions: []string{"pull"}}))
		ro := s.client(s.newKey("shopfront", admin.KeyRequest{Restrictions: keystore.Restrictions{Actions: []string{"pull"}}}))
		if err := ro.RemoveGrant(ctx, admin.GrantRequest{Account: "bob", Repository: "shop/only-this", Actions: []string{"pull"}}); status(err) != http.StatusForbidden {
			t.Fatalf("a read-only checkout key refunds: %v, want HTTP 403", err)
		}
		if !s.pulls("bob", bobKey, "shop/app") || !s.pulls("bob", bobKey, "shop/only-this") {
			t.Fatal("a purchase by a checkout key limited to the shop was lost")
		}
	})
}

// A name is taken as it is sent: a release of shop/x/../premium is no release of shop/premium,
// whether a router or a client would clean the path; patterns with dot segments are refused.
func TestUncleanNamesNameNothingElse(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{})
		ctx := t.Context()
		s.account("sam")
		rootKey := s.newKey("root", admin.KeyRequest{})
		must(s.admin.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/premium", Owner: "sam"}))
		noRedirects := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, name := range []string{"shop/x/../premium", "shop//premium", "shop/./premium", "x/../shop/premium"} {
			req, _ := http.NewRequestWithContext(ctx, "DELETE", s.server.URL+admin.Prefix+"/repositories/"+name, nil)
			req.Header.Set("Authorization", "Bearer "+rootKey)
			resp, err := noRedirects.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("DELETE .../repositories/%s: HTTP %d, want 404", name, resp.StatusCode)
			}
			if err := s.admin.ReleaseRepository(ctx, name); !errors.Is(err, keystore.ErrInvalid) {
				t.Errorf("the client releasing %q: %v, want it refused before sending", name, err)
			}
		}
		if list := must(s.admin.ListRepositories(ctx, "sam")); len(list) != 1 {
			t.Fatalf("sam's reservations = %+v; an unclean name released shop/premium", list)
		}
		for _, pattern := range []string{"shop/../premium", "./shop/app", "shop/."} {
			if _, err := s.admin.AddGrant(ctx, admin.GrantRequest{Account: "sam", Repository: pattern, Actions: []string{"pull"}}); status(err) != http.StatusBadRequest {
				t.Errorf("a grant on %q: %v, want HTTP 400", pattern, err)
			}
			if _, err := s.admin.CreateKey(ctx, admin.KeyRequest{Account: "sam", Restrictions: keystore.Restrictions{Repositories: []string{pattern}}}); status(err) != http.StatusBadRequest {
				t.Errorf("a key limited to %q: %v, want HTTP 400", pattern, err)
			}
		}
	})
}
