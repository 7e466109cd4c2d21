package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"go4.org/netipx"

	"github.com/regoauth/regoauth/keystore"
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
	Store         StoreConfig   `yaml:"store"`
	Policy        PolicyConfig  `yaml:"policy"`
	Limits        Limits        `yaml:"limits"`
	Shutdown      Shutdown      `yaml:"shutdown"`
	Reload        Reload        `yaml:"reload"`

	// TrustedProxies are networks whose X-Forwarded-For header is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	Log            Log      `yaml:"log"`
	Console        Console  `yaml:"console"`
}

// Console is the web console, served on the main listener.
type Console struct {
	Enabled bool `yaml:"enabled"`
	// Path is where it is served, e.g. /console.
	Path string `yaml:"path"`
	// Registry is the address its docker login commands name (default: the first service).
	Registry   string   `yaml:"registry"`
	SessionTTL Duration `yaml:"session_ttl"`
	// SessionsPerAccount bounds the live sessions of one account: signing in once more ends
	// the one that would end first (0: no bound).
	SessionsPerAccount int `yaml:"sessions_per_account"`
	// SecureCookies marks its cookies Secure on plain HTTP too, for TLS ended by a proxy.
	SecureCookies bool `yaml:"secure_cookies"`
}

// consoleReserved are paths of the main listener the console must not shadow.
var consoleReserved = []string{"/token", "/admin", "/healthz", "/readyz", "/metrics", "/.well-known"}

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

// StoreConfig locates the key store: bolt://PATH, or a Redis URL (redis://, rediss://,
// redis+sentinel://, redis+cluster://; see docs/redis.md).
type StoreConfig struct {
	URL Secret `yaml:"url"`
	// Cache keeps recently loaded principals in memory. With bolt every write empties it; with
	// Redis every replica evicts an entry as soon as any replica changes what it holds.
	Cache StoreCache `yaml:"cache"`
}

// StoreCache bounds the principal cache. A TTL of 0 turns it off.
type StoreCache struct {
	TTL  Duration `yaml:"ttl"`
	Size int      `yaml:"size"`
	// NegativeTTL keeps key ids the store did not have (up to Size of them), so that a client
	// repeating an unknown key costs one lookup per NegativeTTL. Creating a key forgets its id
	// at once, on every replica. 0 turns it off.
	NegativeTTL Duration `yaml:"negative_ttl"`
}

// maxCacheTTL bounds how long a principal may live in memory even if an invalidation were lost.
const maxCacheTTL = time.Minute

// PolicyConfig says where the Rego policy comes from and which decisions the server asks for.
type PolicyConfig struct {
	PolicySource  `yaml:",inline"`
	DecisionQuery string `yaml:"decision"`
	AdminQuery    string `yaml:"admin_decision"`
	// DryRun is a candidate policy evaluated beside the active one: disagreements are logged
	// and counted, tokens are never affected.
	DryRun *PolicySource `yaml:"dry_run"`
	// DecisionCache is how much memory recent decisions of a deterministic policy (one that
	// calls no nondeterministic builtin such as time.now_ns or http.send) may hold, as a size
	// such as 64MiB; every policy or data change empties it. 0 turns it off.
	DecisionCache *ByteSize `yaml:"decision_cache"`
	// Native decides token requests in Go while the active policy is the built-in library
	// alone, configured by data (the same decision, proven equal); false evaluates every one.
	Native *bool `yaml:"native"`
}

// The most the request limits may be raised to: a scope names one repository (255 bytes) with
// its type and actions, real clients send one to three per request, and every request in
// flight holds memory.
const (
	maxScopesBound      = 1024
	maxScopeLengthBound = 4096
	maxInFlightBound    = 100_000
)

// defaultDecisionCache is the decision cache's size when the configuration does not set one.
const defaultDecisionCache = 64 << 20

