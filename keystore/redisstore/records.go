package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis can lose every record without an error anyone sees: a primary restarted without
// persistence, FLUSHALL by someone else, a failover to a replica that was empty. Redis answers
// on as before, and regoauth would refuse every API key with a 401 as unknown, while a replica's
// cache went on serving the principals it held. So a store that watches its records keeps a
// marker beside them, a random value written once; when the marker is gone, or another one
// stands in its place, the records it stood beside are gone too: the store says so once
// (ERROR log, regoauth_store_records_lost_total) and empties its cache.
//
// Redis can also drop records one by one when it runs out of memory under a maxmemory-policy
// other than noeviction: a key's or grant's record, an index (then a released name's grants pass
// to its next owner, and an export leaves records out), a reservation (then another account can
// take the name), a failure budget. CheckEviction reads the policy.

// ErrEvicts means Redis may evict the store's records.
var ErrEvicts = errors.New("redis may evict regoauth's records")

// DefaultRecordsCheck is how often a serving store checks that its records are still there.
const DefaultRecordsCheck = time.Second

// evictionCheckEvery is how many records checks go by between two reads of the eviction policy.
const evictionCheckEvery = 30

func (s *Store) markerKey() string { return s.prefix + "instance" }

// EvictionPolicy is the maxmemory-policy of the primary holding the store (INFO memory; CONFIG
// is not needed, but the Redis user must be allowed INFO).
func (s *Store) EvictionPolicy(ctx context.Context) (string, error) {
	var info string
	var err error
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		var node *redis.Client
		if node, err = cc.MasterForKey(ctx, s.prefix); err == nil {
			info, err = node.Info(ctx, "memory").Result()
		}
	} else {
		info, err = s.client.Info(ctx, "memory").Result()
	}
	if err != nil {
		return "", fmt.Errorf("reading redis maxmemory-policy (INFO memory): %w", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok {
			return v, nil
		}
	}
	return "", errors.New("reading redis maxmemory-policy: INFO memory does not show it")
}

// CheckEviction is ErrEvicts unless Redis' maxmemory-policy is noeviction, under which a full
// Redis refuses writes (the admin API answers 503) instead of dropping records. Other errors
// mean the policy could not be read (e.g. a Redis user not allowed INFO).
func (s *Store) CheckEviction(ctx context.Context) error {
	p, err := s.EvictionPolicy(ctx)
	if err != nil {
		return err
	}
	if p != "noeviction" {
		return fmt.Errorf("%w: its maxmemory-policy is %s, under which a full Redis drops keys, grants, reservations and failure budgets without a word; set maxmemory-policy noeviction", ErrEvicts, p)
	}
	return nil
}

// recordsWatch is the state of the checks of one store.
type recordsWatch struct {
	marker   string // the marker seen last; "" before the first check
	checks   int
	evicting bool
}

// watchRecords checks every interval, while ctx lasts, that the records are still there, and now
// and then the eviction policy.
func (s *Store) watchRecords(ctx context.Context, interval time.Duration) {
	var w recordsWatch
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
		s.checkRecords(cctx, &w)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkRecords compares the marker with the one seen last, writing one when there is none.
func (s *Store) checkRecords(ctx context.Context, w *recordsWatch) {
	if w.checks%evictionCheckEvery == 0 {
		s.checkEviction(ctx, w)
	}
	w.checks++
	cur, err := s.client.Get(ctx, s.markerKey()).Result()
	if errors.Is(err, redis.Nil) {
		// Written with SET NX: of replicas that find it gone at once, one writes it and the
		// others read that one.
		if err = s.client.SetNX(ctx, s.markerKey(), rand.Text(), 0).Err(); err == nil {
			cur, err = s.client.Get(ctx, s.markerKey()).Result()
		}
	}
	if err != nil {
		return // an outage is reported by the operations that meet it
	}
	if w.marker != "" && cur != w.marker {
		s.cache.Purge()
		s.metrics.recordsLost.Inc()
		s.logger.Error("the redis store's records are gone (a Redis restarted without persistence, flushed, or failed over to an empty replica): every API key is refused as unknown until they are restored from an export (docs/operations.md)")
	}
	w.marker = cur
}

// checkEviction reads the eviction policy, and logs when it turns unsafe.
func (s *Store) checkEviction(ctx context.Context, w *recordsWatch) {
	err := s.CheckEviction(ctx)
	if err != nil && !errors.Is(err, ErrEvicts) {
		return // unknown: said once at start (see package server)
	}
	evicting := err != nil
	if evicting {
		s.metrics.evicting.Set(1)
	} else {
		s.metrics.evicting.Set(0)
	}
	if evicting && !w.evicting {
		s.logger.Error("redis store at risk", "error", err)
	}
	w.evicting = evicting
}
