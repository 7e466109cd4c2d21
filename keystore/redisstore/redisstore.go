// Package redisstore is the keystore backend for several token-server replicas: accounts, API
// keys, grants and ownership in Redis (standalone, Sentinel or Cluster, through go-redis'
// universal client). A token request costs one round trip (a Lua script reads the key, its
// account, its grants and its repositories); every write is one script, so it is atomic and
// publishes its invalidation in the same step; an optional in-process cache serves repeated
// lookups only while the invalidation channel is proven alive. Unreachable Redis is
// keystore.ErrUnavailable, so callers fail closed. It knows the keystore contract and nothing
// else of regoauth.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/internal/redissub"
	"github.com/regoauth/regoauth/keystore"
)

// Options configure a Store.
type Options struct {
	// CacheTTL bounds how long a loaded principal may be served from memory; 0 disables the
	// cache. Invalidation messages evict entries at once on every replica.
	CacheTTL time.Duration
	// CacheSize bounds how many principals are kept (default 10,000 when the cache is on), and
	// as many unknown key ids.
	CacheSize int
	// NegativeTTL bounds how long a key id Redis did not have is answered "not found" from
	// memory; 0 disables it. Creating a key evicts its id on every replica at once.
	NegativeTTL time.Duration
	Logger      *slog.Logger
	// Registerer receives the store's metrics (namespace regoauth, subsystem store).
	Registerer prometheus.Registerer
	// Now is the clock of the cache's liveness check and of grant ends (default time.Now).
	Now func() time.Time
	// Confirm makes changes wait for replicas; Open takes it from the URL's confirm_replicas
	// and confirm_timeout options.
	Confirm Confirm
	// RecordsCheck, when set, is how often the store checks that its records are still in
	// Redis (see records.go) and, every 30 checks, that Redis may not evict them; a serving
	// store sets DefaultRecordsCheck.
	RecordsCheck time.Duration
}

// Store is a keystore.Store in Redis.
type Store struct {
	client  redis.UniversalClient
	mode    Mode
	prefix  string // "{NAME}:": one hash tag, so every key is in one Cluster slot
	channel string
	logger  *slog.Logger
	metrics *metrics
	health  health
	// live is the state of the invalidation channel; the cache serves only while it is alive.
	live  *redissub.Liveness
	cache *keystore.PrincipalCache // nil when off
	now   func() time.Time
	// reloadTopology asks a Cluster client to read the slot map again (nil otherwise).
	reloadTopology func()
	confirm        Confirm

	stop context.CancelFunc
	done sync.WaitGroup
}

var _ keystore.Store = (*Store)(nil)

// Open connects to the store at a Redis URL (see ParseURL for the forms). It does not wait for
// Redis to answer: until it does, operations fail with keystore.ErrUnavailable.
func Open(rawURL string, opts Options) (*Store, error) {
	t, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if !opts.Confirm.on() {
		opts.Confirm = t.Confirm
	}
	return New(t.client(), t.Mode, t.Prefix, opts), nil
}

// New wraps an existing client. prefix is the key namespace without the hash tag braces.
func New(client redis.UniversalClient, mode Mode, prefix string, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		client:  client,
		mode:    mode,
		prefix:  "{" + prefix + "}:",
		logger:  opts.Logger,
		metrics: newMetrics(opts.Registerer),
		now:     opts.Now,
		confirm: opts.Confirm,
	}
	if s.confirm.on() && s.confirm.Timeout <= 0 {
		s.confirm.Timeout = DefaultConfirmTimeout
	}
	s.channel = s.prefix + "invalidate"
	s.health.init(s.logger, s.metrics)
	if cc, ok := client.(*redis.ClusterClient); ok {
		// go-redis reads a Cluster's slot map again on a MOVED reply and once a minute, not
		// when a primary stops answering: without this, a failover the cluster completes in
		// seconds would fail every request for up to a minute.
		s.reloadTopology = func() { cc.ReloadState(context.Background()) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	if opts.RecordsCheck > 0 {
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			s.watchRecords(ctx, opts.RecordsCheck)
		}()
	}
	if opts.CacheTTL > 0 || opts.NegativeTTL > 0 {
		s.live = &redissub.Liveness{Now: opts.Now, Probe: func(ctx context.Context, channel, payload string) error {
			return redissub.Publish(ctx, client, channel, payload)
		}}
		s.cache = keystore.NewPrincipalCache(keystore.CacheOptions{
			TTL: opts.CacheTTL, Size: opts.CacheSize, NegativeTTL: opts.NegativeTTL, Usable: s.live.Alive, Now: opts.Now,
			Observe: func(outcome string) { s.metrics.cache.WithLabelValues(outcome).Inc() },
		})
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			s.watch(ctx)
		}()
	}
	return s
}

