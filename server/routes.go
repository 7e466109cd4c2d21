package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/console"
	"github.com/regoauth/regoauth/policy"
)

// Handler is every route of the main listener, behind the in-flight limit: /token, the admin
// API, /healthz, /readyz, the JWKS, and /metrics unless metrics have a listener of their own.
// Anything else is a JSON 404.
func (s *Server) Handler() (http.Handler, error) {
	adminDeps := admin.Deps{Store: s.store, Authorizer: s.engine, Explainer: s.engine}
	if s.guard != nil { // a nil *Guard in the interface would not read as "none"
		adminDeps.Throttle = s.guard
	}
	adminAPI, err := admin.New(adminDeps, admin.Options{TrustedProxies: s.proxies, Logger: s.logger.With("component", "admin"), Now: s.clock,
		MaxKeysPerAccount: s.cfg.Limits.KeysPerAccount})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	// The token endpoint and the JWKS are those of the serving generation, read once per
	// request: a reload swaps them between requests, never within one.
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) { s.gen.Load().token.ServeHTTP(w, r) })
	mux.Handle(admin.Prefix+"/", adminAPI)
	if s.cfg.Console.Enabled {
		if err := s.mountConsole(mux, adminAPI); err != nil {
			return nil, err
		}
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(s.gen.Load().keys.jwks)
	})
	if s.cfg.Metrics == nil {
		mux.Handle("GET /metrics", s.metricsHandler())
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	})
	return limitInFlight(adminPathsAsSent(mux, adminAPI), s.cfg.Limits.MaxInFlight, s.registry), nil
}

// adminPathsAsSent hands the admin API its requests before ServeMux cleans their paths:
// ServeMux would answer DELETE /admin/v1/repositories/shop/x/../premium with a 307 to
// .../shop/premium, which clients follow with the same method and key, releasing a name the
// caller never named.
func adminPathsAsSent(mux *http.ServeMux, adminAPI http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, admin.Prefix+"/") {
			adminAPI.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// mountConsole serves the web console at console.path, its operations those of the admin API.
func (s *Server) mountConsole(mux *http.ServeMux, ops *admin.API) error {
	cfg := s.cfg.Console
	registry := cfg.Registry
	if registry == "" {
		registry = s.cfg.Services[0]
	}
	opts := console.Options{
		Prefix: cfg.Path, Registry: registry, SessionTTL: time.Duration(cfg.SessionTTL),
		MaxSessionsPerAccount: cfg.SessionsPerAccount,
		SecureCookies:         cfg.SecureCookies,
		ClientIP:              func(r *http.Request) netip.Addr { return authz.ClientIP(r, s.proxies) },
		Health:                consoleHealth{s}, Logger: s.logger.With("component", "console"),
	}
	if s.guard != nil { // sign-ins spend the budgets of the token endpoint and the admin API
		opts.Limiter = s.guard
	}
	c, err := console.New(s.store, ops, opts)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	mux.Handle(c.Prefix()+"/", c)
	mux.Handle(c.Prefix(), http.RedirectHandler(c.Prefix()+"/", http.StatusMovedPermanently))
	return nil
}

// consoleHealth is what the console's status page shows: the policy engine's status, and
// whether the store answers.
type consoleHealth struct{ s *Server }

func (h consoleHealth) Status() policy.Status { return h.s.engine.Status() }

func (h consoleHealth) Ping(ctx context.Context) error { return h.s.store.Ping(ctx) }

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry})
}

// readiness is the state /readyz reports.
type readiness struct {
	ready  bool
	status map[string]any
}

// readiness is ready when a policy is active and the store answers. Its detail shows every
// bundle, with the error of its newest load when that failed (the previous revision keeps
// deciding). Every reason to be not ready is decided here, so that a server draining before it
// stops can say so in one more line.
func (s *Server) readiness(ctx context.Context) readiness {
	pst := s.engine.Status()
	r := readiness{ready: pst.Ready, status: map[string]any{"policy": pst.Revision, "policy_status": public(pst), "store": "ok"}}
	if !r.ready {
		r.status["policy"] = "none active"
	}
	if s.candidate != nil {
		r.status["dry_run_policy_status"] = public(s.candidate.Status())
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		r.status["store"], r.ready = "unreachable", false
	}
	if s.draining.Load() {
		r.status["shutdown"], r.ready = "draining", false
	}
	return r
}

// publicLoadError stands, in /readyz, for the error of a bundle's newest load.
const publicLoadError = "the newest load failed; the server log and the console's status page say why"

// public is a policy status as anyone may read it: whether each bundle's newest load failed,
// not why. The reason may name a bundle server's address, path and query (a token in it), which
// the server log and the status page (status.read) keep for operators.
func public(st policy.Status) policy.Status {
	st.Bundles = slices.Clone(st.Bundles)
	for i := range st.Bundles {
		if st.Bundles[i].Error != "" {
			st.Bundles[i].Error = publicLoadError
		}
	}
	return st
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.readiness(r.Context())
	code := http.StatusOK
	rd.status["status"] = "ready"
	if !rd.ready {
		code, rd.status["status"] = http.StatusServiceUnavailable, "not ready"
	}
	writeJSON(w, code, rd.status)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
