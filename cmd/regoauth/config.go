package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/tokens"
)

// Config is the whole of `regoauth serve --config FILE`. Unknown keys are errors.
type Config struct {
	// Issuer is the "iss" of every token; registries must be configured with the same value.
	Issuer string `yaml:"issuer"`
	// Services are the registry names tokens are issued for; the first is the default.
	Services []string `yaml:"services"`
	TokenTTL Duration `yaml:"token_ttl"`

	Listen Listener `yaml:"listen"`
	// Metrics, when set, serves /metrics on its own listener instead of the main one.
	Metrics *Listener `yaml:"metrics"`

	Signing       Signing       `yaml:"signing"`
	RefreshTokens RefreshTokens `yaml:"refresh_tokens"`
	Store         Store         `yaml:"store"`
	Policy        Policy        `yaml:"policy"`
	Limits        Limits        `yaml:"limits"`

	// TrustedProxies are networks whose X-Forwarded-For header is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	Log            Log      `yaml:"log"`
}

// Listener is an address to serve on, with TLS when configured.
type Listener struct {
	Addr string `yaml:"addr"`
	TLS  *TLS   `yaml:"tls"`
}

// TLS is a certificate and key for a listener.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Signing is the token signing key.
type Signing struct {
	KeyFile string `yaml:"key_file"`
	// CertFile is the certificate chain (leaf first) sent as x5c; registries trust its root.
	CertFile string `yaml:"cert_file"`
	// KID is "thumbprint" (distribution v3) or "libtrust" (distribution v2.8).
	KID string `yaml:"kid"`
	// Publish lists more verification keys for the JWKS (PEM files: certificate, public or
	// private key), e.g. the previous key during a rotation, or the next one before it.
	Publish []string `yaml:"publish"`
}

// RefreshTokens configures the refresh tokens docker login stores as its identity token. Without
// secrets none are issued and clients keep sending the API key.
type RefreshTokens struct {
	// Secrets are HMAC keys of at least 32 bytes, the same on every replica. The first signs,
	// all verify: add a new one first, drop the old one after the TTL.
	Secrets []Secret `yaml:"secrets"`
	TTL     Duration `yaml:"ttl"`
}

// Store locates the key store: bolt://PATH, or a Redis URL (redis://, rediss://,
// redis+sentinel://, redis+cluster://; see the README).
type Store struct {
	URL Secret `yaml:"url"`
	// Cache keeps recently loaded principals in memory (Redis only); every replica evicts an
	// entry as soon as any replica changes what it holds.
	Cache StoreCache `yaml:"cache"`
}

// StoreCache bounds the principal cache. A TTL of 0 turns it off.
type StoreCache struct {
	TTL  Duration `yaml:"ttl"`
	Size int      `yaml:"size"`
}

// maxCacheTTL bounds how long a principal may live in memory even if an invalidation were lost.
const maxCacheTTL = time.Minute

// Policy locates the Rego policy; an empty Dir means the built-in default policy.
type Policy struct {
	Dir           string `yaml:"dir"`
	DecisionQuery string `yaml:"decision"`
	AdminQuery    string `yaml:"admin_decision"`
}

// Limits bound what one client can ask of the server.
type Limits struct {
	MaxScopes      int `yaml:"max_scopes"`
	MaxScopeLength int `yaml:"max_scope_length"`
	// MaxInFlight is how many requests are served at once; more get a 503 at once.
	MaxInFlight int `yaml:"max_in_flight"`
}

// Log sets the log format (json or text) and level (debug, info, warn, error).
type Log struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// Duration is a time.Duration written as "5m" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 5m, 90s)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Secret is a value given inline, or read from an environment variable or a file:
//
//	url: redis://…            # inline
//	url: {env: REDIS_URL}
//	url: {file: /run/secrets/redis-url}
type Secret struct {
	Value string
	Env   string
	File  string
}