// Close stops the invalidation listener and closes the connections.
func (s *Store) Close() error {
	s.stop()
	s.done.Wait()
	return s.client.Close()
}

// Client is the store's Redis client, for what shares the store's Redis (the failure budgets of
// package throttle). They must keep to their own keys under KeyPrefix.
func (s *Store) Client() redis.UniversalClient { return s.client }

// KeyPrefix starts every key of the store ("{NAME}:", one hash tag under Cluster).
func (s *Store) KeyPrefix() string { return s.prefix }

// Ping reports whether Redis answers; /readyz uses it.
func (s *Store) Ping(ctx context.Context) error {
	return s.fail("ping", s.client.Ping(ctx).Err(), nil)
}

// Key names. Each kind has a fixed prefix and one variable part at the end, so names with ':'
// (repositories like host:5000/a, subjects like account:alice) cannot collide.
func (s *Store) accountKey(name string) string   { return s.prefix + "a:" + name }
func (s *Store) accountsKey() string             { return s.prefix + "accounts" }
func (s *Store) keyKey(id string) string         { return s.prefix + "k:" + id }
func (s *Store) keysOfKey(account string) string { return s.prefix + "ka:" + account }
func (s *Store) allKeysKey() string              { return s.prefix + "keys" }
func (s *Store) grantsKey(sub string) string     { return s.prefix + "g:" + sub }
func (s *Store) subjectsKey() string             { return s.prefix + "subjects" }
func (s *Store) grantsOnKey(repo string) string  { return s.prefix + "gr:" + repo }
func (s *Store) ownerKey(repo string) string     { return s.prefix + "o:" + repo }
func (s *Store) ownedByKey(owner string) string  { return s.prefix + "oa:" + owner }
func (s *Store) reposKey() string                { return s.prefix + "repos" }

// Invalidation messages: what changed, so that replicas evict only what it affects. "*" (or
// anything else) empties the cache.
func keyChanged(id string) string       { return "k " + id }
func accountChanged(name string) string { return "a " + name }
func subjectChanged(sub keystore.Subject) string {
	if sub.Kind == keystore.SubjectGroup {
		return "g " + sub.Name
	}
	return accountChanged(sub.Name)
}

// changed evicts what an invalidation message names: from this replica's cache at once after
// its own writes (whatever their outcome: a write that timed out may still have happened), and
// on every replica when the message arrives.
func (s *Store) changed(msg string) {
	kind, name, _ := strings.Cut(msg, " ")
	switch kind {
	case "k":
		s.cache.EvictKey(name)
	case "a":
		s.cache.EvictAccount(name)
	case "g":
		s.cache.EvictGroup(name)
	default:
		s.cache.Purge()
	}
}

// fail maps a Redis error to the keystore's sentinels. what names the records a script's
// NOTFOUND/EXISTS reply may refer to, e.g. {"account": "alice"}.
func (s *Store) fail(op string, err error, what map[string]string) error {
	if err == nil {
		s.health.up()
		return nil
	}
	if errors.Is(err, keystore.ErrUnconfirmed) {
		s.health.up() // the primary answered
		return fmt.Errorf("redis %s: %w", op, err)
	}
	for _, m := range []struct {
		prefix   string
		sentinel error
	}{{"NOTFOUND ", keystore.ErrNotFound}, {"EXISTS ", keystore.ErrExists}, {"CONFLICT ", keystore.ErrConflict}, {"LIMIT ", keystore.ErrLimit}} {
		if msg := err.Error(); strings.HasPrefix(msg, m.prefix) {
			s.health.up()
			kind := strings.TrimPrefix(msg, m.prefix)
			if msg == "CONFLICT owner" {
				return keystore.OwnerChanged(what[kind])
			}
			return fmt.Errorf("%s %q: %w", kind, what[kind], m.sentinel)
		}
	}
	if errors.Is(err, context.Canceled) {
		// The caller hung up: that tells nothing of Redis, so it is not reported down (a client
		// hanging up on purpose must not make regoauth_store_up flap or an alert fire).
		return fmt.Errorf("redis %s: %w: %v", op, keystore.ErrUnavailable, err)
	}
	if unavailable(err) {
		if s.reloadTopology != nil {
			s.reloadTopology() // one at a time, however many requests fail
		}
		s.health.down(op, err)
		return fmt.Errorf("redis %s: %w: %v", op, keystore.ErrUnavailable, err)
	}
	s.health.up()
	return fmt.Errorf("redis %s: %w", op, err)
}

