// Package storetest is the conformance suite every keystore backend passes: every method of
// keystore.Store, the batch operations, an export→import round trip, concurrent writes, and
// (where a backend can be disrupted) recovery. A backend's test calls Run with a function that
// returns a fresh, empty store. It knows the keystore contract only, never a backend.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
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

// Run runs the whole suite. newStore must return an empty store; the suite closes it.
func Run(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	RunWith(t, newStore, Options{})
}

// RunWith runs the whole suite with options.
func RunWith(t *testing.T, newStore func(t *testing.T) keystore.Store, opts Options) {
	type test struct {
		name string
		fn   func(t *testing.T, s keystore.Store)
	}
	tests := []test{
		{"Ping", func(t *testing.T, s keystore.Store) { must(t, s.Ping(ctx)) }},
		{"Accounts", testAccounts},
		{"Keys", testKeys},
		{"KeyRecordKeptWhole", testKeyRecordKeptWhole},
		{"TouchKeys", testTouchKeys},
		{"Grants", testGrants},
		{"GrantIndexes", testGrantIndexes},
		{"LoadPrincipal", testLoadPrincipal},
	}
	if opts.Disrupt != nil {
		tests = append(tests, test{"SurvivesDisruption", func(t *testing.T, s keystore.Store) { testSurvivesDisruption(t, s, opts.Disrupt) }})
	}
	tests = append(tests, []test{
		{"ChangesVisibleAtOnce", testChangesVisibleAtOnce},
		{"Ownership", testOwnership},
		{"ConcurrentWrites", testConcurrentWrites},
		{"Validation", testValidation},
		{"GetKeys", testGetKeys},
		{"WriteBatch", testWriteBatch},
		{"ExportImportRoundTrip", func(t *testing.T, s keystore.Store) { testExportImportRoundTrip(t, s, newStore) }},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

var ctx = context.Background()

// now is whole seconds in UTC so that every backend's encoding round-trips it exactly.
var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

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
