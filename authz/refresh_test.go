package authz_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
	"github.com/regoauth/regoauth/tokens"
)

// login is docker's login probe; it returns the refresh token docker stores as identitytoken.
func (e *env) login(user, key string) string {
	e.t.Helper()
	res := e.get("account="+user+"&client_id=docker&offline_token=true&service="+service, user, key)
	e.access(res)
	tok, _ := res.body["refresh_token"].(string)
	if !tokens.IsRefreshToken(tok) {
		e.t.Fatalf("login probe returned no refresh token: %s", res.raw)
	}
	return tok
}

func refreshForm(tok, clientID string, scopes ...string) url.Values {
	v := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}, "service": {service}, "client_id": {clientID}}
	for _, s := range scopes {
		v.Add("scope", s)
	}
	return v
}

func TestRefreshTokenDrivesLaterRequests(t *testing.T) {
	e := newEnv(t)
	tok := e.login("user1", e.keys["user1"])

	// Any client may use it, as often as it likes, and the policy decides afresh each time.
	for _, client := range []string{"registry-client", "go-containerregistry", "oras-go", "containers/image", "regclient/regctl (v0.11.7)", "containerd-client"} {
		res := e.post(refreshForm(tok, client, "repository:image:pull,push", "repository:image2:push"))
		wantAccess(t, e.access(res), access("image", "pull"), access("image2", "push"))
		if res.body["scope"] != "repository:image:pull repository:image2:push" {
			t.Fatalf("%s: scope = %v", client, res.body["scope"])
		}
		if _, ok := res.body["refresh_token"]; ok {
			t.Fatalf("%s: a refresh token came back without access_type=offline", client)
		}
	}
	e.Grant("user1", "image", "push")
	wantAccess(t, e.access(e.post(refreshForm(tok, "x", "repository:image:push"))), access("image", "push"))

	// Asking for offline access again returns the same, still valid token.
	form := refreshForm(tok, "x")
	form.Set("access_type", "offline")
	if res := e.post(form); res.body["refresh_token"] != tok {
		t.Fatalf("refresh_token = %v, want the one in use", res.body["refresh_token"])
	}
}

func TestRefreshTokenOnGETBasic(t *testing.T) {
	e := newEnv(t)
	tok := e.login("user1", e.keys["user1"])
	// containerd's GET fallback sends ":<refresh token>".
	wantAccess(t, e.access(e.get(q("repository:image:pull"), "", tok)), access("image", "pull"))
	wantAccess(t, e.access(e.get(q("repository:image:pull"), "user1", tok)), access("image", "pull"))
	if res := e.get(q("repository:image:pull"), "user2", tok); res.status != http.StatusUnauthorized {
		t.Fatalf("another account's name with the token: %d", res.status)
	}
}

func TestPasswordGrantOffline(t *testing.T) {
	e := newEnv(t)
	res := e.post(url.Values{"grant_type": {"password"}, "username": {"user1"}, "password": {e.keys["user1"]},
		"service": {service}, "access_type": {"offline"}, "client_id": {"containerd-client"}})
	tok, _ := res.body["refresh_token"].(string)
	if !tokens.IsRefreshToken(tok) {
		t.Fatalf("no refresh token: %s", res.raw)
	}
	wantAccess(t, e.access(e.post(refreshForm(tok, "x", "repository:image:pull"))), access("image", "pull"))
	if res := e.get(q(), "", ""); res.body["refresh_token"] != nil {
		t.Fatal("anonymous login got a refresh token")
	}
}

func TestRefreshTokenRefused(t *testing.T) {
	e := newEnv(t)
	tok := e.login("user1", e.keys["user1"])
	other := e.login("user2", e.keys["user2"])
	unauthorized := func(name string, form url.Values) {
		t.Helper()
		res := e.post(form)
		if res.status != http.StatusUnauthorized || res.body["token"] != nil {
			t.Fatalf("%s: status %d: %s", name, res.status, res.raw)
		}
	}

	tampered := tok[:len(tok)-2] + "AA"
	unauthorized("tampered", refreshForm(tampered, "x"))
	unauthorized("api key as refresh token", refreshForm(e.keys["user1"], "x"))
	wrongService := refreshForm(tok, "x")
	wrongService.Set("service", "other.example.com")
	unauthorized("another service", wrongService)

	// Revoking the key kills its refresh tokens at once; other keys' tokens live on.
	id, _ := keystore.ParseAPIKey(e.keys["user1"])
	if err := e.Store.RevokeKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	unauthorized("revoked key", refreshForm(tok, "x"))
	e.access(e.post(refreshForm(other, "x")))

	// Disabling the account does too.
	if err := e.Store.UpdateAccount(ctx, keystore.Account{Name: "user2", Disabled: true}); err != nil {
		t.Fatal(err)
	}
	unauthorized("disabled account", refreshForm(other, "x"))
}

