package console_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/console"
	"github.com/regoauth/regoauth/keystore"
)

// TestStolenCookieStaysInsideTheKeysNetworks: a session opened with a key limited to networks
// is checked against the client address on every request, not only at sign-in, so a copy of
// its cookie used from outside those networks opens nothing, while from inside it works.
func TestStolenCookieStaysInsideTheKeysNetworks(t *testing.T) {
	f := newFixture(t, false, func(o *console.Options) {
		// A trusted proxy in front of the console says who the client is.
		o.ClientIP = func(r *http.Request) netip.Addr { return netip.MustParseAddr(r.Header.Get("X-Forwarded-For")) }
	})
	key := f.newKey("alice", keystore.Restrictions{CIDRs: []string{"10.0.0.0/8"}})
	owner := f.browserFrom("10.1.2.3")
	owner.signin("alice", key)
	u, _ := url.Parse(f.srv.URL + "/console/")
	for from, opens := range map[string]bool{"10.9.9.9": true, "192.0.2.1": false, "::1": false} {
		t.Run(from, func(t *testing.T) {
			thief := f.browserFrom(from)
			thief.c.Jar.SetCookies(u, owner.c.Jar.Cookies(u))
			p := thief.get("/console/keys")
			if opened := p.status == http.StatusOK; opened != opens {
				t.Fatalf("the cookie used from %s: HTTP %d %s, want a page: %v", from, p.status, p.location, opens)
			}
			if !opens && !strings.HasPrefix(p.location, "/console/signin") {
				t.Fatalf("the cookie used from %s: HTTP %d to %q, want the sign-in page", from, p.status, p.location)
			}
		})
	}
}

// TestStoreHoldsOnlyTheSessionCookiesHash: the store keeps a session under the SHA-256 of the
// cookie's secret, so whoever reads the store (a backup, a Redis replica) cannot present a
// session's cookie.
func TestStoreHoldsOnlyTheSessionCookiesHash(t *testing.T) {
	f := newFixture(t, false)
	b := f.as("alice")
	u, _ := url.Parse(f.srv.URL + "/console/")
	var secret []byte
	for _, ck := range b.c.Jar.Cookies(u) {
		if strings.HasSuffix(ck.Name, "regoauth_session") {
			raw, err := base64.RawURLEncoding.DecodeString(ck.Value)
			if err != nil {
				t.Fatal(err)
			}
			secret = raw
		}
	}
	if len(secret) == 0 {
		t.Fatal("no session cookie after sign-in")
	}
	sum := sha256.Sum256(secret)
	rec, err := f.store.GetSession(ctx, hex.EncodeToString(sum[:]))
	if err != nil || rec.Account != "alice" {
		t.Fatalf("the session under the hash of its cookie: %+v, %v", rec, err)
	}
	for _, id := range []string{hex.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret)} {
		if _, err := f.store.GetSession(ctx, id); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("the store holds a session under the cookie's secret itself (%s): %v", id, err)
		}
	}
}

// browserFrom is a browser whose requests come, as the console sees them, from addr.
func (f *fixture) browserFrom(addr string) *browser {
	b := f.browser()
	b.c.Transport = forwardedFor{addr, b.c.Transport}
	return b
}

type forwardedFor struct {
	addr string
	next http.RoundTripper
}

func (x forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", x.addr)
	return x.next.RoundTrip(r)
}
