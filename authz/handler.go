// Package authz serves the registry token endpoint: it parses a token request (scopes,
// service, grant, credentials), authenticates the API key, asks the policy which requested
// actions are allowed, intersects, signs and responds. It defines the small interfaces it needs
// from a key store, a policy engine and a signer; it knows neither Redis nor OPA.
package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/regoauth/regoauth/authz/input"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
	"github.com/regoauth/regoauth/tokens"
)

// Directory loads what authentication and the policy need about one API key.
type Directory interface {
	LoadPrincipal(ctx context.Context, keyID string) (keystore.Principal, error)
}

// Decider makes the policy decision.
type Decider interface {
	Decide(ctx context.Context, in *policy.Input) (policy.Decision, error)
}

// Issuer signs registry tokens.
type Issuer interface {
	Sign(subject, audience string, access []tokens.Access) (tokens.Token, error)
}

// UsageRecorder notes that a key was used; it must not block.
type UsageRecorder interface {
	Used(keyID string, at time.Time)
}

// RefreshTokens issues and checks refresh tokens.
type RefreshTokens interface {
	Issue(account, keyID, service string) (string, error)
	Verify(token string) (tokens.RefreshClaims, error)
}

// Throttle limits failed authentication (throttle.Guard): Admit is asked before credentials are
// checked and counts the attempt as in flight until settle is called with whether they were
// refused. Admit and settle refuse with an error that has a RetryAfterSeconds method, answered
// 429 with Retry-After.
type Throttle interface {
	Admit(ctx context.Context, client netip.Addr, account string) (settle func(ctx context.Context, failed bool) error, err error)
}

// MaxFormBytes bounds a POST body; real token requests are a few hundred bytes.
const MaxFormBytes = 16 << 10

// maxClientField bounds what a client names itself (client_id, User-Agent) wherever it is kept:
// the audit log, the policy input, and so the decision cache's key.
const maxClientField = 256

// Options configure a Handler.
type Options struct {
	// Services are the registry service names tokens may be issued for (each is the audience of
	// its tokens). A request without a service gets the first.
	Services       []string
	MaxScopes      int
	MaxScopeLength int
	// TrustedProxies are the peers whose X-Forwarded-For is believed for the client address.
	TrustedProxies []netip.Prefix
	// DecisionWorkers is how many requests are decided and signed at once, the CPU-bound part of
	// the path; the others wait their turn in the order they came. 0: one per CPU the process
	// may use (GOMAXPROCS). Without it, every request in flight shares the CPUs and a few of
	// them, preempted again and again, take many times the median.
	DecisionWorkers int
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
	Now             func() time.Time
}

// Deps are the collaborators of a Handler, all passed the same way. Directory, Decider and
// Issuer are required. Usage, Refresh and Throttle are optional: without Usage key use is not
// recorded; without Refresh no refresh token is issued (offline_token=true,
// access_type=offline) and grant_type=refresh_token is refused; without Throttle failed
// authentication is not limited. A nil pointer in any of them counts as absent, so a caller
// holding a nil *tokens.RefreshCodec turns refresh tokens off, as it means to.
type Deps struct {
	Directory Directory
	Decider   Decider
	Issuer    Issuer
	Usage     UsageRecorder
	Refresh   RefreshTokens
	Throttle  Throttle
}

// Handler serves GET and POST /token.
type Handler struct {
	dir      Directory
	decider  Decider
	issuer   Issuer
	usage    UsageRecorder
	refresh  RefreshTokens
	throttle Throttle
	opts     Options
	metrics  *metrics
	// workers admits DecisionWorkers requests at a time to the decision, first come first
	// served.
	workers *semaphore.Weighted
}