// UnmarshalYAML accepts a scalar or a mapping with exactly one of value, env, file.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		s.Value = n.Value
		return nil
	}
	var m struct {
		Value string `yaml:"value"`
		Env   string `yaml:"env"`
		File  string `yaml:"file"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	set := 0
	for _, v := range []string{m.Value, m.Env, m.File} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("line %d: give exactly one of value, env, file", n.Line)
	}
	*s = Secret{Value: m.Value, Env: m.Env, File: m.File}
	return nil
}

// Resolve returns the secret's value.
func (s Secret) Resolve() (string, error) {
	switch {
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", s.Env)
		}
		return v, nil
	case s.File != "":
		raw, err := os.ReadFile(s.File)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(raw)), nil
	}
	return s.Value, nil
}

// defaults returns a configuration with every optional value set.
func defaults() Config {
	return Config{
		Issuer:        "regoauth",
		TokenTTL:      Duration(5 * time.Minute),
		Listen:        Listener{Addr: ":5001"},
		Signing:       Signing{KID: string(tokens.KIDThumbprint)},
		RefreshTokens: RefreshTokens{TTL: Duration(30 * 24 * time.Hour)},
		Store:         Store{Cache: StoreCache{TTL: Duration(5 * time.Second), Size: 10000}},
		Limits:        Limits{MaxScopes: 32, MaxScopeLength: 512, MaxInFlight: 1024},
		Log:           Log{Format: "json", Level: "info"},
	}
}

// LoadConfig reads path strictly over the defaults and validates the result.
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	cfg := defaults()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Issuer == "" {
		add("issuer: required")
	}
	if len(c.Services) == 0 {
		add("services: at least one registry service name is required")
	}
	for i, s := range c.Services {
		if s == "" || strings.ContainsAny(s, " \t\"") {
			add("services[%d]: %q is not a usable service name", i, s)
		}
	}
	if time.Duration(c.TokenTTL) < tokens.MinTTL {
		add("token_ttl: %s is below the minimum of %s", time.Duration(c.TokenTTL), tokens.MinTTL)
	}
	if c.Listen.Addr == "" {
		add("listen.addr: required")
	}
	errs = append(errs, c.Listen.TLS.validate("listen.tls"))
	if c.Metrics != nil {
		if c.Metrics.Addr == "" {
			add("metrics.addr: required when metrics is set")
		}
		errs = append(errs, c.Metrics.TLS.validate("metrics.tls"))
	}
	if c.Signing.KeyFile == "" {
		add("signing.key_file: required")
	}
	if m := tokens.KIDMode(c.Signing.KID); m != tokens.KIDThumbprint && m != tokens.KIDLibtrust {
		add("signing.kid: %q: use thumbprint or libtrust", c.Signing.KID)
	}
	if time.Duration(c.RefreshTokens.TTL) < time.Minute {
		add("refresh_tokens.ttl: %s is below one minute", time.Duration(c.RefreshTokens.TTL))
	}
	for i, s := range c.RefreshTokens.Secrets {
		if s == (Secret{}) {
			add("refresh_tokens.secrets[%d]: empty", i)
		}
	}
	if c.Store.URL == (Secret{}) {
		add("store.url: required (bolt:///path/to/store.db or redis://host:6379/0)")
	} else if c.Store.URL.Value != "" {
		if _, _, err := parseStoreURL(c.Store.URL.Value); err != nil {
			add("store.url: %v", err)
		}
	}
	if ttl := time.Duration(c.Store.Cache.TTL); ttl < 0 || ttl > maxCacheTTL || c.Store.Cache.Size < 0 {
		add("store.cache: ttl must be between 0 (off) and %s, size at least 0", maxCacheTTL)
	}
	if c.Policy.Dir != "" {
		if st, err := os.Stat(c.Policy.Dir); err != nil || !st.IsDir() {
			add("policy.dir: %q is not a readable directory", c.Policy.Dir)
		}
	}
	if c.Limits.MaxScopes < 1 || c.Limits.MaxScopeLength < 64 || c.Limits.MaxInFlight < 1 {
		add("limits: max_scopes >= 1, max_scope_length >= 64 and max_in_flight >= 1 are required")
	}
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			add("trusted_proxies[%d]: %v", i, err)
		}
	}
	if !slices.Contains([]string{"json", "text"}, c.Log.Format) {
		add("log.format: %q: use json or text", c.Log.Format)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level: %q: use debug, info, warn or error", c.Log.Level)
	}
	return errors.Join(errs...)
}

func (t *TLS) validate(field string) error {
	if t == nil {
		return nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return fmt.Errorf("%s: cert_file and key_file are both required", field)
	}
	return nil
}

// parseStoreURL splits a store URL into its kind and location.
func parseStoreURL(u string) (kind, location string, err error) {
	switch {
	case strings.HasPrefix(u, "bolt://"):
		path := strings.TrimPrefix(u, "bolt://")
		if path == "" {
			return "", "", errors.New("bolt:// needs a file path, e.g. bolt:///var/lib/regoauth/store.db")
		}
		return "bolt", path, nil
	case redisstore.IsURL(u):
		if _, err := redisstore.ParseURL(u); err != nil {
			return "", "", err
		}
		return "redis", u, nil
	}
	return "", "", fmt.Errorf("unsupported store URL %q: use bolt://, redis://, rediss://, redis+sentinel:// or redis+cluster://", redact(u))
}

// redact hides passwords in a URL (user info and options) for logs and error messages.
func redact(u string) string { return redisstore.Redact(u) }