// evaluateAll is policy.native: false.
func (p PolicyConfig) evaluateAll() bool { return p.Native != nil && !*p.Native }

func (p PolicyConfig) decisionCache() int64 {
	if p.DecisionCache == nil {
		return defaultDecisionCache
	}
	return int64(*p.DecisionCache)
}

// PolicySource is a set of bundles: the built-in library, a local bundle directory or tarball
// (reloaded on change), and the bundles of an OPA configuration (bundle servers, polled).
type PolicySource struct {
	// Builtin activates the library compiled into regoauth (default true). Bundles configure
	// and extend it; set false for a bundle that replaces it.
	Builtin *bool `yaml:"builtin"`
	// Dir is a bundle directory: .rego files, data.json and an optional .manifest.
	Dir string `yaml:"dir"`
	// Bundle is a bundle tarball, as `opa build` writes it.
	Bundle string `yaml:"bundle"`
	// Signing refuses a Dir or Bundle not signed with this key.
	Signing *PolicySigning `yaml:"signing"`
	// OPA is OPA's own configuration: a file name, or the configuration inline.
	OPA OPAConfig `yaml:"opa"`
}

// PolicySigning is the key local bundles are verified with.
type PolicySigning struct {
	// KeyFile holds a PEM public key (RS*, PS*, ES*) or the secret of an HS* algorithm.
	KeyFile   string `yaml:"key_file"`
	Algorithm string `yaml:"algorithm"`
	Scope     string `yaml:"scope"`
}

// OPAConfig is OPA's configuration file (services, bundles, keys, decision_logs, status, ...),
// given by name or inline:
//
//	opa: /etc/regoauth/opa.yaml
//	opa: {decision_logs: {console: true}}
type OPAConfig struct {
	File   string
	Inline []byte
}

// UnmarshalYAML accepts a file name or a mapping.
func (o *OPAConfig) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		o.File = n.Value
		return nil
	case yaml.MappingNode:
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			return err
		}
		raw, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		o.Inline = raw
		return nil
	}
	return fmt.Errorf("line %d: opa is a file name or a mapping of OPA's configuration", n.Line)
}

// IsZero reports whether no OPA configuration was given.
func (o OPAConfig) IsZero() bool { return o.File == "" && len(o.Inline) == 0 }

// builtin reports whether the built-in library is used.
func (p PolicySource) builtin() bool { return p.Builtin == nil || *p.Builtin }

// validate reports every problem of a policy source, field names prefixed with field.
func (p PolicySource) validate(field string) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(field+format, args...)) }
	if !p.builtin() && p.Dir == "" && p.Bundle == "" && p.OPA.IsZero() {
		add(": no policy: keep builtin, or give dir, bundle or opa")
	}
	if p.Dir != "" && p.Bundle != "" {
		add(": give dir or bundle, not both")
	}
	if p.Dir != "" {
		if st, err := os.Stat(p.Dir); err != nil || !st.IsDir() {
			add(".dir: %q is not a readable directory", p.Dir)
		}
	}
	if p.Bundle != "" {
		if st, err := os.Stat(p.Bundle); err != nil || st.IsDir() {
			add(".bundle: %q is not a readable file", p.Bundle)
		}
	}
	if p.Signing != nil {
		if p.Dir == "" && p.Bundle == "" {
			add(".signing: there is no dir or bundle to verify (signing of OPA's bundles is set in its configuration)")
		}
		if _, err := os.ReadFile(p.Signing.KeyFile); err != nil {
			add(".signing.key_file: %v", err)
		}
	}
	if p.OPA.File != "" {
		if _, err := os.ReadFile(p.OPA.File); err != nil {
			add(".opa: %v", err)
		}
	}
	return errs
}

