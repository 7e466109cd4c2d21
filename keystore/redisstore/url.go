package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The URL forms, one per deployment:
//
//	redis://[[USER]:PASSWORD@]HOST[:6379][/DB][?OPTIONS]                    standalone
//	rediss://…                                                              standalone over TLS
//	redis+sentinel://[[USER]:PASSWORD@]HOST[:26379][,HOST[:26379]…]/MASTER[/DB][?OPTIONS]
//	rediss+sentinel://…                                                     Sentinel, TLS
//	redis+cluster://[[USER]:PASSWORD@]HOST[:6379][,HOST[:6379]…][?OPTIONS]  Cluster (seed nodes)
//	rediss+cluster://…                                                      Cluster, TLS
//
// The user and password are those of the Redis servers holding the data. Sentinels that need a
// password of their own take sentinel_username and sentinel_password options. Every other
// option is go-redis' own URL option (dial_timeout, read_timeout, pool_size, …), plus prefix,
// the namespace of this store's keys (default "regoauth"), and confirm_replicas and
// confirm_timeout, which make every change wait for that many replicas (see Confirm).

// Mode is the kind of deployment a URL names.
type Mode string

const (
	Standalone Mode = "standalone"
	Sentinel   Mode = "sentinel"
	Cluster    Mode = "cluster"
)

// DefaultPrefix namespaces the store's keys when the URL does not say otherwise.
const DefaultPrefix = "regoauth"

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Target is a parsed store URL: which client to build, and the key namespace.
type Target struct {
	Mode     Mode
	Prefix   string
	Confirm  Confirm
	simple   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// IsURL reports whether u has one of the Redis store schemes.
func IsURL(u string) bool {
	scheme, _, ok := strings.Cut(u, "://")
	if !ok {
		return false
	}
	switch scheme {
	case "redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster":
		return true
	}
	return false
}

// ParseURL reads a store URL. Its errors never contain the password.
func ParseURL(raw string) (*Target, error) {
	t, err := parseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("store URL %s: %w", Redact(raw), scrub(err, raw))
	}
	return t, nil
}

func parseURL(raw string) (*Target, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !IsURL(raw) {
		return nil, errors.New("use redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://")
	}
	tlsScheme := "redis"
	if strings.HasPrefix(scheme, "rediss") {
		tlsScheme = "rediss"
	}
	rest, query, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	t := &Target{Prefix: DefaultPrefix}
	if q.Has("prefix") {
		t.Prefix = q.Get("prefix")
		q.Del("prefix")
		if !prefixPattern.MatchString(t.Prefix) {
			return nil, errors.New("prefix: use 1-64 of A-Z a-z 0-9 . _ -")
		}
	}
	if t.Confirm, err = confirmOptions(q); err != nil {
		return nil, err
	}
	userinfo, hostpath := "", rest
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo, hostpath = rest[:at+1], rest[at+1:]
	}
	hostlist, path, _ := strings.Cut(hostpath, "/")
	if hostlist == "" {
		return nil, errors.New("no host")
	}
	hosts := strings.Split(hostlist, ",")

	switch strings.TrimPrefix(strings.TrimPrefix(scheme, tlsScheme), "+") {
	case "":
		if len(hosts) != 1 {
			return nil, errors.New("a standalone URL names one host; use redis+cluster:// or redis+sentinel:// for several")
		}
		t.Mode = Standalone
		t.simple, err = redis.ParseURL(tlsScheme + "://" + userinfo + hostpath + encode(q))
		if err != nil {
			return nil, err
		}
	case "sentinel":
		t.Mode = Sentinel
		master, db, _ := strings.Cut(path, "/")
		if master == "" {
			return nil, errors.New("name the monitored master after the hosts, e.g. redis+sentinel://host:26379/mymaster")
		}
		sentinelUser, sentinelPass := q.Get("sentinel_username"), q.Get("sentinel_password")
		q.Del("sentinel_username")
		q.Del("sentinel_password")
		addrs, err := withPorts(hosts, "26379")
		if err != nil {
			return nil, err
		}
		q.Set("master_name", master)
		for _, a := range addrs[1:] {
			q.Add("addr", a)
		}
		// go-redis reads the URL's user info as the sentinels' credentials; here it is the data
		// servers', as in the other forms, so it is moved after parsing.
		t.failover, err = redis.ParseFailoverURL(tlsScheme + "://" + addrs[0] + "/" + db + encode(q))
		if err != nil {
			return nil, err
		}
		t.failover.Username, t.failover.Password = credentials(userinfo)
		t.failover.SentinelUsername, t.failover.SentinelPassword = sentinelUser, sentinelPass
	case "cluster":
		t.Mode = Cluster
		if path != "" {
			return nil, errors.New("a cluster has no database number; remove the path")
		}
		addrs, err := withPorts(hosts, "6379")
		if err != nil {
			return nil, err
		}
		for _, a := range addrs[1:] {
			q.Add("addr", a)
		}
		t.cluster, err = redis.ParseClusterURL(tlsScheme + "://" + userinfo + addrs[0] + encode(q))
		if err != nil {
			return nil, err
		}
	}
	t.applyDefaults(tlsScheme == "rediss")
	return t, nil
}

