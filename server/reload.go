package server

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/authz"
)

// ErrRestartNeeded is a reload refused because the new configuration changes a setting a
// running server cannot change.
var ErrRestartNeeded = errors.New("these settings change only with a restart")

// ErrNoConfigFile is a reload of a server that was not started from a configuration file.
var ErrNoConfigFile = errors.New("the server was not started from a configuration file")

// generation is what a reload replaces: the signing key, the JWKS and the refresh codec (the
// keyring), the listeners' TLS certificates, and the token endpoint built for the issuer,
// services and limits of one configuration. It is built whole, never changed, and
// swapped in with one atomic store: a request sees one generation from start to end, so no
// token is signed by a new key under the settings of the old configuration, or the reverse.
type generation struct {
	number int
	cfg    Config
	keys   *keyring
	token  http.Handler
	// certs are the listeners' certificates, by listener name ("token", "metrics").
	certs map[string]*tls.Certificate
	// storeURL is the resolved store URL, compared on reload (the store changes only with a
	// restart) and never logged.
	storeURL string
	// files are the configuration file and every file it names; fingerprint hashes them as
	// they were before the generation read them, so a change made while it loaded is seen.
	files       []string
	fingerprint string
}

// restartOnly are the settings a running server does not change: the listeners' addresses and
// whether they speak TLS (their certificates do reload), the store, the policy sources (whose
// bundles reload by themselves), the in-flight limit, the trusted proxies (one client address
// for the token endpoint, the admin API and the console, which are built once), the admin API's
// bound on keys, logging, the
// console and file watching. A reload that changes one is refused whole and names them, so that
// what serves is always one configuration file as written, never a mix of the new file and the
// old process. A key missing here is reloadable: TestReloadAppliesEveryReloadableKey makes each
// new key be put on one side or the other.
var restartOnly = []restartEntry{
	{"listen.addr", false, func(c Config) any { return c.Listen.Addr }},
	{"listen.tls", true, func(c Config) any { return c.Listen.TLS != nil }},
	{"metrics.addr", false, func(c Config) any {
		if c.Metrics == nil {
			return nil
		}
		return c.Metrics.Addr
	}},
	{"metrics.tls", true, func(c Config) any { return c.Metrics != nil && c.Metrics.TLS != nil }},
	{"store", false, func(c Config) any { return c.Store }},
	{"policy", false, func(c Config) any { return c.Policy }},
	{"limits.max_in_flight", false, func(c Config) any { return c.Limits.MaxInFlight }},
	// The failure budgets are kept by one backend for the server's life (in Redis, shared).
	{"limits.auth_failures", false, func(c Config) any { return c.Limits.AuthFailures }},
	{"trusted_proxies", false, func(c Config) any { return c.TrustedProxies }},
	// The admin API, which keeps the bound, is built once.
	{"limits.keys_per_account", false, func(c Config) any { return c.Limits.KeysPerAccount }},
	{"log", false, func(c Config) any { return c.Log }},
	{"console", false, func(c Config) any { return c.Console }},
	{"reload", false, func(c Config) any { return c.Reload.watch() }},
}

// restartEntry is a setting that changes only with a restart.
type restartEntry struct {
	key string // a configuration key, as docs/configuration.md lists it
	// toggle says only turning the key on or off needs a restart (its files reload).
	toggle bool
	value  func(Config) any
}

// needsRestart lists the restart-only settings next changes.
func needsRestart(running, next Config) []string {
	var keys []string
	for _, r := range restartOnly {
		if reflect.DeepEqual(r.value(running), r.value(next)) {
			continue
		}
		if r.toggle {
			keys = append(keys, r.key+" (turned on or off)")
		} else {
			keys = append(keys, r.key)
		}
	}
	return keys
}

// reloadMetrics count reloads the way Prometheus counts its own.
type reloadMetrics struct {
	reloads     *prometheus.CounterVec
	successful  prometheus.Gauge
	lastSuccess prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "config", Name: "reloads_total",
			Help: "Configuration reloads (SIGHUP or a changed file) by result: success, or failure (refused; the previous configuration keeps serving).",
		}, []string{"result"}),
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "regoauth", Subsystem: "config", Name: "last_reload_successful",
			Help: "1 when the last configuration reload succeeded (or none was tried), 0 when it was refused.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "regoauth", Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "When the configuration serving now was loaded, at start or by the last successful reload.",
		}),
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.successful.Set(1)
	reg.MustRegister(m.reloads, m.successful, m.lastSuccess)
	return m
}

// loadGeneration reads the files cfg names: the signing keys, the published keys, the refresh
// secrets and the TLS certificates. The token endpoint is added by the server, which owns the
// store and the policy it needs.
func loadGeneration(cfg Config, configFile string) (*generation, error) {
	g := &generation{cfg: cfg, certs: map[string]*tls.Certificate{}}
	g.files = configFiles(cfg, configFile)
	g.fingerprint = fingerprint(g.files)
	var err error
	if g.keys, err = loadKeyring(cfg); err != nil {
		return nil, err
	}
	for name, l := range map[string]*Listener{"token": &cfg.Listen, "metrics": cfg.Metrics} {
		if l == nil || l.TLS == nil {
			continue
		}
		field := "listen"
		if name == "metrics" {
			field = "metrics"
		}
		cert, err := tls.LoadX509KeyPair(l.TLS.CertFile, l.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.tls: %w", field, err)
		}
		g.certs[name] = &cert
	}
	if g.storeURL, err = cfg.Store.URL.Resolve(); err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	return g, nil
}

