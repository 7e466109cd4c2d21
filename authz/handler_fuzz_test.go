package authz_test

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	disttoken "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/throttle"
)

// fuzzWorld is a store with accounts whose rights are easy to state, and the credentials a
// fuzzed request may refer to by placeholder (the fuzzer cannot know random keys).
type fuzzWorld struct {
	e       *env
	handler *authz.Handler
	// secrets maps a placeholder such as "{k1}" to the credential it stands for.
	secrets map[string]string
}

// Placeholders, each the credential of one key. Revoked, expired and disabled-account keys must
// never authenticate.
var fuzzMaterials = []struct {
	placeholder, account string
	valid                bool
	// allows narrows what the account holds when the request used this credential.
	allows func(name, action string, addrs []netip.Addr) bool
}{
	{"{k1}", "user1", true, anyAccess},
	{"{rt1}", "user1", true, anyAccess},
	{"{k1r}", "user1", true, func(name, action string, _ []netip.Addr) bool {
		ok, _ := path.Match("image*", name)
		return ok && action == "pull"
	}},
	{"{rt1r}", "user1", true, func(name, action string, _ []netip.Addr) bool {
		ok, _ := path.Match("image*", name)
		return ok && action == "pull"
	}},
	{"{k1n}", "user1", true, func(_, _ string, addrs []netip.Addr) bool {
		return slices.ContainsFunc(addrs, netip.MustParsePrefix("10.0.0.0/8").Contains)
	}},
	{"{k2}", "user2", true, anyAccess},
	{"{k3}", "user3", true, anyAccess},
	{"{k4}", "user4", false, nil},
	{"{krev}", "user1", false, nil},
	{"{kexp}", "user1", false, nil},
}

func anyAccess(string, string, []netip.Addr) bool { return true }

// holds is the reference model of what each account holds under the built-in library: its
// grants, its group's grants and its reservations, nothing else (no admin, no public
// repositories, no personal namespaces in this world).
func holds(account, name, action string) bool {
	switch account {
	case "user1":
		lib, _ := path.Match("lib/*", name)
		return name == "image" && action == "pull" ||
			name == "image2" && (action == "pull" || action == "push") ||
			lib && action == "pull"
	case "user2":
		return name == "shop/app" && slices.Contains([]string{"pull", "push", "delete"}, action)
	case "user3":
		return strings.HasPrefix(name, "team/") && (action == "pull" || action == "push")
	}
	return false
}

func newFuzzWorld(f *testing.F) *fuzzWorld {
	e := newEnv(f)
	w := &fuzzWorld{e: e, secrets: map[string]string{}}
	e.Grant("user1", "lib/*", "pull")
	if err := e.Store.Reserve(ctx, keystore.Ownership{Repository: "shop/app", Owner: "user2"}, 0); err != nil {
		f.Fatal(err)
	}
	e.account("user3", "devs")
	g := keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "devs"}, Repository: "team/**", Actions: []string{"pull", "push"}}
	if err := e.Store.PutGrant(ctx, g, keystore.Unguarded); err != nil {
		f.Fatal(err)
	}
	if err := e.Store.CreateAccount(ctx, keystore.Account{Name: "user4", Disabled: true}); err != nil {
		f.Fatal(err)
	}
	e.Grant("user4", "image", "pull")
	w.secrets["{k1}"], w.secrets["{k2}"], w.secrets["{k3}"] = e.keys["user1"], e.keys["user2"], e.keys["user3"]
	w.secrets["{k4}"] = e.Key("user4", nil)
	w.secrets["{k1r}"] = e.Key("user1", func(k *keystore.Key) {
		k.Restrictions = keystore.Restrictions{Actions: []string{"pull"}, Repositories: []string{"image*"}}
	})
	w.secrets["{k1n}"] = e.Key("user1", func(k *keystore.Key) { k.Restrictions = keystore.Restrictions{CIDRs: []string{"10.0.0.0/8"}} })
	w.secrets["{kexp}"] = e.Key("user1", func(k *keystore.Key) { k.Expires = e.now.Add(-time.Second) })
	w.secrets["{krev}"] = e.Key("user1", nil)
	id, _ := keystore.ParseAPIKey(w.secrets["{krev}"])
	if err := e.Store.RevokeKey(ctx, id); err != nil {
		f.Fatal(err)
	}
	w.secrets["{rt1}"] = e.login("user1", w.secrets["{k1}"])
	w.secrets["{rt1r}"] = e.login("user1", w.secrets["{k1r}"])

	// Failure budgets keyed by whatever address and account name the fuzzer sends, so large
	// that they never refuse: every input is answered the same in any order.
	never := throttle.Limit{Burst: 1 << 30, Every: time.Nanosecond}
	limits := throttle.Limits{Address: never, AccountAddress: never, Account: never}
	guard := throttle.NewGuard(throttle.NewMemory(1000, time.Minute, nil), limits, nil, nil)
	w.handler = e.newHandler(authz.Deps{Refresh: e.refresh, Throttle: guard}, authz.Options{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		Logger:         slog.New(slog.DiscardHandler),
	})
	return w
}

