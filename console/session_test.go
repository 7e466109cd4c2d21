package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/console"
	"github.com/regoauth/regoauth/keystore"
)

// TestSignInCookie: a session cookie is HttpOnly, SameSite=Strict and expiring; under TLS it is
// Secure and a __Host- cookie, so no sibling host can set or shadow it.
func TestSignInCookie(t *testing.T) {
	for _, tls := range []bool{false, true} {
		f := newFixture(t, tls)
		b := f.browser()
		p := b.trySignin("alice", f.keys["alice"])
		wantStatus(t, p, http.StatusSeeOther, "sign-in")
		var session *http.Cookie
		for _, ck := range (&http.Response{Header: p.header}).Cookies() {
			if strings.HasSuffix(ck.Name, "regoauth_session") {
				session = ck
			}
		}
		if session == nil {
			t.Fatalf("tls=%v: no session cookie in %v", tls, p.header["Set-Cookie"])
		}
		if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.MaxAge <= 0 || session.MaxAge > 12*3600 {
			t.Fatalf("tls=%v: session cookie %+v", tls, session)
		}
		if tls && (!session.Secure || session.Name != "__Host-regoauth_session" || session.Path != "/") {
			t.Fatalf("under TLS the session cookie is %+v", session)
		}
		if !tls && (session.Secure || session.Path != "/console/") {
			t.Fatalf("on plain HTTP the session cookie is %+v", session)
		}
		if p := b.get("/console/keys"); p.status != http.StatusOK || !strings.Contains(p.body, "Signed in as <strong>alice</strong>") {
			t.Fatalf("tls=%v: keys page after sign-in: %d", tls, p.status)
		}
	}
}

// TestSignInFailures: wrong keys, keys of other accounts, revoked and expired keys all read the
// same, count toward the brute-force limits, and start no session; a limited account is refused
// before its key is even checked.
func TestSignInFailures(t *testing.T) {
	f := newFixture(t, false)
	revoked := f.newKey("alice", keystore.Restrictions{})
	must(t, f.store.RevokeKey(ctx, keyID(revoked)))
	for name, tt := range map[string]struct{ account, key string }{
		"wrong secret":          {"alice", otherSecret(f.keys["alice"])},
		"another account's key": {"alice", f.keys["mallory"]},
		"revoked key":           {"alice", revoked},
		"not a key":             {"alice", "hunter2"},
		"unknown account":       {"nobody", f.keys["alice"]},
	} {
		t.Run(name, func(t *testing.T) {
			b := f.browser()
			before := f.limiter.failures(tt.account)
			p := b.trySignin(tt.account, tt.key)
			wantStatus(t, p, http.StatusUnauthorized, "sign-in")
			if !strings.Contains(p.body, "do not match") || strings.Contains(p.body, tt.key) {
				t.Fatalf("refusal page:\n%s", p.body)
			}
			if f.limiter.failures(tt.account) != before+1 {
				t.Fatalf("the failure was not counted")
			}
			if p := b.get("/console/keys"); p.status != http.StatusSeeOther {
				t.Fatalf("a failed sign-in opened a session: %d", p.status)
			}
		})
	}
	// A failure beyond the account's budget is refused as one too many.
	f.limiter.mu.Lock()
	f.limiter.budget = map[string]int{"mallory": 2}
	f.limiter.mu.Unlock()
	if p := f.browser().trySignin("mallory", otherSecret(f.keys["mallory"])); p.status != http.StatusUnauthorized {
		t.Fatalf("first failure: HTTP %d", p.status)
	}
	if p := f.browser().trySignin("mallory", otherSecret(f.keys["mallory"])); p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") != "30" {
		t.Fatalf("failure beyond the budget: HTTP %d, Retry-After %q", p.status, p.header.Get("Retry-After"))
	}

	f.limiter.block("alice")
	b := f.browser()
	p := b.trySignin("alice", f.keys["alice"])
	wantStatus(t, p, http.StatusTooManyRequests, "sign-in while limited")
	if p.header.Get("Retry-After") != "90" || !strings.Contains(p.body, "Try again in 90 seconds") {
		t.Fatalf("limited sign-in: Retry-After %q\n%s", p.header.Get("Retry-After"), p.body)
	}
	if p := b.get("/console/keys"); p.status != http.StatusSeeOther {
		t.Fatalf("a limited sign-in with the right key opened a session")
	}
	if n := f.limiter.unsettled(); n != 0 {
		t.Fatalf("%d sign-in attempts were let through and never settled", n)
	}
}