// unavailable tells connection trouble, transient server states (a replica being promoted, a
// loading dataset, a cluster reshaping) and refused credentials — all of which make the store
// unusable, so callers fail closed — from errors in the request itself.
func unavailable(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true // network errors, timeouts, a closed pool, a cancelled request
	}
	return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) || redis.IsClusterDownError(err) ||
		redis.IsTryAgainError(err) || redis.IsMasterDownError(err) || redis.IsMaxClientsError(err) ||
		redis.IsNoReplicasError(err) || redis.HasErrorPrefix(err, "BUSY") ||
		redis.IsAuthError(err) || redis.IsPermissionError(err) || moved(err)
}

// moved tells a Cluster node's MOVED or ASK: the command ran nowhere. The cluster client follows
// these itself; a confirmed change, on one connection to the primary the slot map named, sees
// one after the slot moved (an operator's failover), and fail has the map read again.
func moved(err error) bool {
	_, m := redis.IsMovedError(err)
	_, a := redis.IsAskError(err)
	return m || a
}

// LoadPrincipal reads the key, its account, their grants and owned repositories in one script,
// and keeps the grants that have not ended.
func (s *Store) LoadPrincipal(ctx context.Context, keyID string) (keystore.Principal, error) {
	return s.cache.Load(keyID, func() (keystore.Principal, error) {
		now := s.now()
		raw, err := loadPrincipal.Run(ctx, s.client, []string{s.keyKey(keyID)}, s.prefix).Slice()
		if errors.Is(err, redis.Nil) {
			s.health.up()
			return keystore.Principal{}, fmt.Errorf("key %q: %w", keyID, keystore.ErrNotFound)
		}
		if err != nil {
			return keystore.Principal{}, s.fail("load principal", err, nil)
		}
		s.health.up()
		p, err := decodePrincipal(keyID, raw)
		p.Grants = keystore.LiveGrants(p.Grants, now)
		return p, err
	})
}

func decodePrincipal(keyID string, raw []any) (keystore.Principal, error) {
	var p keystore.Principal
	var err error
	if p.Key, err = decodeKey(keyID, fields(raw[0])); err != nil {
		return p, err
	}
	if len(raw) == 1 {
		return p, fmt.Errorf("account %q: %w", p.Key.Account, keystore.ErrNotFound)
	}
	if p.Account, err = decodeAccount(p.Key.Account, fields(raw[1])); err != nil {
		return p, err
	}
	for _, o := range raw[2].([]any) {
		p.Owned = append(p.Owned, o.(string))
	}
	slices.Sort(p.Owned)
	p.Grants = append(p.Grants, decodeGrants(keystore.Subject{Kind: keystore.SubjectAccount, Name: p.Account.Name}, fields(raw[3]))...)
	for i := 4; i+1 < len(raw); i += 2 {
		sub := keystore.Subject{Kind: keystore.SubjectGroup, Name: raw[i].(string)}
		p.Grants = append(p.Grants, decodeGrants(sub, fields(raw[i+1]))...)
	}
	return p, nil
}

// fields turns a flat HGETALL reply from a script into a map.
func fields(v any) map[string]string {
	list, _ := v.([]any)
	m := make(map[string]string, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		k, _ := list[i].(string)
		val, _ := list[i+1].(string)
		m[k] = val
	}
	return m
}

// grantValue is a grant row's field value: "pull,push", or "pull,push|END" with END the end in
// Unix nanoseconds (the scripts compare ends as strings, so one instant has one spelling).
func grantValue(actions []string, end time.Time) string {
	v := strings.Join(actions, ",")
	if !end.IsZero() {
		v += "|" + grantEnd(end)
	}
	return v
}

func grantEnd(end time.Time) string {
	if end.IsZero() {
		return ""
	}
	return strconv.FormatInt(end.UnixNano(), 10)
}

func parseGrantValue(sub keystore.Subject, repo, v string) keystore.Grant {
	actions, end, _ := strings.Cut(v, "|")
	g := keystore.Grant{Subject: sub, Repository: repo, Actions: strings.Split(actions, ",")}
	if n, err := strconv.ParseInt(end, 10, 64); err == nil {
		g.Expires = time.Unix(0, n).UTC()
	}
	return g
}

func decodeGrants(sub keystore.Subject, rows map[string]string) []keystore.Grant {
	out := make([]keystore.Grant, 0, len(rows))
	for repo, v := range rows {
		out = append(out, parseGrantValue(sub, repo, v))
	}
	slices.SortFunc(out, func(a, b keystore.Grant) int { return strings.Compare(a.Repository, b.Repository) })
	return out
}

// An account is a hash: the record as created ("json") and the fields UpdateAccount replaces.
func encodeAccount(a keystore.Account) (rec, groups, roles, disabled string, err error) {
	created := a
	created.Groups, created.Roles, created.Disabled = nil, nil, false
	b, err := json.Marshal(created)
	if err != nil {
		return "", "", "", "", err
	}
	g, _ := json.Marshal(nonNil(a.Groups))
	r, _ := json.Marshal(nonNil(a.Roles))
	return string(b), string(g), string(r), flag(a.Disabled), nil
}