// Limits bound what one client can ask of the server.
type Limits struct {
	MaxScopes      int `yaml:"max_scopes"`
	MaxScopeLength int `yaml:"max_scope_length"`
	// MaxInFlight is how many requests are served at once; more get a 503 at once.
	MaxInFlight int `yaml:"max_in_flight"`
	// DecisionWorkers is how many token requests are decided and signed at once; the others
	// wait their turn in the order they came. 0: one per CPU (GOMAXPROCS).
	DecisionWorkers int `yaml:"decision_workers"`
	// AuthFailures limits failed authentication, on the token endpoint and the admin API.
	AuthFailures AuthFailures `yaml:"auth_failures"`
	// KeysPerAccount bounds the API keys an account holds that are neither revoked nor
	// expired (0: no bound).
	KeysPerAccount int `yaml:"keys_per_account"`
}

// AuthFailures are the failure budgets of package throttle: per client address and per
// (account, address), checked before credentials; per account, which only turns the failures
// of an account under attack into 429s and never refuses a valid key. With a Redis store the
// budgets are shared by every replica; with bolt they live in the process.
type AuthFailures struct {
	// Enabled is true unless set false.
	Enabled        *bool         `yaml:"enabled"`
	Address        FailureBudget `yaml:"address"`
	AccountAddress FailureBudget `yaml:"account_address"`
	Account        FailureBudget `yaml:"account"`
	// Exempt networks have no per-address budget (e.g. a trusted CI farm's NAT).
	Exempt []string `yaml:"exempt"`
	// IPv6Prefix is how many leading bits name an IPv6 client.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// Tracked bounds how many keys a replica remembers (each about 200 bytes).
	Tracked int `yaml:"tracked"`
}

// FailureBudget allows Burst failures at once, then one more every Every. Burst 0 turns it off.
type FailureBudget struct {
	Burst int      `yaml:"burst"`
	Every Duration `yaml:"every"`
}

func (a AuthFailures) enabled() bool { return a.Enabled == nil || *a.Enabled }

// Shutdown is what SIGTERM (or Ctrl-C) does. /readyz answers 503 at once while requests are
// still served for DrainDelay, so that load balancers polling it stop sending new ones; then the
// listeners close, new connections are refused, kept-alive connections are closed once idle,
// and requests in flight finish. GracePeriod bounds all of it, from the signal until the last
// request is answered; flushing key use and decision logs follows. Set it a few seconds below
// the orchestrator's own limit (Kubernetes' terminationGracePeriodSeconds, 30 s by default;
// compose's stop_grace_period, 10 s).
type Shutdown struct {
	GracePeriod Duration `yaml:"grace_period"`
	DrainDelay  Duration `yaml:"drain_delay"`
}

// Reload says whether a change of the configuration file, or of a key, certificate or secret
// file it names, reloads the server the way SIGHUP does.
type Reload struct {
	Watch *bool `yaml:"watch"`
}

// watch reports whether files are watched (the default).
func (r Reload) watch() bool { return r.Watch == nil || *r.Watch }

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

// ByteSize is a size in bytes, written with a unit: 512KiB, 64MiB, 1GiB (or 0).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	factor int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// UnmarshalYAML reads a size with its unit. A bare number other than 0 is refused rather than
// read as bytes: decision_cache once counted entries, and 10000 must not quietly become 10 KB.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v := strings.TrimSpace(n.Value)
	if v == "0" {
		*b = 0
		return nil
	}
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			x, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil || x < 0 || x > (1<<50)/u.factor {
				break
			}
			*b = ByteSize(x * u.factor)
			return nil
		}
	}
	return fmt.Errorf("line %d: %q is not a size: use a whole number with a unit, e.g. 64MiB, 512KiB, 1GiB (or 0)", n.Line, n.Value)
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
	// Decode of a node does not refuse unknown keys as the file's decoder does: {fiel: x}
	// would read as no secret at all, or {file: x, value: y} misspelt as one of them.
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i].Value; k != "value" && k != "env" && k != "file" {
				return fmt.Errorf("line %d: %q: a secret is a value, or a mapping of one of value, env, file", n.Content[i].Line, k)
			}
		}
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

