package console_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/console"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/keystore/storetest"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
)

// benchConsole is a console over a bolt store the size of a busy marketplace: 2,000 accounts,
// 10,000 grants (200 of them on the seller's listing), 500 reservations; the seller has 20
// keys. It returns the console and the session cookies of the seller and of an admin.
func benchConsole(b *testing.B) (http.Handler, map[string]*http.Cookie) {
	b.Helper()
	store, err := boltstore.OpenWith(filepath.Join(b.TempDir(), "store.db"), boltstore.Options{CacheTTL: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	now := time.Now().UTC()
	var recs []keystore.Record
	add := func(r keystore.Record) { recs = append(recs, r) }
	add(keystore.Record{Account: &keystore.Account{Name: "admin", Roles: []string{"admin"}, Created: now}})
	add(keystore.Record{Account: &keystore.Account{Name: "seller", Groups: []string{"sellers"}, Created: now}})
	for i := range 2000 {
		add(keystore.Record{Account: &keystore.Account{Name: fmt.Sprintf("user%04d", i), Created: now}})
	}
	for i := range 500 {
		owner := fmt.Sprintf("user%04d", i)
		if i == 0 {
			owner = "seller"
		}
		add(keystore.Record{Ownership: &keystore.Ownership{Repository: fmt.Sprintf("shop/listing%03d", i), Owner: owner, Created: now}})
	}
	for i := range 10000 {
		g := keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: fmt.Sprintf("user%04d", i%2000)},
			Repository: fmt.Sprintf("shop/listing%03d", i/20%500), Actions: []string{"pull"}}
		if i%3 == 0 {
			g.Expires = now.Add(time.Duration(i) * time.Minute)
		}
		add(keystore.Record{Grant: &g})
	}
	plain := map[string]string{}
	for i, account := range append([]string{"admin"}, strings.Split(strings.Repeat("seller ", 20), " ")[:20]...) {
		k, p := storetest.NewKey(b, account)
		k.Name = fmt.Sprintf("key %d", i)
		add(keystore.Record{Key: &k})
		if plain[account] == "" {
			plain[account] = p
		}
	}
	var buf strings.Builder
	if err := keystore.WriteExport(&buf, recs); err != nil {
		b.Fatal(err)
	}
	if _, err := keystore.Import(ctx, store, strings.NewReader(buf.String()), 4); err != nil {
		b.Fatal(err)
	}
	engine := policy.New(policy.Options{})
	if err := engine.LoadFS(ctx, policies.FS, policy.BuiltinBundle); err != nil {
		b.Fatal(err)
	}
	ops, err := admin.New(admin.Deps{Store: store, Authorizer: engine, Explainer: engine}, admin.Options{})
	if err != nil {
		b.Fatal(err)
	}
	c, err := console.New(store, ops, console.Options{Registry: "registry.test"})
	if err != nil {
		b.Fatal(err)
	}
	cookies := map[string]*http.Cookie{}
	for account, key := range plain {
		cookies[account] = benchSignin(b, c, account, key)
	}
	return c, cookies
}

func benchSignin(b *testing.B, h http.Handler, account, key string) *http.Cookie {
	b.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/console/signin", nil))
	pre := w.Result().Cookies()[0]
	token := csrfPattern.FindStringSubmatch(w.Body.String())[1]
	form := url.Values{"csrf": {token}, "account": {account}, "key": {key}}
	req := httptest.NewRequest("POST", "/console/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(pre)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	for _, ck := range w.Result().Cookies() {
		if ck.Name == "regoauth_session" && ck.Value != "" {
			return ck
		}
	}
	b.Fatalf("sign-in as %s failed: %d", account, w.Code)
	return nil
}

// BenchmarkPages renders each page as a signed-in browser gets it: the session read, the key
// checked again, the admin operation authorized by the policy and run on the store, the
// template executed.
//
// Machines here are shared and their speed drifts, so the first sub-benchmark is the unit the
// others are read in: one raw ES256 signature, timed in the same run.
func BenchmarkPages(b *testing.B) {
	b.Run("baseline: one ES256 signature", func(b *testing.B) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		digest := sha256.Sum256([]byte("header.claims"))
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	h, cookies := benchConsole(b)
	for _, tt := range []struct{ name, account, path, want string }{
		{"keys", "seller", "/console/keys", "key 5"},
		{"repositories", "seller", "/console/repos", "shop/listing000"},
		{"listing with 20 buyers", "seller", "/console/repo?name=shop/listing000", "user0019"},
		{"shared with me", "seller", "/console/access", "Shared with you"},
		{"explain", "seller", "/console/explain?account=user0001&repository=shop/listing000&action=pull", "allowed"},
		{"admin accounts page 1 of 41", "admin", "/console/admin/accounts", "user0047"},
		{"admin grants filtered, 10000 rows", "admin", "/console/admin/grants?repository=listing49", "shop/listing49"},
		{"admin grants page 100 of 200", "admin", "/console/admin/grants?page=100", "Rows 4951–5000"},
		{"admin reservations", "admin", "/console/admin/repos?owner=user01", "shop/listing100"},
		{"admin key search", "admin", "/console/admin/keys?id=aaaa", "Find a key"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", tt.path, nil)
			req.AddCookie(cookies[tt.account])
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), tt.want) {
				b.Fatalf("HTTP %d, want 200 with %q:\n%.2000s", w.Code, tt.want, w.Body.String())
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
			}
		})
	}
}
