// Package storetest is the conformance suite every keystore backend passes: every method of
// keystore.Store, the batch operations, an export→import round trip, concurrent writes, and
// (where a backend can be disrupted) recovery. A backend's test calls Run with a function that
// returns a fresh, empty store reading time from the clock it is given (grant ends and
// sessions are judged by it). It knows the keystore contract only, never a backend.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// Options tune a run of the suite for a backend.
type Options struct {
	// Disrupt, when set, is called in the middle of the suite by a test that writes records,
	// disrupts the backend (e.g. kills a Redis primary so that Sentinel fails over), then
	// checks that every record survived and that the store recovers on its own. The tests
	// after it run against the disrupted backend.
	Disrupt func(t *testing.T)
}

// NewStore opens an empty store whose clock is now; the suite closes it.
type NewStore func(t *testing.T, now func() time.Time) keystore.Store

// Run runs the whole suite.
func Run(t *testing.T, newStore NewStore) {
	RunWith(t, newStore, Options{})
}

// clock is the time of one test's store; tests move it to cross a grant's end.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// RunWith runs the whole suite with options.
func RunWith(t *testing.T, newStore NewStore, opts Options) {
	type test struct {
		name string
		fn   func(t *testing.T, s keystore.Store)
	}
	var c *clock
	withClock := func(fn func(t *testing.T, s keystore.Store, c *clock)) func(t *testing.T, s keystore.Store) {
		return func(t *testing.T, s keystore.Store) { fn(t, s, c) }
	}
	tests := []test{
		{"Ping", func(t *testing.T, s keystore.Store) { must(t, s.Ping(ctx)) }},
		{"Accounts", testAccounts},
		{"ChangeAccount", testChangeAccount},
		{"Keys", testKeys},
		{"KeyRecordKeptWhole", testKeyRecordKeptWhole},
		{"TouchKeys", testTouchKeys},
		{"DeleteKeys", withClock(testDeleteKeys)},
		{"KeysPerAccountLimit", withClock(testKeysPerAccountLimit)},
		{"Grants", testGrants},
		{"GrantIndexes", testGrantIndexes},
		{"LoadPrincipal", testLoadPrincipal},
		{"GrantEnds", withClock(testGrantEnds)},
		{"InstantBounds", withClock(testInstantBounds)},
		{"Sessions", withClock(testSessions)},
		{"SessionsPerAccount", withClock(testSessionsPerAccount)},
		{"PageGrants", withClock(testPageGrants)},
		{"PageOwnership", testPageOwnership},
		{"PageAccounts", testPageAccounts},
	}
	if opts.Disrupt != nil {
		tests = append(tests, test{"SurvivesDisruption", func(t *testing.T, s keystore.Store) { testSurvivesDisruption(t, s, opts.Disrupt) }})
	}
	tests = append(tests, []test{
		{"ChangesVisibleAtOnce", testChangesVisibleAtOnce},
		{"Ownership", testOwnership},
		{"ReservationIsLiteral", testReservationIsLiteral},
		{"ReleaseTakesGrants", testReleaseTakesGrants},
		{"WritesGuardedByOwner", testWritesGuardedByOwner},
		{"ReserveLimit", testReserveLimit},
		{"ConcurrentWrites", testConcurrentWrites},
		{"Validation", testValidation},
		{"GetKeys", testGetKeys},
		{"WriteBatch", testWriteBatch},
		{"ExportImportRoundTrip", func(t *testing.T, s keystore.Store) { testExportImportRoundTrip(t, s, newStore) }},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c = &clock{t: now}
			s := newStore(t, c.Now)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

var ctx = context.Background()

// now is whole seconds in UTC so that every backend's encoding round-trips it exactly.
var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// limitedOf runs write(0) … write(n-1) at once and returns how many were refused with
// ErrLimit; any other error fails the test.
func limitedOf(t testing.TB, n int, write func(i int) error) int {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- write(i) })
	}
	wg.Wait()
	close(errs)
	limited := 0
	for err := range errs {
		switch {
		case errors.Is(err, keystore.ErrLimit):
			limited++
		case err != nil:
			t.Fatal(err)
		}
	}
	return limited
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

// NewKey builds a valid key record for account and returns it with its plaintext.
func NewKey(t testing.TB, account string) (keystore.Key, string) {
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keystore.Key{ID: id, Account: account, Name: "ci", Hash: hash, Created: now}, plain
}

func acct(name string, groups ...string) keystore.Account {
	return keystore.Account{Name: name, Groups: groups, Created: now}
}

// MustEncode writes v as one JSON line.
func MustEncode(t testing.TB, w io.Writer, v any) {
	t.Helper()
	if err := json.NewEncoder(w).Encode(v); err != nil {
		t.Fatal(err)
	}
}

func SameKey(a, b keystore.Key) bool {
	return a.ID == b.ID && a.Account == b.Account && a.Name == b.Name && slices.Equal(a.Hash, b.Hash) &&
		a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires) && a.LastUsed.Equal(b.LastUsed) &&
		a.Revoked == b.Revoked && reflect.DeepEqual(a.Restrictions, b.Restrictions)
}