// Defaults returns a configuration with every optional value set.
func Defaults() Config {
	return Config{
		Issuer:        "regoauth",
		TokenTTL:      Duration(5 * time.Minute),
		Listen:        Listener{Addr: ":5001"},
		Signing:       Signing{KID: string(tokens.KIDThumbprint)},
		RefreshTokens: RefreshTokens{TTL: Duration(30 * 24 * time.Hour)},
		Store:         StoreConfig{Cache: StoreCache{TTL: Duration(5 * time.Second), Size: 10000, NegativeTTL: Duration(10 * time.Second)}},
		Limits: Limits{MaxScopes: 32, MaxScopeLength: 512, MaxInFlight: 1024, KeysPerAccount: 100, AuthFailures: AuthFailures{
			// A fleet behind one NAT (a CI farm, a cluster's nodes) must fail more than 200
			// times at once and keep failing more than twice a second to be slowed down.
			Address: FailureBudget{Burst: 200, Every: Duration(500 * time.Millisecond)},
			// One account from one address: a client retrying with a stale key, or a dozen
			// jobs using it, stay within this; a guesser gets six tries a minute.
			AccountAddress: FailureBudget{Burst: 30, Every: Duration(10 * time.Second)},
			Account:        FailureBudget{Burst: 600, Every: Duration(time.Second)},
			IPv6Prefix:     64,
			Tracked:        100_000,
		}},
		Shutdown: Shutdown{GracePeriod: Duration(20 * time.Second)},
		Log:      Log{Format: "json", Level: "info"},
		Console:  Console{Path: "/console", SessionTTL: Duration(12 * time.Hour), SessionsPerAccount: 20},
	}
}

