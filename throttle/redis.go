package throttle

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/internal/redissub"
)

// Redis keeps budgets in Redis, shared by every replica, with redis_rate (GCRA, one script per
// failure). Checking a budget before each authentication must not cost a round trip, so
// replicas share what they learn instead: when a failure spends a budget, the replica that saw
// it publishes the key and how long it is blocked, and every replica remembers that locally.
// While this replica's subscription is not proven alive (a ping answered within the last
// redissub.MaxSilence), it asks Redis instead, so a lost message never lets a blocked key
// through.
type Redis struct {
	limiter *redis_rate.Limiter
	client  redis.UniversalClient
	prefix  string
	channel string
	logger  *slog.Logger
	now     func() time.Time

	blocked *expirable.LRU[string, time.Time]
	// full holds, for each budget this replica's own failures spent of, when it is full again:
	// what it knows of budgets spent but not yet blocked, without asking Redis. Failures on
	// other replicas reach it only once they block a budget.
	full   *expirable.LRU[string, time.Time]
	fullMu sync.Mutex // orders the updates of full: a later end never gives way to an earlier
	// spentUntil is the latest end of a block this replica knows, or of a budget it knows to be
	// short of full (Unix ns), so that Idle needs no look at the keys.
	spentUntil atomic.Int64

	// live is the state of the subscription to blocked keys.
	live redissub.Liveness

	stop context.CancelFunc
	done sync.WaitGroup
}

var _ Backend = (*Redis)(nil)

