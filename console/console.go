// Package console is the web console people use in a browser: their API keys, their
// repositories and who bought them, why a request is refused, and, for admins, accounts, grants,
// reservations, keys and the policy's status.
//
// Pages are rendered on the server from embedded templates and assets; everything works with
// JavaScript off (the one script only adds copy buttons), and the Content-Security-Policy allows
// no inline script or style. People sign in with an account and an API key; the session lives in
// the store, so signing out ends it on every replica, and every request checks the key again
// (revoked, expired or disabled ends the session at once). Every change, and every listing, is an
// admin operation: the admin policy decides the console exactly as it decides the admin API.
//
// The package owns sessions, CSRF protection and the pages. It knows no concrete store and no
// policy engine: only the small interfaces below.
package console

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// Store is what the console reads and writes itself: principals, to check a session's key on
// every request through the same cache the token endpoint uses, and sessions.
type Store interface {
	LoadPrincipal(ctx context.Context, keyID string) (keystore.Principal, error)
	CreateSession(ctx context.Context, s keystore.Session, maxPerAccount int) error
	GetSession(ctx context.Context, id string) (keystore.Session, error)
	DeleteSession(ctx context.Context, id string) error
}

// Operations are the admin operations the console performs for the signed-in caller, each
// authorized by the admin policy; admin.API implements them.
type Operations interface {
	Permits(ctx context.Context, c *admin.Caller, operation string, target policy.AdminTarget) (bool, error)
	ListKeys(ctx context.Context, c *admin.Caller, account string) ([]keystore.Key, error)
	CreateKey(ctx context.Context, c *admin.Caller, req admin.KeyRequest) (admin.KeyCreated, error)
	RevokeKey(ctx context.Context, c *admin.Caller, id string) (keystore.Key, error)
	ListGrants(ctx context.Context, c *admin.Caller, req admin.GrantRequest) ([]keystore.Grant, error)
	PageGrants(ctx context.Context, c *admin.Caller, q keystore.GrantQuery) (keystore.GrantPage, error)
	AddGrant(ctx context.Context, c *admin.Caller, req admin.GrantRequest) (keystore.Grant, error)
	RemoveGrant(ctx context.Context, c *admin.Caller, req admin.GrantRequest) error
	ListRepositories(ctx context.Context, c *admin.Caller, owner string) ([]keystore.Ownership, error)
	PageRepositories(ctx context.Context, c *admin.Caller, q keystore.OwnershipQuery) (keystore.OwnershipPage, error)
	ReserveRepository(ctx context.Context, c *admin.Caller, req admin.RepositoryRequest) (keystore.Ownership, error)
	ReleaseRepository(ctx context.Context, c *admin.Caller, name string) error
	PageAccounts(ctx context.Context, c *admin.Caller, q keystore.AccountQuery) (keystore.AccountPage, error)
	CreateAccount(ctx context.Context, c *admin.Caller, req admin.AccountRequest) (keystore.Account, error)
	GetAccount(ctx context.Context, c *admin.Caller, name string) (keystore.Account, error)
	UpdateAccount(ctx context.Context, c *admin.Caller, name string, req admin.AccountUpdate) (keystore.Account, error)
	Explain(ctx context.Context, c *admin.Caller, req admin.ExplainRequest) (policy.Explanation, error)
}

// Limiter holds back sign-in attempts: the brute-force limits of the token endpoint, so that a
// guess costs the same wherever it is made. Admit is asked before a key is checked and counts
// the attempt as in flight until settle is called with whether the key was refused. Either
// refuses with an error, which says how long to wait when it has a RetryAfterSeconds method.
type Limiter interface {
	Admit(ctx context.Context, client netip.Addr, account string) (settle func(ctx context.Context, failed bool) error, err error)
}

// refusal is a Limiter's refusal that says how long to wait.
type refusal interface {
	error
	RetryAfterSeconds() int
}

// Health is what the admin status page shows: the policy's state and whether the store answers.
type Health interface {
	Status() policy.Status
	Ping(ctx context.Context) error
}

// DefaultPrefix is where the console is served unless configured otherwise.
const DefaultPrefix = "/console"

