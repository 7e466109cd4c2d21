package admin_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/internal/testenv"
	"github.com/regoauth/regoauth/keystore"
)

// An end or an expiry later than a record may carry (keystore.LatestInstant), given as an
// instant in any zone or as a lifetime, is refused with 400 on every backend, and nothing is
// written; the latest one accepted is kept to the second, and gives until then.
func TestEndsPastTheLatestInstantAreRefused(t *testing.T) {
	latest := keystore.LatestInstant
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{Bundle: "marketplace"})
		ctx := t.Context()
		sam := s.client(s.account("sam", "sellers"))
		bobKey := s.account("bob", "buyers")
		must(sam.ReserveRepository(ctx, admin.RepositoryRequest{Repository: "shop/app"}))

		g, err := sam.AddGrant(ctx, admin.GrantRequest{Account: "bob", Repository: "shop/app", Actions: []string{"pull"}, Expires: latest})
		if err != nil {
			t.Fatal(err)
		}
		if !g.Expires.Equal(latest) {
			t.Fatalf("a grant until %v is kept until %v", latest, g.Expires)
		}
		if !s.pulls("bob", bobKey, "shop/app") {
			t.Fatalf("bob's purchase until %v gives no pull now", latest)
		}

		for name, req := range map[string]admin.GrantRequest{
			"a second later":   {Expires: latest.Add(time.Second)},
			"in 2300":          {Expires: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)},
			"year 10000 (UTC)": {Expires: time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -(23*3600+59*60)))},
			"in 2562047h":      {ExpiresIn: "2562047h"},
			"in 876001h":       {ExpiresIn: "876001h"},
			"in 36501d":        {ExpiresIn: "36501d"},
		} {
			req.Account, req.Repository, req.Actions = "bob", "shop/app", []string{"pull"}
			for who, c := range map[string]*admin.Client{"the owner": sam, "an admin": s.admin} {
				if _, err := c.AddGrant(ctx, req); status(err) != http.StatusBadRequest {
					t.Errorf("%s granting until %s: %v, want HTTP 400", who, name, err)
				}
			}
		}
		for _, lifetime := range []string{"2562047h", "876001h", "36501d"} {
			if _, err := s.admin.CreateKey(ctx, admin.KeyRequest{Account: "sam", ExpiresIn: lifetime}); status(err) != http.StatusBadRequest {
				t.Errorf("a key expiring in %s: %v, want HTTP 400", lifetime, err)
			}
		}
		rows := must(s.admin.ListGrants(ctx, admin.GrantRequest{Account: "bob"}))
		if len(rows) != 1 || !rows[0].Expires.Equal(latest) {
			t.Fatalf("bob's rows after the refused grants = %+v", rows)
		}
		if keys := must(s.admin.ListKeys(ctx, "sam")); len(keys) != 1 {
			t.Fatalf("sam's keys after the refused ones = %+v", keys)
		}

		// The longest lifetime accepted makes a key whose own keys the policy can still judge.
		long := must(s.admin.CreateKey(ctx, admin.KeyRequest{Account: "sam", ExpiresIn: "36500d"}))
		c := s.client(long.Secret)
		for _, req := range []admin.KeyRequest{{}, {ExpiresIn: "1h"}} {
			if _, err := c.CreateKey(ctx, req); err != nil {
				t.Errorf("a key expiring at %v creating a key (expires_in %q): %v", long.Expires, req.ExpiresIn, err)
			}
		}
		// A lifetime within bounds still may not end past the latest instant.
		s.advance(time.Date(2150, 1, 1, 0, 0, 0, 0, time.UTC).Sub(time.Unix(0, s.clock.Load())))
		if _, err := s.admin.CreateKey(ctx, admin.KeyRequest{Account: "sam", ExpiresIn: "36500d"}); status(err) != http.StatusBadRequest {
			t.Errorf("in 2150, a key for 100 years: %v, want HTTP 400", err)
		}
		if _, err := s.admin.AddGrant(ctx, admin.GrantRequest{Account: "bob", Repository: "shop/app", Actions: []string{"pull"}, ExpiresIn: "36500d"}); status(err) != http.StatusBadRequest {
			t.Errorf("in 2150, a grant for 100 years: %v, want HTTP 400", err)
		}
	})
}

// farExpiry is a store that reads one key with an expiry past keystore.LatestInstant, as an
// earlier version stored them.
type farExpiry struct {
	admin.Store
	keyID string
}

func (s farExpiry) LoadPrincipal(ctx context.Context, id string) (keystore.Principal, error) {
	p, err := s.Store.LoadPrincipal(ctx, id)
	if id == s.keyID {
		p.Key.Expires = time.Date(2318, 3, 1, 0, 0, 0, 0, time.UTC)
	}
	return p, err
}

// A key an earlier version stored with an expiry past the latest instant still works, but
// creating keys with it is a 400 saying why, never an error of the policy.
func TestAKeyExpiringPastTheLatestInstantCreatesNoKeys(t *testing.T) {
	env := testenv.New(t)
	env.Account("user1")
	secret := env.Key("user1", nil)
	id, _ := keystore.ParseAPIKey(secret)
	f := serveFixture(t, env, admin.Deps{Store: farExpiry{Store: env.Store, keyID: id}, Authorizer: env.Engine})
	c := f.client(secret)
	if w, err := c.Whoami(ctx); err != nil || !w.Key.Expires.After(keystore.LatestInstant) {
		t.Fatalf("whoami with the far key: %+v, %v", w, err)
	}
	for _, req := range []admin.KeyRequest{{}, {ExpiresIn: "1h"}} {
		_, err := c.CreateKey(ctx, req)
		wantStatus(t, err, http.StatusBadRequest)
		if !strings.Contains(err.Error(), "another key") {
			t.Errorf("the refusal does not say what to do: %v", err)
		}
	}
	if keys := must(f.admin.ListKeys(ctx, "user1")); len(keys) != 1 {
		t.Fatalf("user1's keys = %+v", keys)
	}
}