// LoadConfig reads path strictly over the defaults and validates the result.
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	cfg := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%s: the file is empty; a configuration sets at least services, signing.key_file and store.url", path)
	} else if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	// A second document (after ---) would be read by nobody: every setting in it ignored.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", path, err)
		}
		if len(next.Content) > 0 && next.Content[0].ShortTag() != "!!null" {
			return Config{}, fmt.Errorf("%s: line %d: a second YAML document (after a line ---) would be ignored; the settings of one file go in one document", path, next.Content[0].Line)
		}
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
	} else if err := validateAddr(c.Listen.Addr); err != nil {
		add("listen.addr: %v", err)
	}
	errs = append(errs, c.Listen.TLS.validate("listen.tls"))
	if c.Metrics != nil {
		switch {
		case c.Metrics.Addr == "":
			add("metrics.addr: required when metrics is set")
		case validateAddr(c.Metrics.Addr) != nil:
			add("metrics.addr: %v", validateAddr(c.Metrics.Addr))
		case c.Metrics.Addr == c.Listen.Addr && !strings.HasSuffix(c.Metrics.Addr, ":0"): // port 0: each its own
			add("metrics.addr: %q is listen.addr too; give metrics another port, or leave metrics out to serve /metrics on the main listener", c.Metrics.Addr)
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
		if _, _, err := ParseStoreURL(c.Store.URL.Value); err != nil {
			add("store.url: %v", err)
		}
	}
	if ttl := time.Duration(c.Store.Cache.TTL); ttl < 0 || ttl > maxCacheTTL || c.Store.Cache.Size < 0 {
		add("store.cache: ttl must be between 0 (off) and %s, size at least 0", maxCacheTTL)
	}
	if ttl := time.Duration(c.Store.Cache.NegativeTTL); ttl < 0 || ttl > maxCacheTTL {
		add("store.cache.negative_ttl: must be between 0 (off) and %s", maxCacheTTL)
	}
	errs = append(errs, c.Policy.validate("policy")...)
	if n := c.Policy.decisionCache(); n != 0 && n < 1<<20 {
		add("policy.decision_cache: %d bytes is too small to hold decisions; use 0 (off) or at least 1MiB", n)
	}
	if c.Policy.DryRun != nil {
		errs = append(errs, c.Policy.DryRun.validate("policy.dry_run")...)
	}
	if l := c.Limits; l.MaxScopes < 1 || l.MaxScopes > maxScopesBound || l.MaxScopeLength < 64 || l.MaxScopeLength > maxScopeLengthBound ||
		l.MaxInFlight < 1 || l.MaxInFlight > maxInFlightBound {
		add("limits: max_scopes from 1 to %d, max_scope_length from 64 to %d and max_in_flight from 1 to %d are required (limits bound what one request or client may cost)",
			maxScopesBound, maxScopeLengthBound, maxInFlightBound)
	}
	if c.Limits.DecisionWorkers < 0 || c.Limits.DecisionWorkers > c.Limits.MaxInFlight {
		add("limits: decision_workers must be between 0 (one per CPU) and max_in_flight")
	}
	if c.Limits.KeysPerAccount < 0 {
		add("limits: keys_per_account must be 0 (no bound) or more")
	}
	errs = append(errs, c.Limits.AuthFailures.validate("limits.auth_failures")...)
	if g, d := time.Duration(c.Shutdown.GracePeriod), time.Duration(c.Shutdown.DrainDelay); g < time.Second || d < 0 || d >= g {
		add("shutdown: grace_period must be at least 1s, drain_delay 0 or more and shorter than grace_period (got %s and %s)", g, d)
	}
	var proxies []netip.Prefix
	for i, p := range c.TrustedProxies {
		prefix, err := netip.ParsePrefix(p)
		switch {
		case err != nil:
			add("trusted_proxies[%d]: %v", i, err)
		case holdsEveryAddress(prefix):
			add("trusted_proxies[%d]: %q trusts every address, so any client could write its own X-Forwarded-For and pass key network restrictions and per-address limits; list only the proxies' own networks", i, p)
		default:
			if v4, mapped := keystore.IPv4Spelling(prefix); mapped {
				add("trusted_proxies[%d]: %q is written IPv4-mapped, a form no client address is compared in, so it would match nobody; write %s", i, p, v4)
			} else {
				proxies = append(proxies, prefix)
			}
		}
	}
	if all := togetherEveryAddress(proxies); all != nil {
		add("trusted_proxies: %s together trust every address, so any client could write its own X-Forwarded-For and pass key network restrictions and per-address limits; list only the proxies' own networks", quotedList(all))
	}
	if p := c.Console.Path; !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, " ?#{}") ||
		slices.ContainsFunc(consoleReserved, func(r string) bool { return p == r || strings.HasPrefix(p, r+"/") || strings.HasPrefix(r, p+"/") }) {
		add("console.path: %q: use a path like /console, not / nor one of %s", p, strings.Join(consoleReserved, " "))
	}
	if ttl := time.Duration(c.Console.SessionTTL); ttl < 5*time.Minute || ttl > 30*24*time.Hour {
		add("console.session_ttl: %s: use between 5m and 720h", ttl)
	}
	if c.Console.SessionsPerAccount < 0 {
		add("console.sessions_per_account must be 0 (no bound) or more")
	}
	if !slices.Contains([]string{"json", "text"}, c.Log.Format) {
		add("log.format: %q: use json or text", c.Log.Format)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level: %q: use debug, info, warn or error", c.Log.Level)
	}
	return errors.Join(errs...)
}

// validateAddr checks a listener address as net.Listen reads it: [host]:port, the port a
// number from 0 to 65535 (or a service name), so that a mistake is named when the configuration
// is checked rather than when the server starts listening.
func validateAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: use [host]:port, e.g. :5001 or 127.0.0.1:5001", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
			return fmt.Errorf("%q: the port must be a number from 0 to 65535", addr)
		}
	}
	return nil
}