// TestSignOutEndsTheSession: a copy of the cookie taken before signing out opens nothing
// afterwards — not a page, not a change — because the record behind it is gone.
func TestSignOutEndsTheSession(t *testing.T) {
	f := newFixture(t, false)
	b := f.as("alice")
	b.get("/console/keys")
	token := b.csrf()
	thief := f.browser()
	u, _ := url.Parse(f.srv.URL + "/console/")
	thief.c.Jar.SetCookies(u, b.c.Jar.Cookies(u))
	if p := thief.get("/console/keys"); p.status != http.StatusOK {
		t.Fatalf("the copied cookie does not work before sign-out: %d", p.status)
	}

	p := b.post("/console/signout", url.Values{"csrf": {token}})
	if p.status != http.StatusSeeOther || p.location != "/console/signin?signedout=1" {
		t.Fatalf("sign-out: %d %s", p.status, p.location)
	}
	if p := thief.get("/console/keys"); p.status != http.StatusSeeOther {
		t.Fatalf("the copied cookie still opens pages after sign-out: %d", p.status)
	}
	keys, _ := f.store.ListKeys(ctx, "alice")
	p = thief.post("/console/keys", url.Values{"csrf": {token}, "name": {"stolen"}})
	wantStatus(t, p, http.StatusUnauthorized, "a change with the copied cookie after sign-out")
	if after, _ := f.store.ListKeys(ctx, "alice"); len(after) != len(keys) {
		t.Fatal("a key was created with a cookie whose session had ended")
	}
}

// TestSessionsPerAccountAreBounded: an account signing in again and again holds at most
// MaxSessionsPerAccount sessions; the sign-in past it ends the session that would end first,
// and nobody else's.
func TestSessionsPerAccountAreBounded(t *testing.T) {
	const most = 3
	f := newFixtureWith(t, fixtureConfig{console: []func(*console.Options){func(o *console.Options) { o.MaxSessionsPerAccount = most }}})
	other := f.as("buyer")
	var browsers []*browser
	for range most + 2 {
		browsers = append(browsers, f.as("alice"))
		f.clock.Add(time.Minute)
	}
	for i, b := range browsers {
		p := b.get("/console/keys")
		if signedOut := p.status == http.StatusSeeOther && strings.HasPrefix(p.location, "/console/signin"); signedOut != (i < 2) {
			t.Errorf("alice's sign-in %d of %d: %d %s (the first two should have ended)", i+1, len(browsers), p.status, p.location)
		}
	}
	wantStatus(t, other.get("/console/keys"), http.StatusOK, "another account's session")
}

// TestSessionEndsWithItsKeyAccountOrTime: revoking the key a session was opened with, disabling
// the account, or reaching the session's end stops it at the next request.
func TestSessionEndsWithItsKeyAccountOrTime(t *testing.T) {
	f := newFixture(t, false)
	for name, end := range map[string]func(b *browser){
		"key revoked": func(*browser) { must(t, f.store.RevokeKey(ctx, keyID(f.keys["alice"]))) },
		"account disabled": func(*browser) {
			must(t, f.store.UpdateAccount(ctx, keystore.Account{Name: "mallory", Disabled: true}))
		},
		"time": func(*browser) { f.clock.Add(12 * time.Hour) },
	} {
		t.Run(name, func(t *testing.T) {
			account := map[string]string{"key revoked": "alice", "account disabled": "mallory", "time": "buyer"}[name]
			b := f.as(account)
			b.get("/console/keys") // loaded once, so the principal is in the store's cache
			end(b)
			if p := b.get("/console/keys"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/console/signin") {
				t.Fatalf("after the session's end: %d %s", p.status, p.location)
			}
		})
	}
}

