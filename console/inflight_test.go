package console_test

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regoauth/regoauth/console"
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
	type answer struct {
		status     int
		retryAfter string
	}
	answers := make(chan answer, atOnce)
	for range atOnce {
		b := f.browser()
		b.get("/console/signin")
		form := url.Values{"csrf": {b.csrf()}, "account": {"alice"}, "key": {otherSecret(f.keys["alice"])}}
		go func() {
			req, _ := http.NewRequest("POST", f.srv.URL+"/console/signin", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			resp, err := b.c.Do(req)
			if err != nil {
				t.Error(err)
				answers <- answer{}
				return
			}
			resp.Body.Close()
			answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After")}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for held.began.Load() < budget && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	checking := held.began.Load()
	close(held.let)
	unauthorized, throttled := 0, 0
	for range atOnce {
		switch a := <-answers; a.status {
		case http.StatusUnauthorized:
			unauthorized++
		case http.StatusTooManyRequests:
			throttled++
			if s, err := strconv.Atoi(a.retryAfter); err != nil || s < 55 || s > 60 {
				t.Errorf("Retry-After %q, want about 60", a.retryAfter)
			}
		default:
			t.Errorf("HTTP %d", a.status)
		}
	}
	if checking != budget {
		t.Fatalf("%d wrong keys at once with a budget of %d: %d reached the key check at once", atOnce, budget, checking)
	}
	if unauthorized != budget || throttled != atOnce-budget || held.began.Load() != budget {
		t.Fatalf("%d answered 401 and %d 429 after %d key checks; want %d, %d and %d", unauthorized, throttled, held.began.Load(), budget, atOnce-budget, budget)
	}
	// The right key, from the address whose guesses spent the budget, is refused too; from
	// elsewhere it signs in.
	if p := f.browser().trySignin("alice", f.keys["alice"]); p.status != http.StatusTooManyRequests {
		t.Fatalf("the right key after the budget was spent: HTTP %d", p.status)
	}
	f.browserFrom("198.51.100.7").signin("alice", f.keys["alice"])
}