// ipv4Mapped is the first IPv4-mapped IPv6 address: a prefix of 96 bits or fewer that holds it
// holds all of ::ffff:0:0/96, every IPv4 address in its mapped form.
var ipv4Mapped = netip.MustParseAddr("::ffff:0.0.0.0")

// holdsEveryAddress reports whether p holds every IPv4 or every IPv6 address: 0.0.0.0/0, ::/0,
// or a prefix holding all of ::ffff:0:0/96. (Peers are compared unmapped, so the mapped form
// matches no IPv4 peer today; it is refused all the same for what it asks.)
func holdsEveryAddress(p netip.Prefix) bool {
	return p.Bits() == 0 || p.Addr().Is6() && p.Bits() <= 96 && p.Contains(ipv4Mapped)
}

// everyAddress are the networks of every IPv4 and of every IPv6 address.
var everyAddress = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// togetherEveryAddress returns the networks of ps that together hold every IPv4 address, or
// every IPv6 address, each narrower than that (0.0.0.0/1 and 128.0.0.0/1 are 0.0.0.0/0 in all
// but name); nil when they hold neither. (A set holding every IPv6 address holds
// ::ffff:0:0/96, which only a network refused on its own can: holdsEveryAddress, or a mapped
// spelling.)
func togetherEveryAddress(ps []netip.Prefix) []netip.Prefix {
	for _, every := range everyAddress {
		var b netipx.IPSetBuilder
		var family []netip.Prefix
		for _, p := range ps {
			if p.Addr().Is4() == every.Addr().Is4() {
				b.AddPrefix(p)
				family = append(family, p)
			}
		}
		if set, err := b.IPSet(); err == nil && set.ContainsPrefix(every) {
			return family
		}
	}
	return nil
}

// quotedList is networks quoted, comma separated.
func quotedList(ps []netip.Prefix) string {
	quoted := make([]string, len(ps))
	for i, p := range ps {
		quoted[i] = strconv.Quote(p.String())
	}
	return strings.Join(quoted, ", ")
}

func (a AuthFailures) validate(field string) []error {
	var errs []error
	for name, b := range map[string]FailureBudget{"address": a.Address, "account_address": a.AccountAddress, "account": a.Account} {
		if b.Burst < 0 || b.Burst > 0 && time.Duration(b.Every) <= 0 {
			errs = append(errs, fmt.Errorf("%s.%s: burst must be 0 (off) or more, and every a positive duration when burst is set", field, name))
		}
	}
	var exempt []netip.Prefix
	for i, p := range a.Exempt {
		prefix, err := netip.ParsePrefix(p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s.exempt[%d]: %v", field, i, err))
		case holdsEveryAddress(prefix):
			errs = append(errs, fmt.Errorf("%s.exempt[%d]: %q exempts every address; to turn the per-address budget off say so, with %s.address.burst: 0", field, i, p, field))
		default:
			if v4, mapped := keystore.IPv4Spelling(prefix); mapped {
				errs = append(errs, fmt.Errorf("%s.exempt[%d]: %q is written IPv4-mapped, a form no client address is compared in, so it would match nobody; write %s", field, i, p, v4))
			} else {
				exempt = append(exempt, prefix)
			}
		}
	}
	if all := togetherEveryAddress(exempt); all != nil {
		errs = append(errs, fmt.Errorf("%s.exempt: %s together exempt every address; to turn the per-address budget off say so, with %s.address.burst: 0", field, quotedList(all), field))
	}
	if a.IPv6Prefix < 32 || a.IPv6Prefix > 128 {
		errs = append(errs, fmt.Errorf("%s.ipv6_prefix: %d is not between 32 and 128", field, a.IPv6Prefix))
	}
	if a.Tracked < 1000 {
		errs = append(errs, fmt.Errorf("%s.tracked: at least 1000", field))
	}
	slices.SortFunc(errs, func(x, y error) int { return strings.Compare(x.Error(), y.Error()) })
	return errs
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
