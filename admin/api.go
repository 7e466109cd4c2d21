// Package admin is the HTTP admin API for accounts, API keys, grants and repository ownership,
// and the client the CLI uses to call it. Every call authenticates with an API key and is
// authorized by the policy engine (data.regoauth.admin.decision), so who may manage what is
// policy, not code. It works on the store and the engine through its own interfaces (Store,
// Authorizer, Explainer): it knows no store backend, and nothing of the token endpoint.
package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/mux"

	"github.com/regoauth/regoauth/authz/input"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// Prefix is where the API is mounted.
const Prefix = "/admin/v1"

// maxBody bounds a request body; admin requests are small JSON documents.
const maxBody = 64 << 10

// Store is what the admin API needs of a key store: every record, read and written one at a
// time.
type Store interface {
	LoadPrincipal(ctx context.Context, keyID string) (keystore.Principal, error)

	CreateAccount(ctx context.Context, a keystore.Account) error
	GetAccount(ctx context.Context, name string) (keystore.Account, error)
	ListAccounts(ctx context.Context) ([]keystore.Account, error)
	PageAccounts(ctx context.Context, q keystore.AccountQuery) (keystore.AccountPage, error)
	ChangeAccount(ctx context.Context, name string, ch keystore.AccountChange) (keystore.Account, error)

	CreateKey(ctx context.Context, k keystore.Key) error
	CreateKeyWithin(ctx context.Context, k keystore.Key, maxLive int) error
	GetKey(ctx context.Context, id string) (keystore.Key, error)
	ListKeys(ctx context.Context, account string) ([]keystore.Key, error)
	RevokeKey(ctx context.Context, id string) error
	DeleteKeys(ctx context.Context, ids []string) error

	PutGrant(ctx context.Context, g keystore.Grant, guard keystore.Guard) error
	RemoveGrant(ctx context.Context, subject keystore.Subject, repository string, actions []string, guard keystore.Guard) error
	ListGrants(ctx context.Context, f keystore.GrantFilter) ([]keystore.Grant, error)
	PageGrants(ctx context.Context, q keystore.GrantQuery) (keystore.GrantPage, error)

	Reserve(ctx context.Context, o keystore.Ownership, maxOwned int) error
	GetOwnership(ctx context.Context, repository string) (keystore.Ownership, error)
	ListOwnership(ctx context.Context, owner string) ([]keystore.Ownership, error)
	PageOwnership(ctx context.Context, q keystore.OwnershipQuery) (keystore.OwnershipPage, error)
	Release(ctx context.Context, repository string, guard keystore.Guard) error
}

// Authorizer decides admin operations.
type Authorizer interface {
	Authorize(ctx context.Context, in *policy.AdminInput) (policy.AdminDecision, error)
}

// Throttle limits failed authentication (throttle.Guard), as on the token endpoint: Admit is
// asked before a key is checked and counts the attempt as in flight until settle is called with
// whether it was refused. Either refuses with an error that has a RetryAfterSeconds method,
// answered 429.
type Throttle interface {
	Admit(ctx context.Context, client netip.Addr, account string) (settle func(ctx context.Context, failed bool) error, err error)
}

// Deps are the collaborators of the API, all passed the same way. Store and Authorizer are
// required. Explainer and Throttle are optional: without an Explainer POST /policy/explain is
// not found; without a Throttle failed authentication is not limited.
type Deps struct {
	Store      Store
	Authorizer Authorizer
	Explainer  Explainer
	Throttle   Throttle
}

// Options configure the API.
type Options struct {
	// TrustedProxies are the peers whose X-Forwarded-For is believed for the client address, as
	// on the token endpoint: the admin policy checks a key's networks against that address.
	TrustedProxies []netip.Prefix
	Logger         *slog.Logger
	Now            func() time.Time
	Random         io.Reader
	// MaxKeysPerAccount bounds the keys an account holds that are neither revoked nor expired
	// (0: no bound): a key creating keys without end would otherwise fill the store. The store
	// counts them in the write that creates a key, so concurrent creations never pass it.
	MaxKeysPerAccount int
}

// API serves the admin endpoints.
type API struct {
	store     Store
	authz     Authorizer
	explainer Explainer // nil when explaining is off
	throttle  Throttle  // nil when failures are not limited
	opts      Options
	router    *mux.Router
	// explaining holds a slot while an explanation is computed: one traced evaluation costs
	// tens of times a decision, so they run one at a time and a second is refused at once.
	explaining chan struct{}
}