// confirmOptions reads and removes confirm_replicas and confirm_timeout.
func confirmOptions(q url.Values) (Confirm, error) {
	c := Confirm{Timeout: DefaultConfirmTimeout}
	if !q.Has("confirm_replicas") {
		if q.Has("confirm_timeout") {
			return Confirm{}, errors.New("confirm_timeout: set confirm_replicas too, the number of replicas to wait for")
		}
		return Confirm{}, nil
	}
	n, err := strconv.Atoi(q.Get("confirm_replicas"))
	if err != nil {
		return Confirm{}, fmt.Errorf("confirm_replicas: %q is not a number of replicas", q.Get("confirm_replicas"))
	}
	c.Replicas = n
	if q.Has("confirm_timeout") {
		if c.Timeout, err = time.ParseDuration(q.Get("confirm_timeout")); err != nil {
			return Confirm{}, fmt.Errorf("confirm_timeout: %q is not a duration such as 500ms or 2s", q.Get("confirm_timeout"))
		}
	}
	q.Del("confirm_replicas")
	q.Del("confirm_timeout")
	if err := c.check(); err != nil {
		return Confirm{}, err
	}
	if c.Replicas == 0 {
		return Confirm{}, nil
	}
	return c, nil
}

// withPorts checks host[:port] entries and adds the default port where missing.
func withPorts(hosts []string, port string) ([]string, error) {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		if h == "" {
			return nil, errors.New("empty host in the host list")
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, port)
		}
		out[i] = h
	}
	return out, nil
}

func credentials(userinfo string) (user, pass string) {
	u, err := url.Parse("redis://" + userinfo + "x")
	if err != nil || u.User == nil {
		return "", ""
	}
	pass, _ = u.User.Password()
	return u.User.Username(), pass
}

func encode(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// Fail-closed defaults: a token request waits at most a few seconds for an unreachable Redis
// before it is refused, instead of go-redis' longer retry budget. URL options override them.
const (
	defaultDialTimeout = 2 * time.Second
	defaultIOTimeout   = 2 * time.Second
	defaultMaxRetries  = 1
	defaultDialRetries = 1
)

func (t *Target) applyDefaults(useTLS bool) {
	set := func(dial, read, write *time.Duration, retries, dialRetries *int, ctxTimeout *bool, tlsConfig **tls.Config) {
		if *dial == 0 {
			*dial = defaultDialTimeout
		}
		if *read == 0 {
			*read = defaultIOTimeout
		}
		if *write == 0 {
			*write = defaultIOTimeout
		}
		if *retries == 0 {
			*retries = defaultMaxRetries
		}
		if *dialRetries == 0 {
			*dialRetries = defaultDialRetries
		}
		*ctxTimeout = true
		if useTLS && *tlsConfig != nil && (*tlsConfig).MinVersion == 0 {
			(*tlsConfig).MinVersion = tls.VersionTLS12
		}
	}
	switch t.Mode {
	case Standalone:
		o := t.simple
		set(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled, &o.TLSConfig)
	case Sentinel:
		o := t.failover
		set(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled, &o.TLSConfig)
	case Cluster:
		o := t.cluster
		set(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled, &o.TLSConfig)
	}
}

// client builds the go-redis client for the target.
func (t *Target) client() redis.UniversalClient {
	switch t.Mode {
	case Sentinel:
		return redis.NewFailoverClient(t.failover)
	case Cluster:
		return redis.NewClusterClient(t.cluster)
	default:
		return redis.NewClient(t.simple)
	}
}

// Redact hides the password of a store URL, in the user info and in options, for logs and
// errors.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, _, _ := strings.Cut(rest[:at], ":")
		hidden := "…@"
		if user != "" {
			hidden = user + ":…@"
		}
		rest = hidden + rest[at+1:]
	}
	out := scheme + "://" + rest
	if hasQuery {
		parts := strings.Split(query, "&")
		for i, p := range parts {
			if k, _, _ := strings.Cut(p, "="); strings.Contains(strings.ToLower(k), "password") {
				parts[i] = k + "=…"
			}
		}
		out += "?" + strings.Join(parts, "&")
	}
	return out
}

// HasPassword reports whether a store URL holds a password, in its user info or in an option
// (sentinel_password), as a configuration file that others can read must not.
func HasPassword(raw string) bool {
	return slices.ContainsFunc(secrets(raw), func(s string) bool { return s != "" })
}

// scrub removes every password of raw from an error text, in case a parser quoted it.
func scrub(err error, raw string) error {
	msg := err.Error()
	for _, secret := range secrets(raw) {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "…")
		}
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

func secrets(raw string) []string {
	_, rest, _ := strings.Cut(raw, "://")
	rest, query, _ := strings.Cut(rest, "?")
	var out []string
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if _, pass, ok := strings.Cut(rest[:at], ":"); ok {
			out = append(out, pass)
			if dec, err := url.PathUnescape(pass); err == nil {
				out = append(out, dec)
			}
		}
	}
	for p := range strings.SplitSeq(query, "&") {
		if k, v, _ := strings.Cut(p, "="); strings.Contains(strings.ToLower(k), "password") {
			out = append(out, v)
			if dec, err := url.QueryUnescape(v); err == nil {
				out = append(out, dec)
			}
		}
	}
	return out
}