func TestRefreshTokenExpires(t *testing.T) {
	e := newEnv(t)
	tok := e.login("user1", e.keys["user1"])
	e.now = e.now.Add(30*24*time.Hour - time.Minute)
	e.access(e.post(refreshForm(tok, "x")))
	e.now = e.now.Add(time.Minute)
	if res := e.post(refreshForm(tok, "x")); res.status != http.StatusUnauthorized {
		t.Fatalf("expired refresh token: %d", res.status)
	}
}

// TestRefreshTokenDiesWithItsKeysExpiry: a refresh token lives 30 days, but the key it came from
// may expire sooner; from that moment the refresh token is refused, while a refresh token of
// another key, issued at the same time, still works.
func TestRefreshTokenDiesWithItsKeysExpiry(t *testing.T) {
	e := newEnv(t)
	key := e.Key("user1", func(k *keystore.Key) { k.Expires = e.now.Add(time.Hour) })
	tok := e.login("user1", key)
	other := e.login("user2", e.keys["user2"])
	e.access(e.post(refreshForm(tok, "x", "repository:image:pull")))

	e.now = e.now.Add(time.Hour + time.Second)
	if res := e.post(refreshForm(tok, "x", "repository:image:pull")); res.status != http.StatusUnauthorized || res.body["token"] != nil {
		t.Fatalf("the refresh token of an expired key: HTTP %d %s", res.status, res.raw)
	}
	e.access(e.post(refreshForm(other, "x")))
}

func TestRefreshGrantErrors(t *testing.T) {
	e := newEnv(t)
	res := e.post(url.Values{"grant_type": {"refresh_token"}, "service": {service}})
	if res.status != http.StatusBadRequest || res.body["error"] != "invalid_request" {
		t.Fatalf("missing refresh_token: %d %s", res.status, res.raw)
	}
	// Without refresh tokens configured the grant is unsupported and login gets none.
	// A nil codec is no codec: the interface holding a nil pointer must not turn them on.
	for name, deps := range map[string]authz.Deps{
		"no codec":  {},
		"nil codec": {Refresh: (*tokens.RefreshCodec)(nil)},
	} {
		t.Run(name, func(t *testing.T) {
			e.handler = e.newHandler(deps, authz.Options{})
			res := e.post(refreshForm("rrt_x.y", "x"))
			if res.status != http.StatusBadRequest || res.body["error"] != "unsupported_grant_type" {
				t.Fatalf("refresh grant without refresh support: %d %s", res.status, res.raw)
			}
			res = e.get("offline_token=true&service="+service, "user1", e.keys["user1"])
			if res.status != http.StatusOK || res.body["refresh_token"] != nil {
				t.Fatalf("login without refresh support: %s", res.raw)
			}
		})
	}
}

