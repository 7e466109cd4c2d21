package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// TestRestoredKeysAuthenticateAsBefore restores a bolt store's export into Redis, and Redis'
// export into a new bolt file, through the CLI, then authenticates with the keys' original
// secrets against each: a live key works with its restrictions, a revoked key and a disabled
// account's key stay refused. An older export, taken before a revocation, is refused by a store
// that holds the revocation, which stays in force: a restore never brings a revoked key back.
func TestRestoredKeysAuthenticateAsBefore(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	src, copyDB := filepath.Join(dir, "src.db"), filepath.Join(dir, "copy.db")
	redisURL := srv.URL() + "?prefix=restore"
	ctx := context.Background()
	now := time.Now()

	s := openBolt(t, src)
	for _, a := range []keystore.Account{{Name: "alice", Groups: []string{"sellers"}, Created: now}, {Name: "mallory", Disabled: true, Created: now}} {
		must(t, s.CreateAccount(ctx, a))
	}
	newKey := func(account string, r keystore.Restrictions) (keystore.Key, string) {
		plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
		must(t, err)
		k := keystore.Key{ID: id, Account: account, Name: "k", Hash: hash, Created: now, Expires: now.Add(time.Hour), Restrictions: r}
		must(t, s.CreateKey(ctx, k))
		return k, plain
	}
	live, livePlain := newKey("alice", keystore.Restrictions{Actions: []string{"pull"}, Repositories: []string{"shop/**"}, CIDRs: []string{"10.0.0.0/8"}})
	revoked, revokedPlain := newKey("alice", keystore.Restrictions{})
	_, disabledPlain := newKey("mallory", keystore.Restrictions{})
	must(t, s.PutGrant(ctx, keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectGroup, Name: "sellers"}, Repository: "shop/*", Actions: []string{"pull", "push"}, Expires: now.Add(time.Hour)}, keystore.Unguarded))
	s.Close()
	older := filepath.Join(dir, "older.jsonl")
	cli(t, "export", "--store", "bolt://"+src, "-o", older)
	s = openBolt(t, src)
	must(t, s.RevokeKey(ctx, revoked.ID))
	s.Close()

	files := []string{filepath.Join(dir, "1.jsonl"), filepath.Join(dir, "2.jsonl")}
	cli(t, "export", "--store", "bolt://"+src, "-o", files[0])
	cli(t, "import", "--store", redisURL, files[0])
	cli(t, "export", "--store", redisURL, "-o", files[1])
	cli(t, "import", "--store", "bolt://"+copyDB, files[1])

	r, err := redisstore.Open(redisURL, redisstore.Options{})
	must(t, err)
	defer r.Close()
	b := openBolt(t, copyDB)
	defer b.Close()
	for name, st := range map[string]keystore.Store{"redis": r, "bolt": b} {
		p, err := keystore.Authenticate(ctx, st, "alice", livePlain, now)
		if err != nil || !reflect.DeepEqual(p.Key.Restrictions, live.Restrictions) || len(p.Grants) != 1 || !p.Grants[0].Expires.Equal(now.Add(time.Hour)) {
			t.Fatalf("%s: the live key after the restore: %+v, %v", name, p, err)
		}
		if _, err := keystore.Authenticate(ctx, st, "alice", revokedPlain, now); !errors.Is(err, keystore.ErrBadCredentials) {
			t.Fatalf("%s: the revoked key after the restore: %v, want refused", name, err)
		}
		if _, err := keystore.Authenticate(ctx, st, "mallory", disabledPlain, now); !errors.Is(err, keystore.ErrBadCredentials) {
			t.Fatalf("%s: the disabled account's key after the restore: %v, want refused", name, err)
		}
	}

	_, _, err = runCLI(t, "", "import", "--store", redisURL, older)
	if !errors.Is(err, keystore.ErrConflict) || !strings.Contains(err.Error(), revoked.ID) {
		t.Fatalf("importing the export taken before the revocation: %v, want a conflict naming the key", err)
	}
	if _, err := keystore.Authenticate(ctx, r, "alice", revokedPlain, now); !errors.Is(err, keystore.ErrBadCredentials) {
		t.Fatalf("the revoked key after the older import was refused: %v, want refused", err)
	}
}

// failingStore fails every WriteBatch after the first ok ones, as a store going away half way
// through an import would.
type failingStore struct {
	keystore.Store
	ok    int64
	calls atomic.Int64
}

func (f *failingStore) WriteBatch(ctx context.Context, recs []keystore.Record) error {
	if f.calls.Add(1) > f.ok {
		return keystore.ErrUnavailable
	}
	return f.Store.WriteBatch(ctx, recs)
}

// TestImportCutShortIsFinishedByRunningItAgain: an import into Redis whose store fails after
// some batches (keys in several batches, so the cut falls among them) reports how far it got
// and that running it again finishes it; the second run writes the rest, and the store's export
// is then the input byte for byte.
func TestImportCutShortIsFinishedByRunningItAgain(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	src := openBolt(t, filepath.Join(t.TempDir(), "src.db"))
	storetest.Seed(t, src)
	must(t, src.CreateAccount(ctx, keystore.Account{Name: "bulk", Created: time.Now()}))
	bulk := make([]keystore.Record, 1200)
	for i := range bulk {
		k, _ := storetest.NewKey(t, "bulk")
		bulk[i].Key = &k
	}
	must(t, src.WriteBatch(ctx, bulk))
	var export bytes.Buffer
	_, err := keystore.Export(ctx, src, &export)
	must(t, err)
	src.Close()

	r, err := redisstore.Open(srv.URL()+"?prefix=cut", redisstore.Options{})
	must(t, err)
	defer r.Close()
	_, err = keystore.Import(ctx, &failingStore{Store: r, ok: 2}, bytes.NewReader(export.Bytes()), 1)
	if !errors.Is(err, keystore.ErrUnavailable) || !strings.Contains(err.Error(), "run the same import again") {
		t.Fatalf("the import cut short: %v", err)
	}
	c, err := keystore.Import(ctx, r, bytes.NewReader(export.Bytes()), 4)
	if err != nil || c.Skipped == 0 {
		t.Fatalf("running it again: %s, %v; want it finished, with the records of the first run found present", c, err)
	}
	var again bytes.Buffer
	_, err = keystore.Export(ctx, r, &again)
	must(t, err)
	if !bytes.Equal(export.Bytes(), again.Bytes()) {
		t.Fatal("the store's export after the second run differs from the input")
	}
}

func cli(t *testing.T, args ...string) {
	t.Helper()
	if _, stderr, err := runCLI(t, "", args...); err != nil {
		t.Fatalf("regoauth %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
