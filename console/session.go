package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// Sessions and CSRF.
//
// Signing in with an account and an API key creates a session record in the store and gives the
// browser its token: 32 random bytes in an HttpOnly, SameSite=Strict cookie (Secure, and named
// __Host-…, under TLS). The store keeps only the token's SHA-256, so reading the store opens no
// session. Each request reads the record by that hash and checks the key it names again
// (keystore.AuthenticateKey, through the store's principal cache — the same lookup as a token
// request): a revoked or expired key, or a disabled account, ends the session at that request.
// Signing out deletes the record, so a copy of the cookie is worth nothing afterwards.
//
// Every form that changes something carries a CSRF token: the HMAC-SHA256 of a purpose string
// keyed with the session token itself. Only a page served to that browser can know it, it is
// the same on every replica, and it dies with the session. The sign-in form, before there is a
// session, uses a short-lived random cookie the same way. Unsafe requests are also checked by
// Fetch metadata (http.CrossOriginProtection), so a cross-site form post fails twice over.

const (
	tokenBytes = 32
	// signinTTL bounds how long a sign-in form may be filled in.
	signinTTL = time.Hour
	// maxFormBytes bounds a form post; console forms are a few hundred bytes.
	maxFormBytes = 16 << 10
	csrfField    = "csrf"
)

// errNoSession is a request without a valid session.
var errNoSession = errors.New("not signed in")

// session is a signed-in request.
type session struct {
	record keystore.Session
	caller *admin.Caller
	csrf   string
	// admin is whether the admin policy lets the caller list accounts: the admin pages' menu.
	admin bool
}

func (s *session) account() string { return s.caller.Principal.Account.Name }

// restricted is whether the session's key carries restrictions, which the default admin policy
// allows to read but never to change anything.
func (s *session) restricted() bool { return !s.caller.Principal.Key.Restrictions.IsZero() }

// secure is whether cookies must be Secure: under TLS, or when configured (TLS ends at a proxy).
func (c *Console) secure(r *http.Request) bool { return r.TLS != nil || c.opts.SecureCookies }

// cookie names and paths: __Host- cookies (Secure, Path=/, no Domain) cannot be set or shadowed
// by a sibling host; on plain HTTP (regoauth dev) the names are plain and scoped to the console.
func (c *Console) cookieName(r *http.Request, base string) string {
	if c.secure(r) {
		return "__Host-" + base
	}
	return base
}

func (c *Console) cookiePath(r *http.Request) string {
	if c.secure(r) {
		return "/"
	}
	return c.opts.Prefix + "/"
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, base, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: c.cookieName(r, base), Value: value, Path: c.cookiePath(r),
		MaxAge: int(maxAge / time.Second), HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteStrictMode,
	})
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request, base string) {
	http.SetCookie(w, &http.Cookie{
		Name: c.cookieName(r, base), Value: "", Path: c.cookiePath(r),
		MaxAge: -1, HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteStrictMode,
	})
}

// token reads a cookie holding tokenBytes random bytes.
func (c *Console) token(r *http.Request, base string) ([]byte, bool) {
	ck, err := r.Cookie(c.cookieName(r, base))
	if err != nil {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(raw) != tokenBytes {
		return nil, false
	}
	return raw, true
}

func (c *Console) newToken() ([]byte, error) {
	b := make([]byte, tokenBytes)
	if _, err := io.ReadFull(c.opts.Random, b); err != nil {
		return nil, fmt.Errorf("reading random: %w", err)
	}
	return b, nil
}

func sessionID(token []byte) string {
	sum := sha256.Sum256(token)
	return hex.EncodeToString(sum[:])
}

// csrfToken is the token forms carry for purpose, keyed with a cookie's secret.
func csrfToken(secret []byte, purpose string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("regoauth console csrf\x00" + purpose))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func csrfValid(secret []byte, purpose, got string) bool {
	return got != "" && hmac.Equal([]byte(csrfToken(secret, purpose)), []byte(got))
}

// session loads the request's session and checks its key again. It returns errNoSession when
// there is none (or it has ended), or the store's error when the store cannot tell.
func (c *Console) session(r *http.Request) (*session, error) {
	tok, ok := c.token(r, "regoauth_session")
	if !ok {
		return nil, errNoSession
	}
	ctx := r.Context()
	rec, err := c.store.GetSession(ctx, sessionID(tok))
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	now := c.opts.Now()
	if !now.Before(rec.Expires) {
		return nil, errNoSession
	}
	p, err := keystore.AuthenticateKey(ctx, c.store, rec.KeyID, rec.Account, now)
	if errors.Is(err, keystore.ErrBadCredentials) {
		// The key was revoked or expired, or the account disabled: the session ends with it.
		c.store.DeleteSession(ctx, rec.ID)
		c.opts.Logger.Info("console session ended with its key", "account", rec.Account, "key_id", rec.KeyID, "reason", err)
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	addr := c.clientIP(r)
	if !keyAllowsAddr(p.Key, addr) {
		return nil, errNoSession
	}
	s := &session{record: rec, caller: &admin.Caller{Principal: p, ClientIP: addr.String()}, csrf: csrfToken(tok, "session")}
	if s.admin, err = c.ops.Permits(ctx, s.caller, "accounts.list", policy.AdminTarget{}); err != nil {
		return nil, err
	}
	return s, nil
}

// keyAllowsAddr is whether a key limited to networks may be used from addr: such a key signs in
// and stays signed in only from inside them.
func keyAllowsAddr(k keystore.Key, addr netip.Addr) bool {
	if len(k.Restrictions.CIDRs) == 0 {
		return true
	}
	for _, c := range k.Restrictions.CIDRs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Contains(addr) {
			return true
		}
	}
	return false
}

// page wraps a GET handler that needs a session.
func (c *Console) page(fn func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s, ok := c.requireSession(w, r); ok {
			fn(w, r, s)
		}
	}
}