// tokenEndpoint is the token handler of one generation: its signer, refresh codec, services,
// limits, over the server's store, policy, key-use recorder and trusted proxies.
func (s *Server) tokenEndpoint(g *generation) (http.Handler, error) {
	return authz.New(authz.Deps{
		Directory: s.store, Decider: s.engine, Issuer: g.keys.signer, Usage: s.usage, Refresh: g.keys.refresh, Throttle: s.guard,
	}, authz.Options{
		Services:        g.cfg.Services,
		MaxScopes:       g.cfg.Limits.MaxScopes,
		MaxScopeLength:  g.cfg.Limits.MaxScopeLength,
		DecisionWorkers: g.cfg.Limits.DecisionWorkers,
		TrustedProxies:  s.proxies,
		Logger:          s.logger.With("component", "token"),
		Registerer:      s.registry,
		Now:             s.clock,
	})
}

// Reload reads the configuration file again and swaps in a generation built from it: signing
// keys, published keys, refresh secrets, TLS certificates, issuer, services, token TTL, scope
// limits and the shutdown settings. A configuration that does not load, names
// a file that does not parse, or changes a restart-only setting is refused, logged and counted;
// the running generation keeps serving. trigger says what asked for the reload, for the log.
// Reloads are serialized; requests are never blocked by one.
//
// A reload can bring what Config.Warnings warns of: a key or secret file others can read, a
// secret written into the configuration file, a file or folder whose mode changed since. The
// warnings of the new configuration that were not already logged (at start or by the last
// reload) are logged at WARN after the reload's record, which counts them all: one that stands
// is not repeated at every certificate renewal, and one that goes away and comes back is logged
// again.
func (s *Server) Reload(trigger string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	running := s.gen.Load()
	next, err := s.nextGeneration(running)
	if err != nil {
		s.reloadMetrics.reloads.WithLabelValues("failure").Inc()
		s.reloadMetrics.successful.Set(0)
		s.logger.Error("configuration reload refused; the running configuration keeps serving",
			"trigger", trigger, "config", s.configFile, "generation", running.number, "error", err)
		return err
	}
	s.gen.Store(next)
	s.reloadMetrics.reloads.WithLabelValues("success").Inc()
	s.reloadMetrics.successful.Set(1)
	s.reloadMetrics.lastSuccess.Set(float64(s.now().UnixNano()) / 1e9)
	warnings := next.cfg.Warnings(s.configFile)
	s.logger.Info("configuration reloaded", "trigger", trigger, "config", s.configFile, "generation", next.number,
		"signing_kid", next.keys.published[0], "published_kids", next.keys.published, "services", next.cfg.Services,
		"refresh_secrets", len(next.cfg.RefreshTokens.Secrets), "tls", len(next.certs) > 0, "warnings", len(warnings))
	for _, w := range warnings {
		if !slices.Contains(s.warned, w) {
			s.logger.Warn(w, "generation", next.number)
		}
	}
	s.warned = warnings
	return nil
}

func (s *Server) nextGeneration(running *generation) (*generation, error) {
	if s.configFile == "" {
		return nil, ErrNoConfigFile
	}
	cfg, err := LoadConfig(s.configFile)
	if err != nil {
		return nil, err
	}
	if keys := needsRestart(running.cfg, cfg); len(keys) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrRestartNeeded, strings.Join(keys, ", "))
	}
	next, err := loadGeneration(cfg, s.configFile)
	if err != nil {
		return nil, err
	}
	if next.storeURL != running.storeURL {
		return nil, fmt.Errorf("%w: store.url (its value changed)", ErrRestartNeeded)
	}
	if next.token, err = s.tokenEndpoint(next); err != nil {
		return nil, err
	}
	next.number = running.number + 1
	return next, nil
}

// configFiles are the files a reload reads again: the configuration file and every key,
// certificate and secret file it names (the store URL's too, so that changing it is refused
// out loud rather than ignored). Policy files are not among them: the policy engine watches its
// bundles itself.
func configFiles(cfg Config, configFile string) []string {
	var files []string
	add := func(paths ...string) {
		for _, p := range paths {
			if p == "" {
				continue
			}
			if p = filepath.Clean(p); !slices.Contains(files, p) {
				files = append(files, p)
			}
		}
	}
	add(configFile, cfg.Signing.KeyFile, cfg.Signing.CertFile)
	add(cfg.Signing.Publish...)
	for _, s := range cfg.RefreshTokens.Secrets {
		add(s.File)
	}
	for _, l := range []*Listener{&cfg.Listen, cfg.Metrics} {
		if l != nil && l.TLS != nil {
			add(l.TLS.CertFile, l.TLS.KeyFile)
		}
	}
	add(cfg.Store.URL.File)
	return files
}

// fingerprint hashes the names and contents of files; a missing or unreadable file has a
// fingerprint too, so that its return is noticed.
func fingerprint(files []string) string {
	h := sha256.New()
	for _, p := range files {
		io.WriteString(h, p+"\x00")
		f, err := os.Open(p)
		if err != nil {
			io.WriteString(h, "error:"+err.Error()+"\x00")
			continue
		}
		io.Copy(h, f)
		f.Close()
		io.WriteString(h, "\x00")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// certificate hands out the named listener's certificate of the serving generation, so a
// reloaded certificate is used from the next handshake on.
func (s *Server) certificate(listener string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c := s.gen.Load().certs[listener]; c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("%s listener: no certificate", listener)
	}
}

// now is the server's clock.
func (s *Server) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}
