package isolation

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	disttoken "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/server"
)

const service = "registry.example.com"

// start is the instant every sequence starts at, on the model's clock and the server's.
var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// config is one combination of store and policy the test runs on.
type config struct {
	backend string // bolt or redis
	bundle  *bundleModel
	// redisURL is the redis-server of a redis configuration; each server gets its own prefix.
	redisURL string
	// index is the configuration's place in the full list: with the seed, it seeds its
	// sequences, whichever configurations run.
	index uint64
}

func (c config) String() string { return c.backend + "/" + c.bundle.name }

// target is one real regoauth server, assembled by package server from a configuration, on a
// loopback listener of its own, over a fresh store.
type target struct {
	t      testing.TB
	url    string
	clock  *atomic.Int64
	roots  *x509.CertPool
	hc     *http.Client
	keys   map[string]string // label -> secret
	closer func()
}

var prefixes atomic.Int64

// bundleDirs caches each bundle's directory without its tests, per test binary; TestMain
// removes them.
var bundleDirs = map[string]string{}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range bundleDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

func bundleDir(t testing.TB, name string) string {
	if d, ok := bundleDirs[name]; ok {
		return d
	}
	src := filepath.Join("..", "..", "bundles", name)
	dst, err := os.MkdirTemp("", "regoauth-isolation-"+name)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.rego") {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		return os.WriteFile(filepath.Join(dst, rel), raw, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	bundleDirs[name] = dst
	return dst
}