// TestRevokingOwnKeySignsOut: the console warns, and the session ends with the key.
func TestRevokingOwnKeySignsOut(t *testing.T) {
	f := newFixture(t, false)
	b := f.as("buyer")
	id := keyID(f.keys["buyer"])
	p := b.get("/console/keys/revoke?id=" + id)
	if !strings.Contains(p.body, "also signs you out") {
		t.Fatalf("no warning:\n%s", p.body)
	}
	p = b.post("/console/keys/revoke", url.Values{"csrf": {b.csrf()}, "id": {id}})
	wantStatus(t, p, http.StatusSeeOther, "revoke own key")
	if p := b.get(p.location); p.status != http.StatusSeeOther {
		t.Fatalf("still signed in after revoking the session's key: %d", p.status)
	}
}

// TestCSRF: a change without the session's CSRF token, with another session's, or sent from
// another site is refused and changes nothing; so is a sign-in without its form's token.
func TestCSRF(t *testing.T) {
	f := newFixture(t, false)
	alice, mallory := f.as("alice"), f.as("mallory")
	alice.get("/console/keys")
	good := alice.csrf()
	mallory.get("/console/keys")
	malloryToken := mallory.csrf()
	count := func() int {
		keys, err := f.store.ListKeys(ctx, "alice")
		must(t, err)
		return len(keys)
	}
	before := count()
	for name, tt := range map[string]struct {
		token, site string
		status      int
	}{
		"no token":               {"", "same-origin", http.StatusForbidden},
		"forged token":           {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "same-origin", http.StatusForbidden},
		"another session's":      {malloryToken, "same-origin", http.StatusForbidden},
		"cross-site, good token": {good, "cross-site", http.StatusForbidden},
	} {
		t.Run(name, func(t *testing.T) {
			p := alice.postWith("/console/keys", url.Values{"csrf": {tt.token}, "name": {"csrf"}}, tt.site)
			wantStatus(t, p, tt.status, name)
			if count() != before {
				t.Fatal("a key was created")
			}
		})
	}
	if p := alice.post("/console/keys", url.Values{"csrf": {good}, "name": {"fine"}}); p.status != http.StatusOK || count() != before+1 {
		t.Fatalf("the real form failed: %d", p.status)
	}

	// Sign-in: the token must come from this browser's sign-in form.
	b := f.browser()
	p := b.post("/console/signin", url.Values{"account": {"alice"}, "key": {f.keys["alice"]}})
	wantStatus(t, p, http.StatusForbidden, "sign-in without a form token")
	other := f.browser()
	other.get("/console/signin")
	b.get("/console/signin")
	p = b.post("/console/signin", url.Values{"csrf": {other.csrf()}, "account": {"alice"}, "key": {f.keys["alice"]}})
	wantStatus(t, p, http.StatusForbidden, "sign-in with another browser's form token")
}

// TestSecurityHeaders: every console response, pages, errors and assets, carries the headers;
// pages are never cached.
func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, false)
	b := f.as("alice")
	if p := f.browser().get("/console/signin"); p.header.Get("Cache-Control") != "no-store" || p.header.Get("Content-Security-Policy") == "" {
		t.Errorf("sign-in page headers %v", p.header)
	}
	for _, path := range []string{"/console/signin", "/console/keys", "/console/nothing", "/console/static/console.css", "/console/admin/accounts"} {
		p := b.get(path)
		h := p.header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP allows something unsafe: %q", path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", path, h)
		}
		if strings.HasPrefix(h.Get("Content-Type"), "text/html") && p.status != http.StatusSeeOther {
			if h.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: Cache-Control %q", path, h.Get("Cache-Control"))
			}
			// No inline script or style for the CSP to have to allow.
			if strings.Contains(p.body, "<script>") || strings.Contains(p.body, "style=") || strings.Contains(p.body, "<style") || strings.Contains(p.body, "onclick") {
				t.Errorf("%s: inline script or style", path)
			}
		}
	}
}

// otherSecret is key with the last character of its secret changed.
func otherSecret(key string) string {
	last := "a"
	if strings.HasSuffix(key, "a") {
		last = "b"
	}
	return key[:len(key)-1] + last
}