// New returns a token endpoint handler.
func New(deps Deps, opts Options) (*Handler, error) {
	if absent(deps.Directory) || absent(deps.Decider) || absent(deps.Issuer) {
		return nil, errors.New("a directory, a decider and an issuer are required")
	}
	if absent(deps.Usage) {
		deps.Usage = nil
	}
	if absent(deps.Refresh) {
		deps.Refresh = nil
	}
	if absent(deps.Throttle) {
		deps.Throttle = nil
	}
	if len(opts.Services) == 0 {
		return nil, errors.New("at least one service is required")
	}
	if opts.MaxScopes <= 0 {
		opts.MaxScopes = input.DefaultMaxScopes
	}
	if opts.MaxScopeLength <= 0 {
		opts.MaxScopeLength = input.DefaultMaxScopeLength
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DecisionWorkers <= 0 {
		opts.DecisionWorkers = runtime.GOMAXPROCS(0)
	}
	return &Handler{dir: deps.Directory, decider: deps.Decider, issuer: deps.Issuer, usage: deps.Usage, refresh: deps.Refresh,
		throttle: deps.Throttle, opts: opts, metrics: newMetrics(opts.Registerer), workers: semaphore.NewWeighted(int64(opts.DecisionWorkers))}, nil
}

// absent reports whether a collaborator is missing: nil, or an interface holding a nil pointer.
func absent(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// request is a token request after parsing, whatever its method.
type request struct {
	method   string
	service  string
	scopes   []policy.Scope
	clientID string
	// anonymous is true when no credentials were sent at all.
	anonymous          bool
	username, password string
	// refreshToken is set when the request authenticates with a refresh token instead of a
	// password (grant_type=refresh_token, or a refresh token as the Basic password).
	refreshToken string
	// offline asks for a refresh token (offline_token=true, access_type=offline).
	offline bool
	// oauth is true for POST, whose response also carries "scope".
	oauth bool
	// client is the client's address (see clientIP).
	client netip.Addr
}

// grant names how the request authenticates, for the audit log.
func (r request) grant() string {
	switch {
	case r.anonymous:
		return "anonymous"
	case r.refreshToken != "":
		return "refresh_token"
	}
	return "password"
}

// response is the token endpoint's JSON body.
type response struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// Scope is what was granted, on POST only, and there always, empty when nothing was: an
	// OAuth 2 answer without it says the scope asked for was granted as asked (RFC 6749 §5.1).
	Scope *string `json:"scope,omitempty"`
}

// ServeHTTP runs the request path: parse, authenticate, decide, intersect, sign, respond.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	client := h.clientIP(r)
	ev := event{clientIP: client.String()}
	defer h.release(&ev)
	var body []byte
	req, err := h.parse(w, r)
	if err == nil {
		ev.service, ev.clientID, ev.requested, ev.grant = req.service, req.clientID, req.scopes, req.grant()
		req.client = client
		var resp response
		if resp, err = h.issue(r.Context(), r, req, &ev); err == nil {
			buf := bodies.Get().(*[]byte)
			defer bodies.Put(buf)
			body = resp.appendJSON((*buf)[:0])
			*buf = body
		}
	}
	// The worker is given back before a response meets the network: a client that does not
	// read what it asked for holds its own connection, not a worker. A token's response is
	// encoded and logged first, an error's written first (it is short).
	if err != nil {
		h.release(&ev)
		ev.status, ev.err = WriteError(w, err), err
	} else {
		ev.status = http.StatusOK
	}
	ev.method, ev.duration = r.Method, time.Since(start)
	h.metrics.observe(ev)
	h.log(ev)
	if err != nil {
		return
	}
	h.release(&ev)
	body = append(body, '\n') // within the buffer's capacity (appendJSON's sizes) or a new one
	// A token is written with its length, in one piece: without one a body over net/http's
	// buffer (a token with its certificate chain is) goes out chunked. The header values are
	// shared, canonical and never changed (net/http only reads them).
	hdr := w.Header()
	hdr["Content-Type"], hdr["Cache-Control"], hdr["Pragma"] = contentTypeJSON, noStore, noCache
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	if ev.decisionID != "" {
		hdr["Regoauth-Decision-Id"] = []string{ev.decisionID}
	}
	w.Write(body)
}