// RedisOptions configure a Redis backend.
type RedisOptions struct {
	// Prefix starts every key and the channel, e.g. the store's "{regoauth}:" so that under
	// Cluster they share its hash slot.
	Prefix string
	// Size bounds how many blocked keys this replica remembers (default 100,000).
	Size int
	// Forget bounds how long a blocked key is remembered (Limits.Refill).
	Forget time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// NewRedis returns a backend in client's Redis and starts listening for blocked keys. Close
// stops it; it does not close the client.
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Size <= 0 {
		opts.Size = 100_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Redis{
		limiter: redis_rate.NewLimiter(client), client: client,
		prefix: opts.Prefix + "throttle:", channel: opts.Prefix + "throttle",
		logger: opts.Logger, now: opts.Now, live: redissub.Liveness{Now: opts.Now, Probe: func(ctx context.Context, channel, payload string) error {
			return redissub.Publish(ctx, client, channel, payload)
		}},
		blocked: expirable.NewLRU[string, time.Time](opts.Size, nil, max(opts.Forget, time.Second)),
		full:    expirable.NewLRU[string, time.Time](opts.Size, nil, max(opts.Forget, time.Second)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		r.watch(ctx)
	}()
	return r
}

// Close stops listening.
func (r *Redis) Close() error {
	r.stop()
	r.done.Wait()
	return nil
}

func rateLimit(l Limit) redis_rate.Limit {
	return redis_rate.Limit{Rate: 1, Period: l.Every, Burst: l.Burst}
}

// waitAfter turns redis_rate's answer into how long until one more failure fits: the budget is
// full again after ResetAfter, and it holds one failure Burst-1 intervals before that.
func waitAfter(res *redis_rate.Result, l Limit) time.Duration {
	return max(res.ResetAfter-time.Duration(l.Burst-1)*l.Every, 0)
}

// Room answers from this replica's memory while its subscription is alive: a blocked budget has
// no room, a budget its own failures spent of has what they left, any other is taken as full
// (failures on other replicas that did not block a budget are not known here). Otherwise it asks
// Redis.
func (r *Redis) Room(ctx context.Context, key string, l Limit) (int, time.Duration, error) {
	now := r.now()
	if until, ok := r.blocked.Get(key); ok && until.After(now) {
		return 0, until.Sub(now), nil
	}
	if r.live.Alive() {
		if full, ok := r.full.Get(key); ok && full.After(now) {
			return roomBefore(full.Sub(now), l)
		}
		return l.Burst, 0, nil
	}
	res, err := r.limiter.AllowN(ctx, r.prefix+key, rateLimit(l), 0)
	if err != nil {
		return 0, 0, err
	}
	if wait := waitAfter(res, l); wait > 0 {
		return 0, wait, nil
	}
	return max(min(res.Remaining, l.Burst), 1), 0, nil
}

// roomBefore is the room of a budget that is full again after reset, as GCRA keeps it: each
// failure it is short of full is one interval of reset.
func roomBefore(reset time.Duration, l Limit) (int, time.Duration, error) {
	if wait := reset - time.Duration(l.Burst-1)*l.Every; wait > 0 {
		return 0, wait, nil
	}
	short := int((reset + l.Every - 1) / l.Every)
	return l.Burst - short, 0, nil
}

func (r *Redis) Spend(ctx context.Context, key string, l Limit) (bool, time.Duration, error) {
	res, err := spend(ctx, r.client, r.prefix+key, l)
	if err != nil {
		return false, 0, err
	}
	wait := waitAfter(res, l)
	if res.ResetAfter > 0 {
		until := r.now().Add(res.ResetAfter)
		raiseTo(&r.spentUntil, until)
		r.fullMu.Lock()
		if old, ok := r.full.Peek(key); !ok || until.After(old) {
			r.full.Add(key, until)
		}
		r.fullMu.Unlock()
	}
	if wait > 0 {
		r.block(key, wait)
		// Best effort: a replica that misses it learns on its own next failure for the key.
		if err := redissub.Publish(ctx, r.client, r.channel, key+" "+strconv.FormatInt(wait.Milliseconds()+1, 10)); err != nil {
			r.logger.Warn("could not share a spent failure budget", "error", err)
		}
	}
	return res.Allowed > 0, wait, nil
}

// Idle reports that this replica knows of no budget short of full and would not ask Redis: Room
// would answer the burst for every key.
func (r *Redis) Idle() bool {
	return r.now().UnixNano() >= r.spentUntil.Load() && r.live.Alive()
}

func (r *Redis) block(key string, wait time.Duration) {
	until := r.now().Add(wait)
	raiseTo(&r.spentUntil, until)
	if old, ok := r.blocked.Peek(key); ok && old.After(until) {
		return
	}
	r.blocked.Add(key, until)
}

// watch listens for blocked keys until ctx ends.
func (r *Redis) watch(ctx context.Context) {
	r.live.Watch(ctx, r.client, r.channel, nil, func(payload string) {
		key, ms, ok := strings.Cut(payload, " ")
		n, err := strconv.ParseInt(ms, 10, 64)
		if ok && err == nil && n > 0 {
			r.block(key, time.Duration(n)*time.Millisecond)
		}
	})
}

// Live reports whether the subscription is proven alive, so that checks are answered from
// memory.
func (r *Redis) Live() bool { return r.live.Alive() }

// spendScript counts one failure against a budget kept as redis_rate keeps it (GCRA: the
// theoretical arrival time, in seconds since 2017 by Redis' clock, so that redis_rate reads it
// in Wait), and counts it beyond the budget too: failures checked at once all saw the budget
// unspent, and the key then waits for each of them. ARGV burst, period in seconds. It answers
// whether the failure was within the budget and when the budget is whole again (seconds).
var spendScript = redis.NewScript(`
redis.replicate_commands()
local burst = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local now = redis.call('TIME')
now = (now[1] - 1483228800) + (now[2] / 1000000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
tat = math.max(tat, now)
local new_tat = tat + interval
local allowed = now >= new_tat - interval * burst
redis.call('SET', KEYS[1], new_tat, 'EX', math.ceil(new_tat - now))
return {allowed and 1 or 0, tostring(new_tat - now)}
`)

// spend runs spendScript and answers as redis_rate does.
func spend(ctx context.Context, client redis.Scripter, key string, l Limit) (*redis_rate.Result, error) {
	// redis_rate keeps a budget under "rate:" + its key.
	v, err := spendScript.Run(ctx, client, []string{"rate:" + key}, l.Burst, l.Every.Seconds()).Slice()
	if err != nil {
		return nil, err
	}
	if len(v) != 2 {
		return nil, fmt.Errorf("throttle: unexpected reply %v", v)
	}
	allowed, _ := v[0].(int64)
	s, _ := v[1].(string)
	reset, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("throttle: unexpected reply %v: %w", v, err)
	}
	return &redis_rate.Result{Limit: rateLimit(l), Allowed: int(allowed), ResetAfter: time.Duration(reset * float64(time.Second))}, nil
}
