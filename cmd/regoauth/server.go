package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/policy"
	"github.com/regoauth/regoauth/tokens"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// server is the token server wired from a Config.
type server struct {
	cfg      Config
	logger   *slog.Logger
	registry *prometheus.Registry
	store    keystore.Store
	engine   *policy.Engine
	// candidate is the dry-run policy, when one is configured.
	candidate *policy.Engine
	signer    *tokens.Signer
	jwks      []byte
	refresh   *tokens.RefreshCodec
	usage     *keystore.UsageTracker
	// extra actors run beside the listeners (the embedded registry in dev mode).
	extra []func(context.Context) error
}

func newLogger(cfg Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// newServer opens the store, loads the policy and the signing key.
func newServer(ctx context.Context, cfg Config, logger *slog.Logger) (*server, error) {
	s := &server{cfg: cfg, logger: logger, registry: prometheus.NewRegistry()}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "regoauth", Name: "build_info", Help: "Build information; always 1.",
	}, []string{"version", "goversion"})
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	buildInfo.WithLabelValues(version, goVersion).Set(1)
	s.registry.MustRegister(buildInfo)

	key, err := tokens.LoadKeyFiles(cfg.Signing.KeyFile, cfg.Signing.CertFile, tokens.KIDMode(cfg.Signing.KID))
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if s.signer, err = tokens.NewSigner(key, tokens.SignerOptions{Issuer: cfg.Issuer, TTL: time.Duration(cfg.TokenTTL)}); err != nil {
		return nil, err
	}
	if s.jwks, err = publishedKeys(key, cfg.Signing); err != nil {
		return nil, err
	}
	if s.refresh, err = refreshCodec(cfg.RefreshTokens); err != nil {
		return nil, err
	}

	if err := s.startPolicy(ctx); err != nil {
		s.stopPolicy()
		return nil, err
	}

	if s.store, err = openStore(ctx, cfg.Store, logger, s.registry); err != nil {
		s.stopPolicy()
		return nil, err
	}
	s.usage = keystore.NewUsageTracker(s.store, 10*time.Second, logger)
	return s, nil
}

// startPolicy starts the policy engine (and the dry-run candidate, when configured): local
// bundles must load now; bundles from servers arrive in the background, and /readyz says
// not-ready until they have.
func (s *server) startPolicy(ctx context.Context) error {
	p := s.cfg.Policy
	src, err := p.source()
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	s.engine = policy.New(policy.Options{
		DecisionQuery: p.DecisionQuery, AdminQuery: p.AdminQuery, Source: src,
		Logger: s.logger.With("component", "policy"), Registerer: s.registry,
		DecisionCacheBytes: p.decisionCache(),
	})
	if err := s.engine.Start(ctx); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if p.DryRun == nil {
		return nil
	}
	csrc, err := p.DryRun.source()
	if err != nil {
		return fmt.Errorf("policy.dry_run: %w", err)
	}
	s.candidate = policy.New(policy.Options{
		DecisionQuery: p.DecisionQuery, AdminQuery: p.AdminQuery, Source: csrc,
		Logger: s.logger.With("component", "policy_dry_run"),
	})
	if err := s.candidate.Start(ctx); err != nil {
		return fmt.Errorf("policy.dry_run: %w", err)
	}
	s.engine.DryRun(s.candidate)
	return nil
}

// stopPolicy stops the engines with a deadline for uploading buffered decision logs.
func (s *server) stopPolicy() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.engine != nil {
		s.engine.Stop(ctx)
	}
	if s.candidate != nil {
		s.candidate.Stop(ctx)
	}
}

// publishedKeys is the JWKS of the active key and every key listed in signing.publish.
func publishedKeys(active *tokens.Key, cfg Signing) ([]byte, error) {
	keys := []tokens.PublicKey{active.PublicKey()}
	for _, f := range cfg.Publish {
		k, err := tokens.LoadPublicKeyFile(f, tokens.KIDMode(cfg.KID))
		if err != nil {
			return nil, fmt.Errorf("signing.publish: %w", err)
		}
		if k.KID != active.KID {
			keys = append(keys, k)
		}
	}
	return tokens.JWKS(keys...)
}

func refreshCodec(cfg RefreshTokens) (*tokens.RefreshCodec, error) {
	if len(cfg.Secrets) == 0 {
		return nil, nil
	}
	secrets := make([][]byte, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		v, err := s.Resolve()
		if err != nil {
			return nil, fmt.Errorf("refresh_tokens.secrets[%d]: %w", i, err)
		}
		secrets[i] = []byte(v)
	}
	c, err := tokens.NewRefreshCodec(secrets, time.Duration(cfg.TTL), nil)
	if err != nil {
		return nil, fmt.Errorf("refresh_tokens: %w", err)
	}
	return c, nil
}

