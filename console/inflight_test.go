package console_test

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regoauth/regoauth/console"
	"github.com/regoauth/regoauth/internal/testenv"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/throttle"
)

// heldStore makes the key check slow: every principal lookup waits until let is closed.
type heldStore struct {
	console.Store
	let   chan struct{}
	began atomic.Int64
}

func (s *heldStore) LoadPrincipal(ctx context.Context, id string) (keystore.Principal, error) {
	s.began.Add(1)
	<-s.let
	return s.Store.LoadPrincipal(ctx, id)
}

// TestConcurrentSignInGuessesAreBounded: wrong keys for one account sent at once to the sign-in
// form, with the token endpoint's budgets, are checked with those still in flight counted as
// spent: no more reach the key check than the account's budget at the address holds, and the
// others are answered 429 with its Retry-After once those failed. Before, every one was checked.
func TestConcurrentSignInGuessesAreBounded(t *testing.T) {
	const atOnce, budget = 10, 2
	limits := throttle.Limits{Address: throttle.Limit{Burst: 100, Every: time.Minute}, AccountAddress: throttle.Limit{Burst: budget, Every: time.Minute}}
	guard := throttle.NewGuard(throttle.NewMemory(1000, limits.Refill(), nil), limits, nil, nil)
	held := &heldStore{let: make(chan struct{})}
	f := newFixtureWith(t, fixtureConfig{
		console: []func(*console.Options){func(o *console.Options) {
			o.Limiter = guard
			o.ClientIP = func(r *http.Request) netip.Addr {
				if a, err := netip.ParseAddr(r.Header.Get("X-Forwarded-For")); err == nil {
					return a
				}
				return netip.MustParseAddrPort(r.RemoteAddr).Addr()
			}
		}},
		store: func(s console.Store) console.Store { held.Store = s; return held },
	})
	// Each browser fetches its form first, one after the other; then all send at once.
	attempts := make([]func() (int, string), atOnce)
	for i := range attempts {
		b := f.browser()
		b.get("/console/signin")
		form := url.Values{"csrf": {b.csrf()}, "account": {"alice"}, "key": {otherSecret(f.keys["alice"])}}
		attempts[i] = func() (int, string) {
			req, _ := http.NewRequest("POST", f.srv.URL+"/console/signin", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			resp, err := b.c.Do(req)
			if err != nil {
				t.Error(err)
				return 0, ""
			}
			resp.Body.Close()
			return resp.StatusCode, resp.Header.Get("Retry-After")
		}
	}
	testenv.Burst(t, budget, held.began.Load, func() { close(held.let) }, attempts)
	// The right key, from the address whose guesses spent the budget, is refused too; from
	// elsewhere it signs in.
	if p := f.browser().trySignin("alice", f.keys["alice"]); p.status != http.StatusTooManyRequests {
		t.Fatalf("the right key after the budget was spent: HTTP %d", p.status)
	}
	f.browserFrom("198.51.100.7").signin("alice", f.keys["alice"])
}