// Options configure a Console.
type Options struct {
	// Prefix is the path the console is served under, without a trailing slash.
	Prefix string
	// Registry is the registry address shown in `docker login` commands.
	Registry string
	// SessionTTL bounds a session's life (default 12h).
	SessionTTL time.Duration
	// MaxSessionsPerAccount bounds the live sessions of one account (0: no bound): signing
	// in once more ends the one that would end first.
	MaxSessionsPerAccount int
	// SecureCookies marks cookies Secure even on a plain connection: for a console behind a
	// proxy that terminates TLS. Under TLS they always are.
	SecureCookies bool
	// ClientIP is the address a request comes from, trusted proxies considered, as the token
	// endpoint reads it (default: the peer's address).
	ClientIP func(r *http.Request) netip.Addr
	// Limiter counts failed sign-ins (default: none).
	Limiter Limiter
	// Health feeds the admin status page (default: the page says it cannot tell).
	Health Health
	Logger *slog.Logger
	Now    func() time.Time
	Random io.Reader
}

// Console serves the console's pages under its prefix.
type Console struct {
	store   Store
	ops     Operations
	opts    Options
	pages   *pages
	handler http.Handler
	cross   *http.CrossOriginProtection
}

// New returns the console. Mount it at opts.Prefix + "/".
func New(store Store, ops Operations, opts Options) (*Console, error) {
	opts.Prefix = strings.TrimSuffix(opts.Prefix, "/")
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.Limiter == nil {
		opts.Limiter = noLimit{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Random == nil {
		opts.Random = rand.Reader
	}
	if opts.ClientIP == nil {
		opts.ClientIP = peerIP
	}
	p, err := loadPages(opts.Prefix)
	if err != nil {
		return nil, err
	}
	c := &Console{store: store, ops: ops, opts: opts, pages: p, cross: http.NewCrossOriginProtection()}
	c.handler = c.routes()
	return c, nil
}

// Prefix is the path the console is served under.
func (c *Console) Prefix() string { return c.opts.Prefix }

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	c.handler.ServeHTTP(w, r)
}

// securityHeaders go on every response: no script or style but the console's own files, no
// framing, no referrer leaving the page (URLs carry repository and account names), no sniffing.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	p := c.opts.Prefix
	get := func(path string, h http.HandlerFunc) { mux.HandleFunc("GET "+p+path, h) }
	post := func(path string, h http.HandlerFunc) { mux.HandleFunc("POST "+p+path, h) }

	get("/static/{file}", c.static)
	get("/{$}", c.home)
	get("/signin", c.signinPage)
	post("/signin", c.signin)
	post("/signout", c.action(c.signout))

	get("/keys", c.page(c.keysPage))
	post("/keys", c.action(c.createKey))
	get("/keys/revoke", c.page(c.revokeKeyPage))
	post("/keys/revoke", c.action(c.revokeKey))

	get("/repos", c.page(c.reposPage))
	post("/repos/reserve", c.action(c.reserve))
	get("/repos/release", c.page(c.releasePage))
	post("/repos/release", c.action(c.release))
	get("/repo", c.page(c.repoPage))
	post("/repo/sell", c.action(c.sell))
	get("/repo/revoke", c.page(c.revokeSalePage))
	post("/repo/revoke", c.action(c.revokeSale))

	get("/access", c.page(c.accessPage))
	get("/explain", c.page(c.explainPage))

	get("/admin/accounts", c.page(c.accountsPage))
	post("/admin/accounts", c.action(c.createAccount))
	get("/admin/account", c.page(c.accountPage))
	post("/admin/account", c.action(c.updateAccount))
	get("/admin/grants", c.page(c.grantsPage))
	get("/admin/repos", c.page(c.reservationsPage))
	get("/admin/keys", c.page(c.keySearchPage))
	get("/admin/status", c.page(c.statusPage))

	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	return mux
}

// path is an absolute console path.
func (c *Console) path(rel string) string { return c.opts.Prefix + rel }

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	if s, _ := c.session(r); s != nil {
		http.Redirect(w, r, c.path("/keys"), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, c.path("/signin"), http.StatusSeeOther)
}

func (c *Console) clientIP(r *http.Request) netip.Addr { return c.opts.ClientIP(r) }

// peerIP is the address of the connection's other end.
func peerIP(r *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.IPv6Unspecified()
	}
	return peer.Addr().Unmap()
}

type noLimit struct{}

func (noLimit) Admit(context.Context, netip.Addr, string) (func(context.Context, bool) error, error) {
	return func(context.Context, bool) error { return nil }, nil
}