// bodies are the buffers token responses are written into: a response is a few KiB, and
// net/http is done with it once Write returns.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var (
	contentTypeJSON = []string{"application/json"}
	noStore         = []string{"no-store"}
	noCache         = []string{"no-cache"}
)

// appendJSON appends the response's JSON, as encoding/json writes the struct (the same names,
// order and omissions), without reflection: it is written on every token request. Strings are
// copied or quoted by appendString; invalid UTF-8 becomes U+FFFD, as encoding/json makes it.
func (resp *response) appendJSON(b []byte) []byte {
	b = append(b, `{"token":`...)
	b = appendString(b, resp.Token)
	b = append(b, `,"access_token":`...)
	b = appendString(b, resp.AccessToken)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, int64(resp.ExpiresIn), 10)
	b = append(b, `,"issued_at":`...)
	b = appendString(b, resp.IssuedAt)
	if resp.RefreshToken != "" {
		b = append(b, `,"refresh_token":`...)
		b = appendString(b, resp.RefreshToken)
	}
	if resp.Scope != nil {
		b = append(b, `,"scope":`...)
		b = appendString(b, *resp.Scope)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string. A token is base64url and dots: a string of printable
// ASCII that encoding/json would not escape is copied as it is, anything else quoted by jsontext.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ = jsontext.AppendQuote(b, s)
			return b
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// release gives back the decision worker the request holds, if it holds one.
func (h *Handler) release(ev *event) {
	if ev.working {
		ev.working = false
		h.workers.Release(1)
	}
}

func (h *Handler) parse(w http.ResponseWriter, r *http.Request) (request, error) {
	switch r.Method {
	case http.MethodGet:
		return h.parseGET(r)
	case http.MethodPost:
		return h.parsePOST(w, r)
	default:
		return request{}, ErrMethod
	}
}

func (h *Handler) parseGET(r *http.Request) (request, error) {
	q := r.URL.Query()
	req := request{method: "GET", clientID: truncate(q.Get("client_id"), maxClientField), offline: q.Get("offline_token") == "true"}
	var err error
	if req.service, err = h.service(q.Get("service")); err != nil {
		return req, err
	}
	if req.scopes, err = input.ParseScopes(q["scope"], h.opts.MaxScopes, h.opts.MaxScopeLength); err != nil {
		return req, err
	}
	if _, ok := r.Header["Authorization"]; !ok {
		req.anonymous = true
		return req, nil
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return req, fmt.Errorf("%w: Authorization is not Basic", ErrBadCredentials)
	}
	if tokens.IsRefreshToken(pass) {
		// containerd falls back to GET with ":<refresh token>" as Basic auth.
		req.username, req.refreshToken = user, pass
		return req, nil
	}
	req.username, req.password = user, pass
	return req, nil
}

func (h *Handler) parsePOST(w http.ResponseWriter, r *http.Request) (request, error) {
	req := request{method: "POST", oauth: true}
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return req, ErrTooLarge
		}
		return req, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	f := r.PostForm
	req.clientID = truncate(f.Get("client_id"), maxClientField)
	req.offline = f.Get("access_type") == "offline"
	var err error
	if req.service, err = h.service(f.Get("service")); err != nil {
		return req, err
	}
	if req.scopes, err = input.ParseScopes(f["scope"], h.opts.MaxScopes, h.opts.MaxScopeLength); err != nil {
		return req, err
	}
	switch gt := f.Get("grant_type"); {
	case gt == "password":
		req.username, req.password = f.Get("username"), f.Get("password")
	case gt == "refresh_token" && h.refresh != nil:
		if req.refreshToken = f.Get("refresh_token"); req.refreshToken == "" {
			return req, fmt.Errorf("%w: refresh_token is required", ErrBadRequest)
		}
	case gt == "":
		return req, fmt.Errorf("%w: grant_type is required", ErrBadRequest)
	default:
		return req, fmt.Errorf("%w %q: use password%s", ErrUnsupportedGrant, truncate(gt, 32), h.otherGrants())
	}
	return req, nil
}

