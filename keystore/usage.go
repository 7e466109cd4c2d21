package keystore

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// KeyToucher is the part of a Store that records key use.
type KeyToucher interface {
	TouchKeys(ctx context.Context, used map[string]time.Time) error
}

// UsageTracker keeps the last-used time of keys off the request path: Used only notes the time
// in memory, and Run writes the batch every interval.
type UsageTracker struct {
	store    KeyToucher
	interval time.Duration
	logger   *slog.Logger

	mu      sync.Mutex
	pending map[string]time.Time
}

// NewUsageTracker returns a tracker that flushes to store every interval.
func NewUsageTracker(store KeyToucher, interval time.Duration, logger *slog.Logger) *UsageTracker {
	return &UsageTracker{store: store, interval: interval, logger: logger, pending: map[string]time.Time{}}
}

// Used notes that key id was used at t. It never blocks on the store.
func (u *UsageTracker) Used(id string, t time.Time) {
	u.mu.Lock()
	if t.After(u.pending[id]) {
		u.pending[id] = t
	}
	u.mu.Unlock()
}

// Flush writes what was noted since the last flush. On failure the batch is kept for the next.
func (u *UsageTracker) Flush(ctx context.Context) error {
	u.mu.Lock()
	batch := u.pending
	u.pending = map[string]time.Time{}
	u.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := u.store.TouchKeys(ctx, batch)
	if err != nil {
		for id, t := range batch {
			u.Used(id, t)
		}
	}
	return err
}

// Run flushes every interval until ctx ends, then once more.
func (u *UsageTracker) Run(ctx context.Context) error {
	tick := time.NewTicker(u.interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := u.Flush(ctx); err != nil {
				u.logger.Warn("recording key use failed; will retry", "error", err)
			}
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// Last-used times are a record, not state: losing the last ones (a full or
			// read-only disk, Redis gone) must not fail a clean shutdown.
			if err := u.Flush(flushCtx); err != nil {
				u.logger.Warn("recording key use at shutdown failed; the last uses are not recorded", "error", err)
			}
			return nil
		}
	}
}