// fill replaces placeholders with the credentials they stand for.
func (w *fuzzWorld) fill(s string) string {
	for p, v := range w.secrets {
		s = strings.ReplaceAll(s, p, v)
	}
	return s
}

// FuzzTokenHandler sends whatever a client can send — method, query, body, content type,
// Authorization header, peer address and X-Forwarded-For — to the whole token handler over a
// real store and the built-in policy. It must never panic or answer 5xx, and a token it signs
// may carry only actions the reference model gives to the key the request used.
func FuzzTokenHandler(f *testing.F) {
	w := newFuzzWorld(f)
	addSeeds(f)
	f.Fuzz(func(t *testing.T, method uint8, query, body, contentType, auth, remote, xff string) {
		materials := query + "\x00" + body + "\x00" + auth
		r := httptest.NewRequest("GET", "/token", nil)
		r.Method = []string{"GET", "POST", "PUT"}[int(method)%3]
		r.URL.RawQuery = w.fill(query)
		if r.Method != "GET" {
			r.Body = http.NoBody
			if body != "" {
				r.Body = readCloser{strings.NewReader(w.fill(body))}
			}
			r.ContentLength = -1
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if user, pass, ok := strings.Cut(strings.TrimPrefix(auth, "B:"), ":"); ok && strings.HasPrefix(auth, "B:") {
			r.SetBasicAuth(w.fill(user), w.fill(pass))
		} else if auth != "" {
			r.Header.Set("Authorization", w.fill(auth))
		}
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}

		rec := httptest.NewRecorder()
		w.handler.ServeHTTP(rec, r)
		if rec.Code >= 500 {
			t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
		var body2 map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body2); err != nil {
			t.Fatalf("HTTP %d with a body that is not JSON: %q", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			if _, ok := body2["token"]; ok {
				t.Fatalf("HTTP %d carried a token", rec.Code)
			}
			return
		}
		claims := w.verify(t, body2["token"].(string))

		// Every address the request could claim, a superset of the one the server used.
		var addrs []netip.Addr
		for _, s := range append(strings.Split(xff, ","), remote) {
			if a, err := netip.ParseAddrPort(strings.TrimSpace(s)); err == nil {
				addrs = append(addrs, a.Addr().Unmap())
			}
			if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
				addrs = append(addrs, a.Unmap())
			}
		}
		used := []func(string, string, []netip.Addr) bool{}
		if claims.Subject != "" {
			for _, m := range fuzzMaterials {
				if m.account == claims.Subject && strings.Contains(materials, m.placeholder) {
					if !m.valid {
						continue
					}
					used = append(used, m.allows)
				}
			}
			if len(used) == 0 {
				t.Fatalf("a token for %q without any valid credential of that account (request %q %q %q)", claims.Subject, query, body, auth)
			}
		}
		for _, a := range claims.Access {
			for _, action := range a.Actions {
				ok := a.Type == "repository" && holds(claims.Subject, a.Name, action) &&
					slices.ContainsFunc(used, func(allows func(string, string, []netip.Addr) bool) bool { return allows(a.Name, action, addrs) })
				if !ok {
					t.Fatalf("token for %q grants %s on %s:%s, which the reference model does not (request %q %q %q)",
						claims.Subject, action, a.Type, a.Name, query, body, auth)
				}
			}
		}
	})
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

func (w *fuzzWorld) verify(t *testing.T, raw string) *disttoken.ClaimSet {
	t.Helper()
	tk, err := disttoken.NewToken(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(w.e.key.Chain[0])
	claims, err := tk.Verify(disttoken.VerifyOptions{TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{service, "other.example.com"}, Roots: roots})
	if err != nil {
		t.Fatalf("distribution rejected the token: %v", err)
	}
	return claims
}

// addSeeds seeds the handler's corpus with every request real clients were seen sending
// (their credentials replaced by placeholders), and with requests at the edges of the
// protocol: restricted, revoked and foreign keys, refresh tokens, proxies and odd bodies.
func addSeeds(f *testing.F) {
	file, err := os.Open("testdata/observed-token-requests.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	lines := bufio.NewScanner(file)
	for lines.Scan() {
		var o observed
		if err := json.Unmarshal(lines.Bytes(), &o); err != nil {
			f.Fatal(err)
		}
		cred := map[string]string{"alice": "{k1}", "pullonly": "{k1r}"}[o.BasicUser]
		auth := ""
		if o.BasicUser != "" {
			auth = "B:user1:" + cred
		}
		if o.Method == "POST" {
			form := url.Values(o.Form)
			if form.Get("refresh_token") != "" {
				form.Set("refresh_token", "{rt1}")
			}
			if form.Get("password") != "" {
				form.Set("username", "user1")
				form.Set("password", cred)
			}
			f.Add(uint8(1), "", form.Encode(), o.ContentType, auth, "127.0.0.1:4000", "")
			continue
		}
		f.Add(uint8(0), url.Values(o.Query).Encode(), "", "", auth, "127.0.0.1:4000", "")
	}
	for _, s := range []struct {
		method                                      uint8
		query, body, contentType, auth, remote, xff string
	}{
		{0, "scope=repository:image:pull,push,delete&scope=repository:image2:*", "", "", "B:user1:{k1r}", "127.0.0.1:1", ""},
		{0, "scope=repository:image:pull", "", "", "B:user1:{k1n}", "192.0.2.1:1", "10.1.2.3"},
		{0, "scope=repository:image:pull", "", "", "B:user1:{k1n}", "10.0.0.1:1", ""},
		{0, "scope=repository:shop/app:pull,push&scope=repository(plugin):shop/app:delete", "", "", "B:user2:{k2}", "[::1]:1", ""},
		{0, "scope=repository:team/a/b:*&scope=registry:catalog:*", "", "", "B:user3:{k3}", "127.0.0.1:1", ""},
		{0, "scope=repository:image:pull", "", "", "B:user4:{k4}", "127.0.0.1:1", ""},
		{0, "scope=repository:image:pull", "", "", "B:user1:{krev}", "127.0.0.1:1", ""},
		{0, "scope=repository:image:pull", "", "", "B:user1:{kexp}", "127.0.0.1:1", ""},
		{0, "scope=repository:image:pull", "", "", "B:user2:{k1}", "127.0.0.1:1", ""},
		{0, "scope=repository:image:pull&offline_token=true", "", "", "B::{rt1r}", "127.0.0.1:1", ""},
		{1, "", "grant_type=refresh_token&refresh_token={rt1r}&scope=repository:image2:push&service=registry.example.com", "application/x-www-form-urlencoded", "", "127.0.0.1:1", ""},
		{1, "", "grant_type=password&username=user1&password={k1}&scope=repository:lib/x:pull&access_type=offline", "application/x-www-form-urlencoded", "", "127.0.0.1:1", ""},
		{1, "", "grant_type=password&username=user1&password={k1}", "multipart/form-data; boundary=x", "", "127.0.0.1:1", ""},
		{2, "", "", "", "", "127.0.0.1:1", ""},
		{0, "service=other.example.com&scope=repository:image:pull", "", "", "Bearer {k1}", "garbage", "10.0.0.1, 192.0.2.9"},
	} {
		f.Add(s.method, s.query, s.body, s.contentType, s.auth, s.remote, s.xff)
	}
}