// openStore opens the store a configuration names. A Redis store opens even while Redis is
// unreachable: the server then starts not ready, refuses tokens with 503, and recovers by
// itself when Redis answers.
func openStore(ctx context.Context, cfg Store, logger *slog.Logger, reg prometheus.Registerer) (keystore.Store, error) {
	u, err := cfg.URL.Resolve()
	if err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	kind, location, err := parseStoreURL(u)
	if err != nil {
		return nil, err
	}
	if kind == "bolt" {
		return boltstore.OpenWith(location, boltstore.Options{CacheTTL: time.Duration(cfg.Cache.TTL), CacheSize: cfg.Cache.Size})
	}
	logger = logger.With("component", "store")
	redisstore.RouteClientLogs(logger)
	s, err := redisstore.Open(location, redisstore.Options{
		CacheTTL: time.Duration(cfg.Cache.TTL), CacheSize: cfg.Cache.Size,
		Logger: logger, Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.Ping(pingCtx); err != nil {
		logger.Warn("redis store not reachable yet; not ready until it is", "url", redact(u), "error", err)
	} else {
		logger.Info("redis store connected", "url", redact(u), "cache_ttl", time.Duration(cfg.Cache.TTL).String())
	}
	return s, nil
}

// Close stops the policy engines and releases the store.
func (s *server) Close() error {
	s.stopPolicy()
	return s.store.Close()
}

// handler is every route of the main listener.
func (s *server) handler(withMetrics bool) (http.Handler, error) {
	proxies := make([]netip.Prefix, 0, len(s.cfg.TrustedProxies))
	for _, p := range s.cfg.TrustedProxies {
		proxies = append(proxies, netip.MustParsePrefix(p))
	}
	opts := authz.Options{
		Services:       s.cfg.Services,
		MaxScopes:      s.cfg.Limits.MaxScopes,
		MaxScopeLength: s.cfg.Limits.MaxScopeLength,
		TrustedProxies: proxies,
		Logger:         s.logger.With("component", "token"),
		Registerer:     s.registry,
	}
	if s.refresh != nil {
		opts.Refresh = s.refresh // a nil *RefreshCodec in the interface would not read as "none"
	}
	token, err := authz.New(s.store, s.engine, s.signer, s.usage, opts)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/token", token)
	mux.Handle(admin.Prefix+"/", admin.New(s.store, s.engine, admin.Options{Explainer: s.engine, TrustedProxies: proxies, Logger: s.logger.With("component", "admin")}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(s.jwks)
	})
	if withMetrics {
		mux.Handle("GET /metrics", s.metricsHandler())
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	})
	return limitInFlight(mux, s.cfg.Limits.MaxInFlight, s.registry), nil
}

func (s *server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry})
}

// readyz is ready when a policy is active and the store answers. Its detail shows every
// bundle, with the error of its newest load when that failed (the previous revision keeps
// deciding).
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	pst := s.engine.Status()
	status := map[string]any{"policy": pst.Revision, "policy_status": pst, "store": "ok"}
	ready := pst.Ready
	if !ready {
		status["policy"] = "none active"
	}
	if s.candidate != nil {
		status["dry_run_policy_status"] = s.candidate.Status()
	}
	if p, ok := s.store.(interface{ Ping(context.Context) error }); ok {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			status["store"], ready = "unreachable", false
		}
	}
	code := http.StatusOK
	status["status"] = "ready"
	if !ready {
		code, status["status"] = http.StatusServiceUnavailable, "not ready"
	}
	writeJSON(w, code, status)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// limitInFlight answers 503 at once when max requests are already being served, so a flood
// queues nowhere and costs nothing but the refusal.
func limitInFlight(next http.Handler, max int, reg prometheus.Registerer) http.Handler {
	slots := make(chan struct{}, max)
	rejected := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "regoauth", Name: "overload_rejections_total",
		Help: "Requests refused because max_in_flight requests were already being served.",
	})
	reg.MustRegister(rejected)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		default:
			rejected.Inc()
			w.Header().Set("Retry-After", "1")
			authz.WriteError(w, authz.ErrUnavailable)
		}
	})
}

// newHTTPServer applies the timeouts and header limits every listener shares.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// serveActor listens on l (with TLS when configured) until ctx ends, then shuts down with a
// deadline.
func serveActor(name string, l Listener, srv *http.Server, logger *slog.Logger) (func(context.Context) error, error) {
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() {
			if l.TLS != nil {
				errc <- srv.ServeTLS(ln, l.TLS.CertFile, l.TLS.KeyFile)
			} else {
				errc <- srv.Serve(ln)
			}
		}()
		logger.Info("listening", "listener", name, "addr", ln.Addr().String(), "tls", l.TLS != nil)
		select {
		case err := <-errc:
			return fmt.Errorf("%s listener: %w", name, err)
		case <-ctx.Done():
		}
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil {
			return fmt.Errorf("%s listener shutdown: %w", name, err)
		}
		return nil
	}, nil
}

// run serves until ctx ends or an actor fails, then stops every actor.
func (s *server) run(ctx context.Context) error {
	h, err := s.handler(s.cfg.Metrics == nil)
	if err != nil {
		return err
	}
	actors := append([]func(context.Context) error{s.usage.Run}, s.extra...)
	main, err := serveActor("token", s.cfg.Listen, newHTTPServer(h, s.logger), s.logger)
	if err != nil {
		return err
	}
	actors = append(actors, main)
	if s.cfg.Metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metricsHandler())
		m, err := serveActor("metrics", *s.cfg.Metrics, newHTTPServer(mux, s.logger), s.logger)
		if err != nil {
			return err
		}
		actors = append(actors, m)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, a := range actors {
		g.Go(func() error { return a(gctx) })
	}
	err = g.Wait()
	// After the listeners have shut down, so no request decides on a stopped engine; stopping
	// uploads the decision logs still buffered.
	s.stopPolicy()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