func (h *Handler) otherGrants() string {
	if h.refresh != nil {
		return " or refresh_token"
	}
	return ""
}

func (h *Handler) service(s string) (string, error) {
	if s == "" {
		return h.opts.Services[0], nil
	}
	if slices.Contains(h.opts.Services, s) {
		return s, nil
	}
	return "", fmt.Errorf("%w: unknown service %q", ErrBadRequest, truncate(s, 64))
}

func (h *Handler) issue(ctx context.Context, r *http.Request, req request, ev *event) (response, error) {
	var (
		principal *keystore.Principal // nil when anonymous
		refresh   string
	)
	if !req.anonymous {
		t := time.Now()
		p, err := h.authenticateThrottled(ctx, req)
		h.metrics.stage("authn", t)
		if err != nil {
			return response{}, err
		}
		principal = &p
		ev.account, ev.keyID = p.Account.Name, p.Key.ID
		if h.usage != nil {
			h.usage.Used(p.Key.ID, h.opts.Now())
		}
		if req.offline && h.refresh != nil {
			// A refresh token stays valid until it expires: docker keeps the first one it gets,
			// so a client using one gets the same one back rather than a rotated one. A key
			// limited to networks is not turned into a refresh token outside them.
			if refresh = req.refreshToken; refresh == "" && usableFrom(p.Key, req.client) {
				if refresh, err = h.refresh.Issue(p.Account.Name, p.Key.ID, req.service); err != nil {
					return response{}, err
				}
			}
		}
	}

	// Authentication may wait on the store; what follows only computes, a worker at a time,
	// until the response is encoded and logged.
	t := time.Now()
	if err := h.workers.Acquire(ctx, 1); err != nil {
		return response{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	ev.working = true
	h.metrics.stage("queue", t)

	client := policy.Client{IP: ev.clientIP, ID: req.clientID, UserAgent: truncate(r.UserAgent(), maxClientField)}
	in := input.Token(req.service, client, principal, req.scopes)
	t = time.Now()
	d, err := h.decider.Decide(ctx, in)
	h.metrics.stage("decide", t)
	ev.decisionID = d.ID
	if err != nil {
		return response{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	granted := Intersect(req.scopes, d)
	ev.granted = granted

	t = time.Now()
	subject := in.Principal.Account
	tok, err := h.issuer.Sign(subject, req.service, toAccess(granted))
	h.metrics.stage("sign", t)
	if err != nil {
		return response{}, err
	}
	resp := response{
		Token:        tok.Raw,
		AccessToken:  tok.Raw,
		ExpiresIn:    int(tok.ExpiresIn / time.Second),
		IssuedAt:     tok.IssuedAt.UTC().Format(time.RFC3339),
		RefreshToken: refresh,
	}
	if req.oauth {
		scope := scopeString(granted)
		resp.Scope = &scope
	}
	return resp, nil
}

// authenticateThrottled is authenticate within the failure budgets of the client's address and
// the account it names: a spent budget is refused before the credentials are looked at, the
// check counts against the budgets while it runs, and a failure is counted against every budget.
func (h *Handler) authenticateThrottled(ctx context.Context, req request) (keystore.Principal, error) {
	if h.throttle == nil {
		return h.authenticate(ctx, req)
	}
	settle, err := h.throttle.Admit(ctx, req.client, req.username)
	if err != nil {
		return keystore.Principal{}, err
	}
	// Gives the held units back should the check panic; a no-op once settled below.
	defer settle(ctx, false)
	p, err := h.authenticate(ctx, req)
	if terr := settle(ctx, errors.Is(err, ErrBadCredentials)); terr != nil {
		return p, fmt.Errorf("%w (%w)", terr, err)
	}
	return p, err
}

// authenticate checks an API key or a refresh token. Every failure is ErrBadCredentials to the
// client; the wrapped reason is only logged.
func (h *Handler) authenticate(ctx context.Context, req request) (keystore.Principal, error) {
	var (
		p   keystore.Principal
		err error
	)
	switch {
	case req.refreshToken != "":
		p, err = h.authenticateRefresh(ctx, req)
	case req.username == "" || req.password == "":
		return keystore.Principal{}, fmt.Errorf("%w: empty username or password", ErrBadCredentials)
	default:
		p, err = keystore.Authenticate(ctx, h.dir, req.username, req.password, h.opts.Now())
	}
	if err != nil && !errors.Is(err, ErrBadCredentials) {
		return p, fmt.Errorf("%w: %w", ErrUnavailable, err) // the store failed: fail closed
	}
	return p, err
}

// authenticateRefresh accepts a refresh token for the service it was issued for, from any
// client, as long as the key it came from still authenticates.
func (h *Handler) authenticateRefresh(ctx context.Context, req request) (keystore.Principal, error) {
	if h.refresh == nil {
		return keystore.Principal{}, fmt.Errorf("%w: refresh tokens are not enabled", ErrBadCredentials)
	}
	claims, err := h.refresh.Verify(req.refreshToken)
	switch {
	case err != nil:
		return keystore.Principal{}, fmt.Errorf("%w: %w", ErrBadCredentials, err)
	case claims.Service != req.service:
		return keystore.Principal{}, fmt.Errorf("%w: refresh token of key %s is for service %q", ErrBadCredentials, claims.KeyID, claims.Service)
	case req.username != "" && req.username != claims.Account:
		return keystore.Principal{}, fmt.Errorf("%w: refresh token of key %s belongs to another account", ErrBadCredentials, claims.KeyID)
	}
	return keystore.AuthenticateKey(ctx, h.dir, claims.KeyID, claims.Account, h.opts.Now())
}

func toAccess(scopes []policy.Scope) []tokens.Access {
	out := make([]tokens.Access, len(scopes))
	for i, s := range scopes {
		out[i] = tokens.Access{Type: s.Type, Class: s.Class, Name: s.Name, Actions: s.Actions}
	}
	return out
}

// scopeString renders granted access in the request's scope syntax (RFC 6749 "scope").
func scopeString(scopes []policy.Scope) string {
	var parts []string
	for _, s := range scopes {
		if len(s.Actions) == 0 {
			continue
		}
		typ := s.Type
		if s.Class != "" {
			typ += "(" + s.Class + ")"
		}
		parts = append(parts, typ+":"+s.Name+":"+strings.Join(s.Actions, ","))
	}
	return strings.Join(parts, " ")
}

// usableFrom reports whether key may be used from client: anywhere for a key without
// networks, otherwise inside one of them. What the key gets there is the policy's to decide (its
// "key networks" rule); this keeps a key from being turned, outside its networks, into a refresh
// token that outlives the request. An unknown client address is inside no network.
func usableFrom(key keystore.Key, client netip.Addr) bool {
	if len(key.Restrictions.CIDRs) == 0 {
		return true
	}
	for _, c := range key.Restrictions.CIDRs {
		if p, err := netip.ParsePrefix(c); err == nil && client.IsValid() && p.Contains(client.Unmap()) {
			return true
		}
	}
	return false
}

// clientIP is the address the request comes from.
func (h *Handler) clientIP(r *http.Request) netip.Addr { return ClientIP(r, h.opts.TrustedProxies) }

// ClientIP is the address a request came from: the peer, or, when the peer is a trusted proxy,
// the last address of X-Forwarded-For that is not one (input.ClientAddress, which the admin
// API reads too).
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	return input.ClientAddress(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