func decodeAccount(name string, f map[string]string) (keystore.Account, error) {
	var a keystore.Account
	if len(f) == 0 {
		return a, fmt.Errorf("account %q: %w", name, keystore.ErrNotFound)
	}
	if err := json.Unmarshal([]byte(f["json"]), &a); err != nil {
		return a, fmt.Errorf("decoding account %q: %w", name, err)
	}
	if err := errors.Join(json.Unmarshal([]byte(f["groups"]), &a.Groups), json.Unmarshal([]byte(f["roles"]), &a.Roles)); err != nil {
		return a, fmt.Errorf("decoding account %q: %w", name, err)
	}
	a.Groups, a.Roles, a.Disabled = nilIfEmpty(a.Groups), nilIfEmpty(a.Roles), f["disabled"] == "1"
	return a, nil
}

// A key is a hash: the record as created ("json", hash included), its account, and the fields
// that change later (revoked, last_used).
func encodeKey(k keystore.Key) (string, error) {
	created := k
	created.Revoked, created.LastUsed = false, time.Time{}
	b, err := json.Marshal(created)
	return string(b), err
}

func decodeKey(id string, f map[string]string) (keystore.Key, error) {
	var k keystore.Key
	if len(f) == 0 {
		return k, fmt.Errorf("key %q: %w", id, keystore.ErrNotFound)
	}
	if err := json.Unmarshal([]byte(f["json"]), &k); err != nil {
		return k, fmt.Errorf("decoding key %q: %w", id, err)
	}
	k.Revoked = f["revoked"] == "1"
	if lu := f["last_used"]; lu != "" {
		n, err := strconv.ParseInt(lu, 10, 64)
		if err != nil {
			return k, fmt.Errorf("decoding key %q: last_used: %w", id, err)
		}
		k.LastUsed = time.Unix(0, n).UTC()
	}
	return k, nil
}

// nanos renders a time so that string order is time order (for the touch script).
func nanos(t time.Time) string { return fmt.Sprintf("%020d", t.UnixNano()) }

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// CreateAccount stores a new account.
func (s *Store) CreateAccount(ctx context.Context, a keystore.Account) error {
	return s.write(ctx, keystore.Record{Account: &a})
}

// GetAccount reads one account.
func (s *Store) GetAccount(ctx context.Context, name string) (keystore.Account, error) {
	f, err := s.client.HGetAll(ctx, s.accountKey(name)).Result()
	if err != nil {
		return keystore.Account{}, s.fail("get account", err, nil)
	}
	s.health.up()
	return decodeAccount(name, f)
}

// ListAccounts lists every account by name.
func (s *Store) ListAccounts(ctx context.Context) ([]keystore.Account, error) {
	names, err := s.client.ZRange(ctx, s.accountsKey(), 0, -1).Result()
	if err != nil {
		return nil, s.fail("list accounts", err, nil)
	}
	out := make([]keystore.Account, 0, len(names))
	err = s.batchHGetAll(ctx, "list accounts", names, s.accountKey, func(name string, f map[string]string) error {
		a, err := decodeAccount(name, f)
		if errors.Is(err, keystore.ErrNotFound) {
			return nil
		}
		out = append(out, a)
		return err
	})
	return out, err
}

