// Package server assembles the token server from its configuration: it opens the key store a
// URL names (the one place that knows the backends), loads the signing keys, starts the policy
// engines, mounts the token endpoint, the admin API, health, readiness, JWKS and metrics behind
// an in-flight limit, and runs the listeners and the other actors as one group with a graceful
// shutdown (a drain delay, then a grace period). It reloads, on request or when the files change,
// what may change without a restart — keys, certificates, secrets, services — swapping them as
// one generation. It also owns the configuration file: its types, defaults and validation. It holds
// no request logic of its own: that lives in authz, admin, policy and tokens, which know nothing
// of it; it knows nothing of the command line.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
	"github.com/regoauth/regoauth/throttle"
)

// Options are what a Server needs besides its configuration.
type Options struct {
	Logger *slog.Logger
	// Version is reported by the regoauth_build_info metric.
	Version string
	// ConfigFile is the file the configuration was read from: Reload reads it again, and
	// changes to it and the files it names are watched (unless reload.watch is false). Without
	// it the configuration is fixed for the life of the server (dev mode).
	ConfigFile string
	// Now is the clock (time.Now when nil): the token endpoint, the admin API and the store
	// judge key expiry and grant ends by it.
	Now func() time.Time
}

// Server is the token server wired from a Config.
type Server struct {
	// cfg is the configuration the server started with. Its restart-only settings (listeners,
	// store, policy, in-flight limit, log) hold for the server's life; everything a reload
	// changes is read from gen.
	cfg        Config
	configFile string
	logger     *slog.Logger
	registry   *prometheus.Registry
	clock      func() time.Time
	store      keystore.Store
	engine     *policy.Engine
	// candidate is the dry-run policy, when one is configured.
	candidate *policy.Engine
	usage     *keystore.UsageTracker
	// guard limits failed authentication (nil when off), for the server's life: reloads keep
	// its budgets. stopGuard stops its backend.
	guard     *throttle.Guard
	stopGuard func()
	// proxies are the parsed trusted_proxies.
	proxies []netip.Prefix

	// gen is the serving generation; Reload swaps it, reloadMu serializes reloads.
	gen           atomic.Pointer[generation]
	reloadMu      sync.Mutex
	reloadMetrics *reloadMetrics
	// warned are the warnings of the serving configuration, as logged at start or by the last
	// reload (under reloadMu): a reload logs only those not among them.
	warned []string
	// settle is how long watched files stay quiet before a reload.
	settle time.Duration
	// draining is set when shutdown begins: /readyz answers 503 while requests are still served.
	draining atomic.Bool
}

// NewLogger is the logger a configuration asks for: JSON or text, at its level.
func NewLogger(cfg Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// New loads the signing keys and certificates, starts the policy and opens the store; Close
// releases them. A configuration that cannot work fails here, before anything listens; one that
// works but may expose something (Config.Warnings) is logged here, once, at WARN; a reload logs
// those it brings.
func New(ctx context.Context, cfg Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	warned := cfg.Warnings(opts.ConfigFile)
	for _, w := range warned {
		opts.Logger.Warn(w)
	}
	s := &Server{cfg: cfg, configFile: opts.ConfigFile, logger: opts.Logger, registry: newRegistry(opts.Version),
		clock: opts.Now, settle: settle, warned: warned}
	s.reloadMetrics = newReloadMetrics(s.registry)
	for _, p := range cfg.TrustedProxies {
		s.proxies = append(s.proxies, netip.MustParsePrefix(p)) // validated with the configuration
	}
	g, err := loadGeneration(cfg, opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	if err := s.startPolicy(ctx); err != nil {
		s.stopPolicy()
		return nil, err
	}
	if s.store, err = openStore(ctx, cfg.Store, s.logger, s.registry, s.clock); err != nil {
		s.stopPolicy()
		return nil, err
	}
	s.usage = keystore.NewUsageTracker(s.store, 10*time.Second, s.logger)
	s.guard, s.stopGuard = newGuard(cfg.Limits.AuthFailures, cfg.Limits.MaxInFlight, s.store, s.registry, s.logger)
	if g.token, err = s.tokenEndpoint(g); err != nil {
		s.Close()
		return nil, err
	}
	g.number = 1
	s.gen.Store(g)
	s.reloadMetrics.lastSuccess.Set(float64(s.now().UnixNano()) / 1e9)
	return s, nil
}

// newRegistry is the server's own Prometheus registry (never the global one) with the Go and
// process collectors and regoauth_build_info.
func newRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "regoauth", Name: "build_info", Help: "Build information; always 1.",
	}, []string{"version", "goversion"})
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	buildInfo.WithLabelValues(version, goVersion).Set(1)
	reg.MustRegister(buildInfo)
	return reg
}

