// Package server assembles the token server from its configuration: it opens the key store a
// URL names (the one place that knows the backends), loads the signing keys, starts the policy
// engines, mounts the token endpoint, the admin API, health, readiness, JWKS and metrics behind
// an in-flight limit, and runs the listeners and the other actors as one group with a graceful
// shutdown. It also owns the configuration file: its types, defaults and validation. It holds
// no request logic of its own: that lives in authz, admin, policy and tokens, which know nothing
// of it; it knows nothing of the command line.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// Options are what a Server needs besides its configuration.
type Options struct {
	Logger *slog.Logger
	// Version is reported by the regoauth_build_info metric.
	Version string
}

// Server is the token server wired from a Config.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	registry *prometheus.Registry
	store    keystore.Store
	engine   *policy.Engine
	// candidate is the dry-run policy, when one is configured.
	candidate *policy.Engine
	keys      *keyring
	usage     *keystore.UsageTracker
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

// New loads the signing keys, starts the policy and opens the store; Close releases them. A
// configuration that cannot work fails here, before anything listens.
func New(ctx context.Context, cfg Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, logger: opts.Logger, registry: newRegistry(opts.Version)}
	var err error
	if s.keys, err = loadKeyring(cfg); err != nil {
		return nil, err
	}
	for name, l := range map[string]*Listener{"listen": &cfg.Listen, "metrics": cfg.Metrics} {
		if l != nil {
			if _, err := l.TLS.config(); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	if err := s.startPolicy(ctx); err != nil {
		s.stopPolicy()
		return nil, err
	}
	if s.store, err = OpenStore(ctx, cfg.Store, s.logger, s.registry); err != nil {
		s.stopPolicy()
		return nil, err
	}
	s.usage = keystore.NewUsageTracker(s.store, 10*time.Second, s.logger)
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
	return s.store.Close()
}

// Run serves until ctx ends or an actor fails, then stops every actor: the main listener, the
// metrics listener when it has its own, the key-use recorder, and extra (e.g. the embedded
// registry of dev mode).
func (s *Server) Run(ctx context.Context, extra ...Actor) error {
	h, err := s.Handler()
	if err != nil {
		return err
	}
	actors := append([]Actor{s.usage.Run}, extra...)
	main, err := Listen("token", s.cfg.Listen, h, s.logger)
	if err != nil {
		return err
	}
	actors = append(actors, main)
	if s.cfg.Metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metricsHandler())
		m, err := Listen("metrics", *s.cfg.Metrics, mux, s.logger)
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
