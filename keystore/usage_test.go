package keystore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

type touchRecorder struct {
	mu    sync.Mutex
	fail  bool
	calls []map[string]time.Time
}

func (r *touchRecorder) TouchKeys(_ context.Context, used map[string]time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("store down")
	}
	r.calls = append(r.calls, used)
	return nil
}

// runAndStop starts u and stops it at once, as a server does that shuts down, and returns what
// Run returned.
func runAndStop(u *keystore.UsageTracker) error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- u.Run(ctx) }()
	cancel()
	return <-done
}

func TestUsageTrackerBatchesAndRetries(t *testing.T) {
	rec := &touchRecorder{fail: true}
	u := keystore.NewUsageTracker(rec, time.Hour, nil)
	t0 := time.Unix(1000, 0)
	u.Used("a", t0)
	u.Used("a", t0.Add(time.Second))
	u.Used("a", t0) // older: ignored
	u.Used("b", t0)
	if err := u.Flush(context.Background()); err == nil {
		t.Fatal("flush to a failing store reported success")
	}
	rec.fail = false
	if err := u.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 1 || !rec.calls[0]["a"].Equal(t0.Add(time.Second)) || !rec.calls[0]["b"].Equal(t0) {
		t.Fatalf("calls = %v", rec.calls)
	}
	if err := u.Flush(context.Background()); err != nil || len(rec.calls) != 1 {
		t.Fatal("an empty flush wrote to the store")
	}
}

func TestUsageTrackerFlushesOnStop(t *testing.T) {
	rec := &touchRecorder{}
	u := keystore.NewUsageTracker(rec, time.Hour, nil)
	u.Used("a", time.Unix(5, 0))
	if err := runAndStop(u); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 1 {
		t.Fatalf("calls = %v", rec.calls)
	}
}

// A store that cannot write when the server stops (a full or read-only disk) loses the last
// uses, which are only a record; it must not turn a clean shutdown into a failure.
func TestUsageTrackerStopsCleanlyWhenTheStoreCannotWrite(t *testing.T) {
	rec := &touchRecorder{fail: true}
	var logs bytes.Buffer
	u := keystore.NewUsageTracker(rec, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	u.Used("a", time.Unix(5, 0))
	if err := runAndStop(u); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("the lost uses were not logged: %q", logs.String())
	}
}