// New returns the admin API handler, to be mounted at Prefix.
func New(deps Deps, opts Options) (*API, error) {
	if deps.Store == nil || deps.Authorizer == nil {
		return nil, errors.New("the admin API needs a store and an authorizer")
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
	a := &API{store: deps.Store, authz: deps.Authorizer, explainer: deps.Explainer, throttle: deps.Throttle, opts: opts, router: mux.NewRouter(),
		explaining: make(chan struct{}, 1)}
	// Full paths on one router rather than a PathPrefix subrouter: mux 1.8.1 answers a wrong
	// method inside a subrouter with 404 instead of 405 (gorilla/mux#739).
	r := a.router
	// A path is taken as it is sent: cleaned, DELETE .../repositories/shop/x/../premium would
	// be redirected to .../shop/premium, which clients follow with the same method and key.
	r.SkipClean(true)
	r.HandleFunc(Prefix+"/whoami", a.handle(a.whoami)).Methods("GET")
	r.HandleFunc(Prefix+"/accounts", a.handle(a.listAccounts)).Methods("GET")
	r.HandleFunc(Prefix+"/accounts", a.handle(a.createAccount)).Methods("POST")
	r.HandleFunc(Prefix+"/accounts/{name}", a.handle(a.getAccount)).Methods("GET")
	r.HandleFunc(Prefix+"/accounts/{name}", a.handle(a.updateAccount)).Methods("PATCH")
	r.HandleFunc(Prefix+"/keys", a.handle(a.listKeys, "account")).Methods("GET")
	r.HandleFunc(Prefix+"/keys", a.handle(a.createKey)).Methods("POST")
	r.HandleFunc(Prefix+"/keys/{id}", a.handle(a.revokeKey)).Methods("DELETE")
	r.HandleFunc(Prefix+"/grants", a.handle(a.listGrants, "account", "group", "repository")).Methods("GET")
	r.HandleFunc(Prefix+"/grants", a.handle(a.addGrant)).Methods("POST")
	r.HandleFunc(Prefix+"/grants", a.handle(a.removeGrant)).Methods("DELETE")
	r.HandleFunc(Prefix+"/repositories", a.handle(a.listRepos, "owner")).Methods("GET")
	r.HandleFunc(Prefix+"/repositories", a.handle(a.reserveRepo)).Methods("POST")
	r.HandleFunc(Prefix+"/repositories/{name:.+}", a.handle(a.releaseRepo)).Methods("DELETE")
	r.HandleFunc(Prefix+"/policy/explain", a.handle(a.explainDecision)).Methods("POST")
	notFound := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, fmt.Errorf("%w: no such endpoint", keystore.ErrNotFound))
	})
	notAllowed := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// A 405 says which methods the path takes (RFC 9110, 15.5.6).
		var allowed []string
		for _, m := range []string{"GET", "POST", "PATCH", "DELETE"} {
			var match mux.RouteMatch
			if probe := req.Clone(req.Context()); r.Match(withMethod(probe, m), &match) && match.MatchErr == nil {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, errMethod)
	})
	r.NotFoundHandler, r.MethodNotAllowedHandler = notFound, notAllowed
	return a, nil
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

func withMethod(r *http.Request, method string) *http.Request {
	r.Method = method
	return r
}

// call is one authenticated admin request.
type call struct {
	r      *http.Request
	caller *Caller
}

type handlerFunc func(ctx context.Context, c *call) (status int, body any, err error)

// handle authenticates the caller, checks the query against the parameters the endpoint
// reads (params), runs fn and writes its result as JSON.
func (a *API) handle(fn handlerFunc, params ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		ctx := r.Context()
		p, err := a.authenticate(ctx, r)
		if err == nil {
			err = checkQuery(r.URL.RawQuery, params)
		}
		if err != nil {
			a.opts.Logger.Info("admin request refused", "path", r.URL.Path, "error", err)
			writeError(w, err)
			return
		}
		c := &call{r: r, caller: &Caller{Principal: p, ClientIP: a.clientAddress(r).String()}}
		status, body, err := fn(ctx, c)
		if err != nil {
			a.opts.Logger.Info("admin request failed", "path", r.URL.Path, "method", r.Method, "account", p.Account.Name, "key_id", p.Key.ID, "error", err)
			writeError(w, err)
			return
		}
		if r.Method != http.MethodGet {
			a.opts.Logger.Info("admin change", "path", r.URL.Path, "method", r.Method, "account", p.Account.Name, "key_id", p.Key.ID)
		}
		writeJSON(w, status, body)
	}
}