// TestNewRefusesMissingCollaborators: a required collaborator missing, or a nil pointer in its
// place, is an error at construction, not a panic on the first request.
func TestNewRefusesMissingCollaborators(t *testing.T) {
	e := newEnv(t)
	for name, deps := range map[string]authz.Deps{
		"no directory":   {Decider: e.Engine, Issuer: e.signer},
		"nil decider":    {Directory: e.Store, Decider: (*policy.Engine)(nil), Issuer: e.signer},
		"nil issuer":     {Directory: e.Store, Decider: e.Engine, Issuer: (*tokens.Signer)(nil)},
		"nothing at all": {},
	} {
		if _, err := authz.New(deps, authz.Options{Services: []string{service}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRefreshTokenDiesWithAShorterTTL: refresh_tokens.ttl is reloadable, and the way to cut
// short the refresh tokens already handed out. Once it is shortened, a token issued under the
// longer one is refused from its issue plus the new ttl, as every token issued since is.
func TestRefreshTokenDiesWithAShorterTTL(t *testing.T) {
	e := newEnv(t)
	tok := e.login("user1", e.keys["user1"])

	shorter, err := tokens.NewRefreshCodec([][]byte{[]byte("0123456789abcdef0123456789abcdef")}, time.Hour, func() time.Time { return e.now })
	if err != nil {
		t.Fatal(err)
	}
	e.handler = e.newHandler(authz.Deps{Refresh: shorter}, authz.Options{Now: func() time.Time { return e.now }})
	e.access(e.post(refreshForm(tok, "x", "repository:image:pull")))
	fresh := e.login("user1", e.keys["user1"])

	e.now = e.now.Add(time.Hour + time.Second)
	if res := e.post(refreshForm(tok, "x", "repository:image:pull")); res.status != http.StatusUnauthorized || res.body["token"] != nil {
		t.Fatalf("a refresh token older than the ttl: HTTP %d %s", res.status, res.raw)
	}
	if res := e.post(refreshForm(fresh, "x", "repository:image:pull")); res.status != http.StatusUnauthorized {
		t.Fatalf("a refresh token issued under the shorter ttl, past it: HTTP %d", res.status)
	}
}

// TestPOSTAlwaysSaysWhatItGranted: an OAuth 2 response without "scope" means the scope asked
// for was granted as asked (RFC 6749 §5.1). When nothing was granted, of a scope asked for or of
// none, the response still says so, with an empty scope.
func TestPOSTAlwaysSaysWhatItGranted(t *testing.T) {
	e := newEnv(t)
	tok := e.login("user1", e.keys["user1"])
	for name, form := range map[string]url.Values{
		"refresh grant, push denied": refreshForm(tok, "x", "repository:image:push"),
		"refresh grant, no scope":    refreshForm(tok, "x"),
		"password grant, push denied": {"grant_type": {"password"}, "username": {"user1"}, "password": {e.keys["user1"]},
			"service": {service}, "scope": {"repository:image:push"}},
	} {
		res := e.post(form)
		e.access(res)
		if scope, ok := res.body["scope"]; !ok || scope != "" {
			t.Errorf("%s: scope = %v (present %v), want an empty scope: %s", name, scope, ok, res.raw)
		}
	}
	// GET answers carry no scope: the registry token protocol has none.
	if res := e.get(q("repository:image:push"), "user1", e.keys["user1"]); res.body["scope"] != nil {
		t.Errorf("GET answered a scope: %s", res.raw)
	}
}

// TestRefreshTokenKeepsItsKeysRestrictions: a refresh token is worth what the key it came from
// is worth, never more: a read-only key limited to one repository and one network gives, through
// its refresh token, pull on that repository from inside that network, and nothing else.
func TestRefreshTokenKeepsItsKeysRestrictions(t *testing.T) {
	e := newEnv(t)
	e.handler = e.newHandler(authz.Deps{Refresh: e.refresh}, authz.Options{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, // httptest's peer
		Now:            func() time.Time { return e.now },
	})
	e.Grant("user1", "image2", "delete")
	key := e.Key("user1", func(k *keystore.Key) {
		k.Restrictions = keystore.Restrictions{Actions: []string{"pull"}, Repositories: []string{"image2"}, CIDRs: []string{"203.0.113.0/24"}}
	})
	from := func(form url.Values, ip string) result {
		r := formRequest(form)
		r.Header.Set("X-Forwarded-For", ip)
		return e.do(r)
	}
	login := url.Values{"grant_type": {"password"}, "username": {"user1"}, "password": {key}, "service": {service}, "access_type": {"offline"}}
	res := from(login, "203.0.113.7")
	tok, _ := res.body["refresh_token"].(string)
	if !tokens.IsRefreshToken(tok) {
		t.Fatalf("no refresh token: %s", res.raw)
	}
	scopes := []string{"repository:image:pull,push", "repository:image2:*", "registry:catalog:*"}
	wantAccess(t, e.access(from(refreshForm(tok, "x", scopes...), "203.0.113.7")),
		access("image"), access("image2", "pull"), tokens.Access{Type: "registry", Name: "catalog", Actions: []string{}})
	wantAccess(t, e.access(from(refreshForm(tok, "x", scopes...), "198.51.100.1")),
		access("image"), access("image2"), tokens.Access{Type: "registry", Name: "catalog", Actions: []string{}})
	// The same from a client that sends the refresh token as containerd does on GET.
	r := httptest.NewRequest("GET", "/token?"+q(scopes...), nil)
	r.SetBasicAuth("", tok)
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	wantAccess(t, e.access(e.do(r)), access("image"), access("image2", "pull"), tokens.Access{Type: "registry", Name: "catalog", Actions: []string{}})

	// Outside its networks the key is not turned into a refresh token (POST, and docker
	// login's GET with offline_token), nor from an address the proxies do not vouch for; the
	// request itself is answered, with what the policy gives there: nothing.
	for _, ip := range []string{"198.51.100.1", "::ffff:198.51.100.1", "not-an-address"} {
		res := from(login, ip)
		if res.status != http.StatusOK || res.body["refresh_token"] != nil {
			t.Fatalf("password grant from %s: %d %s, want 200 without a refresh token", ip, res.status, res.raw)
		}
		r := httptest.NewRequest("GET", "/token?service="+service+"&offline_token=true&"+q("repository:image2:pull"), nil)
		r.SetBasicAuth("user1", key)
		r.Header.Set("X-Forwarded-For", ip)
		res = e.do(r)
		if res.status != http.StatusOK || res.body["refresh_token"] != nil {
			t.Fatalf("docker login from %s: %d %s, want 200 without a refresh token", ip, res.status, res.raw)
		}
		wantAccess(t, e.access(res), access("image2"))
	}
	// Inside, on GET too, it is.
	r = httptest.NewRequest("GET", "/token?service="+service+"&offline_token=true&"+q("repository:image2:pull"), nil)
	r.SetBasicAuth("user1", key)
	r.Header.Set("X-Forwarded-For", "::ffff:203.0.113.8")
	if res := e.do(r); !tokens.IsRefreshToken(stringField(res, "refresh_token")) {
		t.Fatalf("docker login from inside the key's networks: %s, want a refresh token", res.raw)
	}
}

func stringField(r result, name string) string {
	s, _ := r.body[name].(string)
	return s
}