// requireSession returns the request's session. Without one it sends the browser to sign in,
// on any other failure it shows the error, and reports false.
func (c *Console) requireSession(w http.ResponseWriter, r *http.Request) (*session, bool) {
	s, err := c.session(r)
	if errors.Is(err, errNoSession) {
		c.toSignin(w, r)
		return nil, false
	}
	if err != nil {
		c.failErr(w, r, nil, err)
		return nil, false
	}
	return s, true
}

// action wraps a POST handler that changes something: it needs a session, a same-origin
// request and the session's CSRF token, checked before anything else happens.
func (c *Console) action(fn func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !c.formOK(w, r) {
			return
		}
		s, ok := c.requireSession(w, r)
		if !ok {
			return
		}
		if !csrfValid(mustToken(c, r), "session", r.PostForm.Get(csrfField)) {
			c.opts.Logger.Info("console form refused: bad CSRF token", "path", r.URL.Path, "account", s.account())
			c.fail(w, r, s, http.StatusForbidden, "This form did not come from this console, or it has expired. Go back, reload the page and try again.")
			return
		}
		fn(w, r, s)
	}
}

// mustToken is the session token of a request session() accepted.
func mustToken(c *Console, r *http.Request) []byte {
	tok, _ := c.token(r, "regoauth_session")
	return tok
}

// formOK checks what every form post must satisfy before its fields are read: a same-origin
// request and a small, well-formed body.
func (c *Console) formOK(w http.ResponseWriter, r *http.Request) bool {
	if err := c.cross.Check(r); err != nil {
		c.opts.Logger.Info("console form refused: cross-origin", "path", r.URL.Path, "error", err)
		c.fail(w, r, nil, http.StatusForbidden, "This form was sent from another site, so it was refused.")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, nil, http.StatusBadRequest, "The form could not be read. Reload the page and try again.")
		return false
	}
	return true
}

// toSignin sends a request without a session to the sign-in page.
func (c *Console) toSignin(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		http.Redirect(w, r, c.path("/signin?ended=1"), http.StatusSeeOther)
		return
	}
	c.fail(w, r, nil, http.StatusUnauthorized, "You are not signed in (or your session has ended), so nothing was changed. Sign in and try again.")
}

type signinForm struct {
	Account string
	Errors  map[string]string
	CSRF    string
}

// signinPage shows the form, with a fresh sign-in cookie for its CSRF token.
func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	if s, err := c.session(r); err == nil && s != nil {
		http.Redirect(w, r, c.path("/keys"), http.StatusSeeOther)
		return
	}
	v := c.newView(r, nil, "Sign in")
	switch {
	case r.URL.Query().Get("signedout") == "1":
		v.Notice = "You are signed out."
	case r.URL.Query().Get("ended") == "1":
		v.Notice = "Please sign in. (If you were signed in, your session has ended: it expired, you signed out, or its key was revoked.)"
	}
	c.renderSignin(w, r, v, signinForm{}, http.StatusOK)
}

func (c *Console) renderSignin(w http.ResponseWriter, r *http.Request, v *view, f signinForm, status int) {
	tok, err := c.newToken()
	if err != nil {
		c.failErr(w, r, nil, err)
		return
	}
	c.setCookie(w, r, "regoauth_signin", base64.RawURLEncoding.EncodeToString(tok), signinTTL)
	f.CSRF = csrfToken(tok, "signin")
	v.Data = f
	c.render(w, r, status, "signin", v)
}