// Store is the key store the server opened, for work beside it (dev mode's admin account).
func (s *Server) Store() keystore.Store { return s.store }

// Check reports whether everything would work now: serving tolerates a store that is down at
// start (not ready until it answers), a check does not.
func (s *Server) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("the store does not answer: %w", err)
	}
	return nil
}

// Close stops the policy engines and releases the store.
func (s *Server) Close() error {
	s.stopPolicy()
	s.stopGuard()
	return s.store.Close()
}

// Run serves until ctx ends or an actor fails, then stops: the main listener, the metrics
// listener when it has its own, the watch of the configuration files, the key-use recorder, and
// extra (e.g. the embedded registry of dev mode, a reload on SIGHUP). When ctx ends, the
// listeners drain (see Shutdown) before the other actors stop, so that the key uses and
// decisions of the last requests are still recorded.
func (s *Server) Run(ctx context.Context, extra ...Actor) error {
	h, err := s.Handler()
	if err != nil {
		return err
	}
	listeners := []*httpListener{}
	tlsConfig := func(name string, l Listener) *tls.Config {
		if l.TLS == nil {
			return nil
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certificate(name)}
	}
	main, err := newListener("token", s.cfg.Listen.Addr, tlsConfig("token", s.cfg.Listen), h, s.logger)
	if err != nil {
		return err
	}
	listeners = append(listeners, main)
	if s.cfg.Metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metricsHandler())
		m, err := newListener("metrics", s.cfg.Metrics.Addr, tlsConfig("metrics", *s.cfg.Metrics), mux, s.logger)
		if err != nil {
			main.ln.Close()
			return err
		}
		listeners = append(listeners, m)
	}
	actors := append([]Actor{s.usage.Run}, extra...)
	if s.configFile != "" && s.cfg.Reload.watch() {
		actors = append(actors, s.watchFiles)
	}

	actorsCtx, stopActors := context.WithCancel(context.Background())
	defer stopActors()
	g, gctx := errgroup.WithContext(actorsCtx)
	for _, l := range listeners {
		g.Go(l.serve)
	}
	for _, a := range actors {
		g.Go(func() error { return a(gctx) })
	}
	var stopErr error
	select {
	case <-ctx.Done():
		stopErr = s.shutdown(listeners, gctx.Done())
	case <-gctx.Done():
		// An actor failed: no drain delay, the rest stop as quickly as they can.
		stopErr = closeListeners(listeners, time.Now().Add(shutdownGrace))
	}
	stopActors()
	err = errors.Join(g.Wait(), stopErr)
	// After the listeners have shut down, so no request decides on a stopped engine; stopping
	// uploads the decision logs still buffered.
	s.stopPolicy()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// shutdown stops the listeners within the grace period of the serving configuration: /readyz
// answers 503 at once and, for the drain delay, requests are still served, so that load
// balancers take the server out before anything is refused; then the listeners close (new
// connections are refused), idle kept-alive connections are closed, and the requests in flight
// finish, their responses closing their connections. Clients then reconnect, through the load
// balancer, to another replica (Go's HTTP client, in docker and the other registry clients,
// retries an idempotent request whose kept-alive connection was closed under it). Keep-alives
// stay on during the drain delay on purpose: turned off, every request would open a connection,
// and those still in the listen queue when the listener closes would be reset. Requests still
// running when the grace period ends are cut off, and that is an error. An actor failing during
// the drain delay ends it early.
func (s *Server) shutdown(listeners []*httpListener, failed <-chan struct{}) error {
	cfg := s.gen.Load().cfg.Shutdown
	grace, delay := time.Duration(cfg.GracePeriod), time.Duration(cfg.DrainDelay)
	start := time.Now()
	s.draining.Store(true)
	s.logger.Info("shutting down: not ready, still serving during the drain delay", "drain_delay", delay.String(), "grace_period", grace.String())
	select {
	case <-time.After(delay):
	case <-failed:
	}
	err := closeListeners(listeners, start.Add(grace))
	if err == nil {
		s.logger.Info("listeners closed; every request in flight was answered", "took", time.Since(start).Round(time.Millisecond).String())
	}
	return err
}

// closeListeners shuts every listener down at once, letting requests in flight finish until
// deadline, and cuts off those still running then.
func closeListeners(listeners []*httpListener, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errs <- l.shutdown(ctx) }()
	}
	var all []error
	for range listeners {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}