// PageAccounts reads only the page's accounts when there is no filter; with one it reads every
// account's hash in pipelined batches (a filter may match a group or a role).
func (s *Store) PageAccounts(ctx context.Context, q keystore.AccountQuery) (keystore.AccountPage, error) {
	names, err := s.client.ZRange(ctx, s.accountsKey(), 0, -1).Result()
	if err != nil {
		return keystore.AccountPage{}, s.fail("page accounts", err, nil)
	}
	page := keystore.AccountPage{}
	if q.Contains == "" {
		page.Total = len(names)
		names = names[min(q.Offset, len(names)):min(q.Offset+q.Limit, len(names))]
		q.Offset, q.Limit = 0, len(names)
	}
	total := 0
	err = s.batchHGetAll(ctx, "page accounts", names, s.accountKey, func(name string, f map[string]string) error {
		a, err := decodeAccount(name, f)
		if errors.Is(err, keystore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !q.Matches(a) {
			return nil
		}
		if total >= q.Offset && len(page.Accounts) < q.Limit {
			page.Accounts = append(page.Accounts, a)
		}
		total++
		return nil
	})
	if q.Contains != "" {
		page.Total = total
	}
	return page, err
}

// batchSize bounds one pipeline of a listing, so a million records never sit in one reply.
const batchSize = 1000

// batchHGetAll reads the hashes of ids in pipelined batches, in order.
func (s *Store) batchHGetAll(ctx context.Context, op string, ids []string, key func(string) string, fn func(id string, f map[string]string) error) error {
	for start := 0; start < len(ids); start += batchSize {
		chunk := ids[start:min(start+batchSize, len(ids))]
		pipe := s.client.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(chunk))
		for i, id := range chunk {
			cmds[i] = pipe.HGetAll(ctx, key(id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return s.fail(op, err, nil)
		}
		for i, id := range chunk {
			if err := fn(id, cmds[i].Val()); err != nil {
				return err
			}
		}
	}
	s.health.up()
	return nil
}

// UpdateAccount replaces groups, roles and the disabled flag of an existing account.
func (s *Store) UpdateAccount(ctx context.Context, a keystore.Account) error {
	if err := a.Validate(); err != nil {
		return err
	}
	_, groups, roles, disabled, err := encodeAccount(a)
	if err != nil {
		return err
	}
	err = s.exec(ctx, func(c writer) error {
		return updateAccount.Run(ctx, c, []string{s.accountKey(a.Name)}, s.channel, accountChanged(a.Name), groups, roles, disabled).Err()
	})
	s.changed(accountChanged(a.Name))
	return s.fail("update account", err, map[string]string{"account": a.Name})
}

// ChangeAccount applies ch to an existing account in one script, which returns the account as
// changed.
func (s *Store) ChangeAccount(ctx context.Context, name string, ch keystore.AccountChange) (keystore.Account, error) {
	if err := ch.Validate(name); err != nil {
		return keystore.Account{}, err
	}
	// As encodeAccount writes them; "" leaves a field.
	var groups, roles, disabled string
	if ch.Groups != nil {
		b, _ := json.Marshal(nonNil(*ch.Groups))
		groups = string(b)
	}
	if ch.Roles != nil {
		b, _ := json.Marshal(nonNil(*ch.Roles))
		roles = string(b)
	}
	if ch.Disabled != nil {
		disabled = flag(*ch.Disabled)
	}
	var fields []string
	err := s.exec(ctx, func(c writer) (err error) {
		fields, err = changeAccount.Run(ctx, c, []string{s.accountKey(name)}, s.channel, accountChanged(name), groups, roles, disabled).StringSlice()
		return err
	})
	s.changed(accountChanged(name))
	if err != nil {
		return keystore.Account{}, s.fail("change account", err, map[string]string{"account": name})
	}
	f := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		f[fields[i]] = fields[i+1]
	}
	return decodeAccount(name, f)
}

// CreateKey stores a new key for an existing account, as given: an imported key keeps its
// revoked flag and last-used time.
func (s *Store) CreateKey(ctx context.Context, k keystore.Key) error {
	return s.write(ctx, keystore.Record{Key: &k})
}

// CreateKeyWithin stores a new key, refused when its account already holds maxLive keys live
// at the store's clock (no bound when maxLive <= 0). The account's keys are read first, to
// judge their expiry here; the script then counts, in the step that writes the key, every key
// of the account but those judged dead, so keys created meanwhile count. (One revoked
// meanwhile still counts: a creation racing a revocation may be refused, never one too many
// let through.)
func (s *Store) CreateKeyWithin(ctx context.Context, k keystore.Key, maxLive int) error {
	if maxLive <= 0 {
		return s.CreateKey(ctx, k)
	}
	r := keystore.Record{Key: &k}
	if err := r.Validate(); err != nil {
		return err
	}
	w, err := s.recordWrite(r)
	if err != nil {
		return err
	}
	ids, err := s.names(ctx, w.op, s.allKeysKey(), k.Account, s.keysOfKey)
	if err != nil {
		return err
	}
	now := s.now()
	w.args = append(w.args, maxLive)
	err = s.batchHGetAll(ctx, w.op, ids, s.keyKey, func(id string, f map[string]string) error {
		held, err := decodeKey(id, f)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			return nil
		case err != nil:
			return err
		case !held.Live(now):
			w.args = append(w.args, id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var n int
	err = s.exec(ctx, func(c writer) (err error) {
		n, err = createKeyWithin.Run(ctx, c, w.keys, w.args...).Int()
		return err
	})
	s.changed(w.changed)
	if n < 0 {
		// Refused, so nothing was written: whether replicas confirmed it does not matter.
		s.health.up()
		return keystore.KeysLimit(k.Account, -n)
	}
	return s.fail(w.op, err, w.what)
}

// GetKey reads one key, hash included.
func (s *Store) GetKey(ctx context.Context, id string) (keystore.Key, error) {
	f, err := s.client.HGetAll(ctx, s.keyKey(id)).Result()
	if err != nil {
		return keystore.Key{}, s.fail("get key", err, nil)
	}
	s.health.up()
	return decodeKey(id, f)
}

// GetKeys reads many keys, hashes included, in pipelined batches; missing ids are skipped.
// Export uses it instead of one GetKey per key.
func (s *Store) GetKeys(ctx context.Context, ids []string) ([]keystore.Key, error) {
	out := make([]keystore.Key, 0, len(ids))
	err := s.batchHGetAll(ctx, "get keys", ids, s.keyKey, func(id string, f map[string]string) error {
		k, err := decodeKey(id, f)
		if errors.Is(err, keystore.ErrNotFound) {
			return nil
		}
		out = append(out, k)
		return err
	})
	return out, err
}

// ListKeys lists keys without hashes, ordered by id.
func (s *Store) ListKeys(ctx context.Context, account string) ([]keystore.Key, error) {
	ids, err := s.names(ctx, "list keys", s.allKeysKey(), account, s.keysOfKey)
	if err != nil {
		return nil, err
	}
	keys, err := s.GetKeys(ctx, ids)
	for i := range keys {
		keys[i] = keys[i].Redacted()
	}
	return keys, err
}

// RevokeKey marks a key revoked and tells every replica to drop it.
func (s *Store) RevokeKey(ctx context.Context, id string) error {
	err := s.exec(ctx, func(c writer) error {
		return revokeKey.Run(ctx, c, []string{s.keyKey(id)}, s.channel, keyChanged(id)).Err()
	})
	s.changed(keyChanged(id))
	return s.fail("revoke key", err, map[string]string{"key": id})
}

// DeleteKeys removes dead keys, their index entries and every replica's cached principal of
// each in one script: all of them or, when one is live at the store's clock, none. The keys are
// read first, to judge their expiry here; the script removes a key only if it is still the
// record read, and still revoked unless it had expired.
func (s *Store) DeleteKeys(ctx context.Context, ids []string) error {
	now := s.now()
	keys, args := []string{s.allKeysKey()}, []any{s.channel}
	var dead []string
	err := s.batchHGetAll(ctx, "delete keys", ids, s.keyKey, func(id string, f map[string]string) error {
		k, err := decodeKey(id, f)
		if errors.Is(err, keystore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if k.Live(now) {
			return keystore.KeyLive(id)
		}
		keys = append(keys, s.keyKey(id), s.keysOfKey(k.Account))
		args = append(args, id, f["json"], flag(k.Expired(now)))
		dead = append(dead, id)
		return nil
	})
	if err != nil || len(dead) == 0 {
		return err
	}
	var n int
	err = s.exec(ctx, func(c writer) (err error) {
		n, err = deleteKeys.Run(ctx, c, keys, args...).Int()
		return err
	})
	for _, id := range dead {
		s.changed(keyChanged(id))
	}
	if err != nil {
		return s.fail("delete keys", err, nil)
	}
	s.health.up()
	if n < 0 {
		return keystore.KeyLive(dead[-n-1])
	}
	return nil
}

// TouchKeys records last-used times, never moving one backwards, in batches of one script.
func (s *Store) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	ids := make([]string, 0, len(used))
	for id := range used {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for start := 0; start < len(ids); start += batchSize {
		chunk := ids[start:min(start+batchSize, len(ids))]
		keys := make([]string, len(chunk))
		args := make([]any, len(chunk))
		for i, id := range chunk {
			keys[i], args[i] = s.keyKey(id), nanos(used[id])
		}
		if err := touchKeys.Run(ctx, s.client, keys, args...).Err(); err != nil {
			return s.fail("touch keys", err, nil)
		}
	}
	return nil
}

// PutGrant merges the grant into the row for (subject, repository), as keystore.MergeGrant
// does, in one script.
func (s *Store) PutGrant(ctx context.Context, g keystore.Grant, guard keystore.Guard) error {
	r := keystore.Record{Grant: &g}
	if err := r.Validate(); err != nil {
		return err
	}
	err := s.run(ctx, s.putGrantWrite(g, guard))
	if errors.Is(err, keystore.ErrConflict) && !errors.Is(err, keystore.ErrOwnerChanged) {
		return s.explainConflict(ctx, g, err)
	}
	return err
}

// explainConflict reads the row a put conflicted with, so the error says what it holds.
func (s *Store) explainConflict(ctx context.Context, g keystore.Grant, conflict error) error {
	v, err := s.client.HGet(ctx, s.grantsKey(g.Subject.String()), g.Repository).Result()
	if err != nil {
		return conflict
	}
	row := parseGrantValue(g.Subject, g.Repository, v)
	if _, err := keystore.MergeGrant(&row, g); err != nil {
		return err
	}
	return conflict
}

// RemoveGrant removes actions from a row, or the row.
func (s *Store) RemoveGrant(ctx context.Context, subject keystore.Subject, repository string, actions []string, guard keystore.Guard) error {
	return s.run(ctx, s.grantWrite("remove grant", removeGrant, subject, repository, guard, actions))
}

// ListGrants lists grants matching f, ordered by subject then repository.
func (s *Store) ListGrants(ctx context.Context, f keystore.GrantFilter) ([]keystore.Grant, error) {
	var subjects []string
	if f.Subject != nil {
		subjects = []string{f.Subject.String()}
	} else {
		var err error
		if subjects, err = s.names(ctx, "list grants", s.subjectsKey(), f.Repository, s.grantsOnKey); err != nil {
			return nil, err
		}
	}
	var out []keystore.Grant
	err := s.batchGrants(ctx, "list grants", subjects, func(g keystore.Grant) {
		if f.Repository == "" || g.Repository == f.Repository {
			out = append(out, g)
		}
	})
	return out, err
}

// PageGrants selects subjects by name before reading any row, then reads the rows of those
// subjects in pipelined batches; rows are short strings, so filtering them costs little.
func (s *Store) PageGrants(ctx context.Context, q keystore.GrantQuery) (keystore.GrantPage, error) {
	subjects, err := s.client.ZRange(ctx, s.subjectsKey(), 0, -1).Result()
	if err != nil {
		return keystore.GrantPage{}, s.fail("page grants", err, nil)
	}
	subjects = slices.DeleteFunc(subjects, func(sub string) bool { return !strings.Contains(sub, q.Subject) })
	slices.Sort(subjects)
	var page keystore.GrantPage
	err = s.batchGrants(ctx, "page grants", subjects, func(g keystore.Grant) {
		if !q.Matches(g) {
			return
		}
		if page.Total >= q.Offset && len(page.Grants) < q.Limit {
			page.Grants = append(page.Grants, g)
		}
		page.Total++
	})
	return page, err
}

// batchGrants reads the grant rows of subjects in pipelined batches and hands each to fn, in
// order.
func (s *Store) batchGrants(ctx context.Context, op string, subjects []string, fn func(keystore.Grant)) error {
	return s.batchHGetAll(ctx, op, subjects, s.grantsKey, func(subject string, rows map[string]string) error {
		kind, name, _ := strings.Cut(subject, ":")
		for _, g := range decodeGrants(keystore.Subject{Kind: keystore.SubjectKind(kind), Name: name}, rows) {
			fn(g)
		}
		return nil
	})
}

// Reserve records ownership of a repository name, within maxOwned per owner when it is > 0
// (counted by the script that writes).
func (s *Store) Reserve(ctx context.Context, o keystore.Ownership, maxOwned int) error {
	if err := o.Validate(); err != nil {
		return err
	}
	w, err := s.reserveWrite(o, maxOwned)
	if err != nil {
		return err
	}
	err = s.run(ctx, w)
	if errors.Is(err, keystore.ErrLimit) {
		// Said as the other stores say it.
		return fmt.Errorf("account %q holds %d reservations: %w", o.Owner, maxOwned, keystore.ErrLimit)
	}
	return err
}

// GetOwnership reads who owns a repository.
func (s *Store) GetOwnership(ctx context.Context, repository string) (keystore.Ownership, error) {
	raw, err := s.client.Get(ctx, s.ownerKey(repository)).Result()
	if errors.Is(err, redis.Nil) {
		s.health.up()
		return keystore.Ownership{}, fmt.Errorf("repository %q: %w", repository, keystore.ErrNotFound)
	}
	if err != nil {
		return keystore.Ownership{}, s.fail("get ownership", err, nil)
	}
	s.health.up()
	var o keystore.Ownership
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		return o, fmt.Errorf("decoding repository %q: %w", repository, err)
	}
	return o, nil
}

// ListOwnership lists repositories owned by owner, or all when owner is empty, by name.
func (s *Store) ListOwnership(ctx context.Context, owner string) ([]keystore.Ownership, error) {
	repos, err := s.names(ctx, "list ownership", s.reposKey(), owner, s.ownedByKey)
	if err != nil {
		return nil, err
	}
	out := make([]keystore.Ownership, 0, len(repos))
	err = s.batchOwnership(ctx, "list ownership", repos, func(o keystore.Ownership) { out = append(out, o) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// names lists the members of a set, sorted: of all (a sorted set) when by is empty, else of
// the set of by (a plain set).
func (s *Store) names(ctx context.Context, op, all, by string, setOf func(string) string) ([]string, error) {
	var names []string
	var err error
	if by == "" {
		names, err = s.client.ZRange(ctx, all, 0, -1).Result()
	} else {
		names, err = s.client.SMembers(ctx, setOf(by)).Result()
	}
	if err != nil {
		return nil, s.fail(op, err, nil)
	}
	slices.Sort(names)
	return names, nil
}

// batchOwnership reads the ownership records of repos in batches of one MGET and hands each
// to fn, in order; a name whose record is gone is skipped.
func (s *Store) batchOwnership(ctx context.Context, op string, repos []string, fn func(keystore.Ownership)) error {
	for start := 0; start < len(repos); start += batchSize {
		chunk := repos[start:min(start+batchSize, len(repos))]
		keys := make([]string, len(chunk))
		for i, r := range chunk {
			keys[i] = s.ownerKey(r)
		}
		vals, err := s.client.MGet(ctx, keys...).Result()
		if err != nil {
			return s.fail(op, err, nil)
		}
		for i, v := range vals {
			raw, ok := v.(string)
			if !ok {
				continue
			}
			var o keystore.Ownership
			if err := json.Unmarshal([]byte(raw), &o); err != nil {
				return fmt.Errorf("decoding repository %q: %w", chunk[i], err)
			}
			fn(o)
		}
	}
	s.health.up()
	return nil
}

// PageOwnership filters repository names before reading any record, then reads the records of
// the names left in batches.
func (s *Store) PageOwnership(ctx context.Context, q keystore.OwnershipQuery) (keystore.OwnershipPage, error) {
	repos, err := s.client.ZRange(ctx, s.reposKey(), 0, -1).Result()
	if err != nil {
		return keystore.OwnershipPage{}, s.fail("page ownership", err, nil)
	}
	repos = slices.DeleteFunc(repos, func(r string) bool { return !strings.Contains(r, q.Repository) })
	slices.Sort(repos)
	var page keystore.OwnershipPage
	err = s.batchOwnership(ctx, "page ownership", repos, func(o keystore.Ownership) {
		if !q.Matches(o) {
			return
		}
		if page.Total >= q.Offset && len(page.Ownerships) < q.Limit {
			page.Ownerships = append(page.Ownerships, o)
		}
		page.Total++
	})
	if err != nil {
		return keystore.OwnershipPage{}, err
	}
	return page, nil
}

// Release removes ownership of a repository and every grant on exactly that name, in one
// script.
func (s *Store) Release(ctx context.Context, repository string, guard keystore.Guard) error {
	keys := []string{s.ownerKey(repository), s.reposKey(), s.grantsOnKey(repository), s.subjectsKey()}
	err := s.exec(ctx, func(c writer) error {
		return release.Run(ctx, c, keys, s.channel, s.prefix, repository, guardArg(guard)).Err()
	})
	// The owner is known only to the script; empty this replica's cache rather than guess.
	s.changed("*")
	return s.fail("release", err, map[string]string{"repository": repository, "owner": repository})
}

func (s *Store) sessionKey(id string) string { return s.prefix + "s:" + id }

// sessionsOfKey is an account's sessions, a sorted set of ids scored by their end in Unix
// milliseconds.
func (s *Store) sessionsOfKey(account string) string { return s.prefix + "sa:" + account }

// CreateSession stores a session with Redis' own expiry, so an abandoned one costs nothing
// once it ends, and indexes it under its account, where the sessions past maxPerAccount that
// would end first are ended in the same script.
func (s *Store) CreateSession(ctx context.Context, sess keystore.Session, maxPerAccount int) error {
	if err := sess.Validate(); err != nil {
		return err
	}
	ttl := sess.Expires.Sub(s.now())
	if ttl <= 0 {
		return fmt.Errorf("%w: the session has already expired", keystore.ErrInvalid)
	}
	rec, err := json.Marshal(sess)
	if err != nil {
		return err
	}
	err = s.exec(ctx, func(c writer) error {
		return createSession.Run(ctx, c, []string{s.sessionKey(sess.ID), s.sessionsOfKey(sess.Account)},
			rec, max(ttl.Milliseconds(), 1), s.now().UnixMilli(), sess.Expires.UnixMilli(), maxPerAccount, s.prefix, sess.ID).Err()
	})
	return s.fail("create session", err, nil)
}

// GetSession reads a session that has not expired.
func (s *Store) GetSession(ctx context.Context, id string) (keystore.Session, error) {
	raw, err := s.client.Get(ctx, s.sessionKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		s.health.up()
		return keystore.Session{}, fmt.Errorf("session: %w", keystore.ErrNotFound)
	}
	if err != nil {
		return keystore.Session{}, s.fail("get session", err, nil)
	}
	s.health.up()
	var sess keystore.Session
	if err := json.Unmarshal(raw, &sess); err != nil {
		return keystore.Session{}, fmt.Errorf("decoding session: %w", err)
	}
	if !s.now().Before(sess.Expires) {
		return keystore.Session{}, fmt.Errorf("session: %w", keystore.ErrNotFound)
	}
	return sess, nil
}

// DeleteSession removes a session and its place in its account's index.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	err := s.exec(ctx, func(c writer) error {
		return deleteSession.Run(ctx, c, []string{s.sessionKey(id)}, s.prefix, id).Err()
	})
	return s.fail("delete session", err, nil)
}
