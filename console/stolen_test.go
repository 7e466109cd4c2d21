package console_test

import (
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