// signin checks an account and API key and starts a session. Failures count toward the
// brute-force limits and all read the same, whatever was wrong.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	if !c.formOK(w, r) {
		return
	}
	v := c.newView(r, nil, "Sign in")
	pre, ok := c.token(r, "regoauth_signin")
	if !ok || !csrfValid(pre, "signin", r.PostForm.Get(csrfField)) {
		v.Error = "The sign-in form had expired. Please sign in again."
		c.renderSignin(w, r, v, signinForm{Account: r.PostForm.Get("account")}, http.StatusForbidden)
		return
	}
	account, key := strings.TrimSpace(r.PostForm.Get("account")), strings.TrimSpace(r.PostForm.Get("key"))
	f := signinForm{Account: account, Errors: map[string]string{}}
	if account == "" {
		f.Errors["account"] = "Enter your account name."
	} else if keystore.ValidateName("account", account) != nil {
		f.Errors["account"] = "An account name is 1 to 64 lowercase letters, digits, dots, dashes or underscores."
	}
	if key == "" {
		f.Errors["key"] = "Enter one of your API keys (it starts with rak_)."
	}
	if len(f.Errors) > 0 {
		c.renderSignin(w, r, v, f, http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	addr := c.clientIP(r)
	settle, err := c.opts.Limiter.Admit(ctx, addr, account)
	if err != nil {
		c.limited(w, r, v, f, err)
		return
	}
	// Gives the held units back should the check panic; a no-op once settled below.
	defer settle(ctx, false)
	now := c.opts.Now()
	p, err := keystore.Authenticate(ctx, c.store, account, key, now)
	if err == nil && !keyAllowsAddr(p.Key, addr) {
		err = fmt.Errorf("%w: key %s is limited to networks that %s is not in", keystore.ErrBadCredentials, p.Key.ID, addr)
	}
	failed := errors.Is(err, keystore.ErrBadCredentials)
	if failed {
		c.opts.Logger.Info("console sign-in refused", "account", account, "client_ip", addr.String(), "reason", err)
	}
	if terr := settle(ctx, failed); terr != nil {
		c.limited(w, r, v, f, terr)
		return
	}
	if failed {
		f.Errors["key"] = "This account name and API key do not match, or the key is revoked, expired or not usable from here."
		c.renderSignin(w, r, v, f, http.StatusUnauthorized)
		return
	}
	if err != nil {
		c.failErr(w, r, nil, err)
		return
	}
	tok, err := c.newToken()
	if err != nil {
		c.failErr(w, r, nil, err)
		return
	}
	rec := keystore.Session{ID: sessionID(tok), KeyID: p.Key.ID, Account: p.Account.Name, Created: now.UTC(), Expires: now.Add(c.opts.SessionTTL).UTC()}
	if err := c.store.CreateSession(ctx, rec, c.opts.MaxSessionsPerAccount); err != nil {
		c.failErr(w, r, nil, err)
		return
	}
	c.opts.Logger.Info("console sign-in", "account", p.Account.Name, "key_id", p.Key.ID, "client_ip", addr.String())
	c.clearCookie(w, r, "regoauth_signin")
	c.setCookie(w, r, "regoauth_session", base64.RawURLEncoding.EncodeToString(tok), c.opts.SessionTTL)
	http.Redirect(w, r, c.path("/keys"), http.StatusSeeOther)
}

// limited answers a sign-in the limiter refused: 429, and when to try again.
func (c *Console) limited(w http.ResponseWriter, r *http.Request, v *view, f signinForm, err error) {
	wait := "a while"
	var rf refusal
	if errors.As(err, &rf) {
		secs := max(1, rf.RetryAfterSeconds())
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		wait = humanDuration(time.Duration(secs) * time.Second)
	}
	c.opts.Logger.Info("console sign-in limited", "account", f.Account, "reason", err)
	v.Error = "Too many failed sign-ins. Try again in " + wait + "."
	c.renderSignin(w, r, v, f, http.StatusTooManyRequests)
}

// signout deletes the session record, which ends the session wherever its cookie is.
func (c *Console) signout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.store.DeleteSession(r.Context(), s.record.ID); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.opts.Logger.Info("console sign-out", "account", s.account(), "key_id", s.record.KeyID)
	c.clearCookie(w, r, "regoauth_session")
	http.Redirect(w, r, c.path("/signin?signedout=1"), http.StatusSeeOther)
}

func humanDuration(d time.Duration) string {
	switch s := int(d.Round(time.Second) / time.Second); {
	case s <= 1:
		return "a second"
	case s < 120:
		return fmt.Sprintf("%d seconds", s)
	default:
		return fmt.Sprintf("%d minutes", (s+59)/60)
	}
}