// authenticate accepts "Bearer <api key>" or Basic "<account>:<api key>", within the failure
// budgets of the client's address and the account it names.
func (a *API) authenticate(ctx context.Context, r *http.Request) (keystore.Principal, error) {
	var user, key string
	basic := false
	if u, p, ok := r.BasicAuth(); ok {
		user, key, basic = u, p, true
	} else if rest, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		key = strings.TrimSpace(rest)
	} else {
		return keystore.Principal{}, fmt.Errorf("%w: an API key is required (Authorization: Bearer KEY)", keystore.ErrBadCredentials)
	}
	client := a.clientAddress(r)
	// The budgets beyond the address's are those of the account a Basic attempt names, and
	// those of the key a Bearer attempt names by its id (ids are in logs and listings): guesses
	// at one key's secret spend a budget of their own either way. A key's budget is named so
	// that no account's can be (account names have no ':').
	subject := user
	if id, ok := keystore.ParseAPIKey(key); ok && !basic {
		subject = "key:" + id
	}
	settle := func(context.Context, bool) error { return nil }
	if a.throttle != nil {
		var err error
		if settle, err = a.throttle.Admit(ctx, client, subject); err != nil {
			return keystore.Principal{}, err
		}
		// Gives the held units back should the check panic; a no-op once settled below.
		defer settle(ctx, false)
	}
	var p keystore.Principal
	var err error
	if basic && (user == "" || key == "") {
		err = fmt.Errorf("%w: empty username or password", keystore.ErrBadCredentials)
	} else {
		p, err = keystore.Authenticate(ctx, a.store, user, key, a.opts.Now())
	}
	if terr := settle(ctx, errors.Is(err, keystore.ErrBadCredentials)); terr != nil {
		err = fmt.Errorf("%w (%w)", terr, err)
	}
	return p, err
}

// clientAddress is where a request comes from, trusted proxies considered as on the token
// endpoint: the admin policy and the failure budgets see the same address.
func (a *API) clientAddress(r *http.Request) netip.Addr {
	return input.ClientAddress(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), a.opts.TrustedProxies)
}

// checkQuery refuses a query the endpoint would not read as sent: a parameter it does not
// know (a misspelt ?acount=alice would list every account's keys), or one given twice (the
// endpoint reads the first; a proxy or a log may read the last).
func checkQuery(raw string, params []string) error {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return fmt.Errorf("%w: query: %v", keystore.ErrInvalid, err)
	}
	for name, values := range q {
		switch {
		case !slices.Contains(params, name) && len(params) == 0:
			return fmt.Errorf("%w: query parameter %q: this endpoint takes none", keystore.ErrInvalid, name)
		case !slices.Contains(params, name):
			return fmt.Errorf("%w: query parameter %q: this endpoint takes %s", keystore.ErrInvalid, name, strings.Join(params, ", "))
		case len(values) > 1:
			return fmt.Errorf("%w: query parameter %q is given %d times; give it once", keystore.ErrInvalid, name, len(values))
		}
	}
	return nil
}

// decode reads a strict JSON body into v: one JSON object, in valid UTF-8, no name twice in
// an object, no field v does not have. encoding/json alone would take the last of two "account"
// members (where a proxy or a log reads the first), turn invalid UTF-8 into U+FFFD (storing
// another name than the one sent), and read null as an empty request.
func decode(r *http.Request, v any) error {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("%w: request body over %d bytes", keystore.ErrInvalid, maxBody)
		}
		return fmt.Errorf("%w: request body: %v", keystore.ErrInvalid, err)
	}
	syntax := jsontext.NewDecoder(bytes.NewReader(raw))
	switch syntax.PeekKind() {
	case 0: // nothing, or not JSON: SkipValue says which
	case '{':
	default:
		return fmt.Errorf("%w: request body: a JSON object is required", keystore.ErrInvalid)
	}
	if err := syntax.SkipValue(); errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: request body is empty: a JSON object is required", keystore.ErrInvalid)
	} else if err != nil {
		return fmt.Errorf("%w: request body: %v", keystore.ErrInvalid, strings.TrimPrefix(err.Error(), "jsontext: "))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", keystore.ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: request body holds more than one JSON value", keystore.ErrInvalid)
	}
	return nil
}