// startTarget starts a server for cfg with an admin account "root" and its key.
func startTarget(t testing.TB, cfg config, dir string) *target {
	sc := server.Defaults()
	sc.Services = []string{service}
	sc.Listen.Addr = "127.0.0.1:0"
	sc.Signing.KeyFile, sc.Signing.CertFile = filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	if _, err := os.Stat(sc.Signing.KeyFile); err != nil {
		if _, err := secretfile.EnsureSigningKey(sc.Signing.KeyFile, sc.Signing.CertFile, jose.ES256, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	n := prefixes.Add(1)
	switch cfg.backend {
	case "bolt":
		sc.Store.URL = server.Secret{Value: fmt.Sprintf("bolt://%s/store-%d.db", dir, n)}
	case "redis":
		sc.Store.URL = server.Secret{Value: fmt.Sprintf("%s?prefix=iso%d", cfg.redisURL, n)}
	}
	if cfg.bundle != library {
		sc.Policy.Dir = bundleDir(t, cfg.bundle.name)
	}
	// Failed authentication is throttled per address and account; here every call comes from
	// one address and dead keys are asked on purpose, after every step.
	off := false
	sc.Limits.AuthFailures.Enabled = &off
	sc.Log.Level = "error"
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	clock := &atomic.Int64{}
	clock.Store(start.UnixNano())
	srv, err := server.New(context.Background(), sc, server.Options{Now: func() time.Time { return time.Unix(0, clock.Load()).UTC() }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := srv.Handler()
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go hs.Serve(ln)

	ctx := context.Background()
	if err := srv.Store().CreateAccount(ctx, keystore.Account{Name: "root", Roles: []string{"admin"}, Created: start}); err != nil {
		t.Fatal(err)
	}
	plain, id, hash, _ := keystore.NewAPIKey(rand.Reader)
	if err := srv.Store().CreateKey(ctx, keystore.Key{ID: id, Account: "root", Hash: hash, Created: start}); err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(sc.Signing.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(cert)
	return &target{
		t: t, url: "http://" + ln.Addr().String(), clock: clock, roots: roots,
		hc:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 30 * time.Second},
		keys: map[string]string{"root": plain},
		closer: func() {
			hs.Close()
			srv.Close()
		},
	}
}

func (tg *target) close() { tg.closer() }

// do performs op on the server and reports whether it was accepted. An answer that is neither
// a success nor a refusal (a 5xx, a broken connection) is an error.
func (tg *target) do(o op) (bool, error) {
	if o.Kind == "advance" {
		tg.clock.Add(int64(o.Advance))
		return true, nil
	}
	c, err := admin.NewClient(tg.url, tg.keys[o.Actor], tg.hc)
	if err != nil {
		return false, err
	}
	ctx := context.Background()
	switch o.Kind {
	case "account":
		_, err = c.CreateAccount(ctx, admin.AccountRequest{Name: o.Account, Groups: o.Groups, Roles: o.Roles})
	case "update":
		var u admin.AccountUpdate
		if o.SetGroups {
			g := nonNil(o.Groups)
			u.Groups = &g
		}
		if o.SetRoles {
			r := nonNil(o.Roles)
			u.Roles = &r
		}
		u.Disabled = o.Disable
		_, err = c.UpdateAccount(ctx, o.Account, u)
	case "key":
		var k admin.KeyCreated
		k, err = c.CreateKey(ctx, admin.KeyRequest{Account: o.Account, ExpiresIn: o.Expires, Restrictions: o.Restr.keystore()})
		if err == nil {
			tg.keys[o.Label] = k.Secret
		}
	case "revoke":
		id := keyID(tg.keys[o.Key])
		_, err = c.RevokeKey(ctx, id)
	case "reserve":
		_, err = c.ReserveRepository(ctx, admin.RepositoryRequest{Repository: o.Repo, Owner: o.Owner})
	case "release":
		if o.Raw {
			return tg.rawRelease(o)
		}
		err = c.ReleaseRepository(ctx, o.Repo)
	case "grant":
		_, err = c.AddGrant(ctx, admin.GrantRequest{Account: o.Account, Group: o.Group, Repository: o.Repo, Actions: o.Actions, ExpiresIn: o.Expires})
	case "ungrant":
		err = c.RemoveGrant(ctx, admin.GrantRequest{Account: o.Account, Group: o.Group, Repository: o.Repo, Actions: o.Actions})
	default:
		return false, fmt.Errorf("unknown op %q", o.Kind)
	}
	var apiErr *admin.APIError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500:
		return false, nil
	case errors.Is(err, keystore.ErrInvalid): // refused by the client before it was sent
		return false, nil
	}
	return false, fmt.Errorf("%s: %w", o, err)
}

// rawRelease sends DELETE /admin/v1/repositories/NAME with the name as it is, following
// redirects as clients do.
func (tg *target) rawRelease(o op) (bool, error) {
	req, err := http.NewRequest("DELETE", tg.url+admin.Prefix+"/repositories/"+o.Repo, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+tg.keys[o.Actor])
	resp, err := tg.hc.Do(req)
	if err != nil {
		return false, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return true, nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return false, nil
	}
	return false, fmt.Errorf("%s: HTTP %d", o, resp.StatusCode)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// keyID is the public id inside an API key (rak_<id>_<secret>).
func keyID(secret string) string {
	parts := strings.Split(secret, "_")
	if len(parts) < 3 {
		return "unknown"
	}
	return parts[1]
}

// access asks GET /token, as account with the key labelled label (anonymously when label is
// empty), for every action on every repository of the universe at once. It returns whether the
// credentials were accepted and, per repository, the actions of the token, which
// distribution's own token code verifies.
func (tg *target) access(label, account string) (bool, map[string][]string, error) {
	q := url.Values{"service": {service}}
	for _, repo := range universe {
		q.Add("scope", "repository:"+repo+":pull,push,delete")
	}
	req, _ := http.NewRequest("GET", tg.url+"/token?"+q.Encode(), nil)
	if label != "" {
		req.SetBasicAuth(account, tg.keys[label])
	}
	resp, err := tg.hc.Do(req)
	if err != nil {
		return false, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return false, nil, nil
	default:
		return false, nil, fmt.Errorf("token request of %s with %s: HTTP %d %s", account, label, resp.StatusCode, raw)
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return false, nil, err
	}
	tk, err := disttoken.NewToken(body.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return false, nil, err
	}
	claims, err := tk.Verify(disttoken.VerifyOptions{TrustedIssuers: []string{"regoauth"}, AcceptedAudiences: []string{service}, Roots: tg.roots})
	if err != nil {
		return false, nil, fmt.Errorf("distribution rejected the token: %w", err)
	}
	out := map[string][]string{}
	for _, a := range claims.Access {
		acts := slices.Clone(a.Actions)
		slices.Sort(acts)
		if len(acts) > 0 {
			out[a.Name] = acts
		}
	}
	return true, out, nil
}
