package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/boltstore"
	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// runCLI runs the regoauth command line in-process and returns its stdout, stderr and error.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := rootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// snapshot reads every record of a store through the Store interface, hashes included.
type snapshot struct {
	Accounts []keystore.Account
	Keys     []keystore.Key
	Grants   []keystore.Grant
	Owned    []keystore.Ownership
}

func take(t *testing.T, s keystore.Store) snapshot {
	t.Helper()
	ctx := context.Background()
	var snap snapshot
	var err error
	if snap.Accounts, err = s.ListAccounts(ctx); err != nil {
		t.Fatal(err)
	}
	listed, err := s.ListKeys(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range listed {
		full, err := s.GetKey(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		snap.Keys = append(snap.Keys, full)
	}
	if snap.Grants, err = s.ListGrants(ctx, keystore.GrantFilter{}); err != nil {
		t.Fatal(err)
	}
	if snap.Owned, err = s.ListOwnership(ctx, ""); err != nil {
		t.Fatal(err)
	}
	return snap
}

func (a snapshot) equal(t *testing.T, b snapshot) {
	t.Helper()
	if len(a.Accounts) != len(b.Accounts) || len(a.Keys) != len(b.Keys) || !reflect.DeepEqual(a.Grants, b.Grants) || len(a.Owned) != len(b.Owned) {
		t.Fatalf("snapshots differ:\n%+v\n%+v", a, b)
	}
	for i := range a.Accounts {
		x, y := a.Accounts[i], b.Accounts[i]
		if x.Name != y.Name || !slices.Equal(x.Groups, y.Groups) || !slices.Equal(x.Roles, y.Roles) || x.Disabled != y.Disabled || !x.Created.Equal(y.Created) {
			t.Fatalf("account %d: %+v != %+v", i, x, y)
		}
	}
	for i := range a.Keys {
		if !storetest.SameKey(a.Keys[i], b.Keys[i]) {
			t.Fatalf("key %d: %+v != %+v", i, a.Keys[i], b.Keys[i])
		}
	}
	for i := range a.Owned {
		x, y := a.Owned[i], b.Owned[i]
		if x.Repository != y.Repository || x.Owner != y.Owner || !x.Created.Equal(y.Created) {
			t.Fatalf("ownership %d: %+v != %+v", i, x, y)
		}
	}
}

func openBolt(t *testing.T, path string) keystore.Store {
	t.Helper()
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExportImportRoundTrip moves a store bolt → Redis → bolt through the CLI and compares every
// record of the three stores (key hashes, expiry, revoked, last use, restrictions included), and
// the three export files byte for byte.
func TestExportImportRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	bolt1, bolt2 := filepath.Join(dir, "one.db"), filepath.Join(dir, "two.db")
	redisURL := srv.URL() + "?prefix=roundtrip"

	s := openBolt(t, bolt1)
	storetest.Seed(t, s)
	want := take(t, s)
	s.Close()
	if len(want.Keys) != 4 || len(want.Grants) != 3 || len(want.Owned) != 1 || want.Grants[1].Expires.IsZero() {
		t.Fatalf("seed went wrong: %+v", want)
	}

	files := []string{filepath.Join(dir, "1.jsonl"), filepath.Join(dir, "2.jsonl"), filepath.Join(dir, "3.jsonl")}
	steps := [][]string{
		{"export", "--store", "bolt://" + bolt1, "--output", files[0]},
		{"import", "--store", redisURL, files[0]},
		{"export", "--store", redisURL, "-o", files[1]},
		{"import", "--store", "bolt://" + bolt2, files[1]},
		{"export", "--store", "bolt://" + bolt2, "-o", files[2]},
	}
	for _, args := range steps {
		if _, stderr, err := runCLI(t, "", args...); err != nil {
			t.Fatalf("regoauth %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
	}
	r, err := redisstore.Open(redisURL, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want.equal(t, take(t, r))
	r.Close()
	s = openBolt(t, bolt2)
	want.equal(t, take(t, s))
	s.Close()

	first, _ := os.ReadFile(files[0])
	for _, f := range files[1:] {
		if got, _ := os.ReadFile(f); !bytes.Equal(got, first) {
			t.Fatalf("%s differs from the first export:\n%s\n---\n%s", f, got, first)
		}
	}
	if st, _ := os.Stat(files[0]); st.Mode().Perm() != 0o600 {
		t.Fatalf("export file mode %v, want 0600", st.Mode().Perm())
	}
	// The export carries hashes, never anything that looks like a plaintext key.
	if bytes.Contains(first, []byte("rak_")) || !bytes.Contains(first, []byte(`"hash":`)) {
		t.Fatalf("export content unexpected:\n%s", first)
	}

	// Importing the same file again changes nothing and reports everything as present.
	_, stderr, err := runCLI(t, "", "import", "--store", redisURL, files[0])
	if want := "imported 0 accounts, 0 keys, 0 grants, 0 repositories; 11 records already present, left as they were\n"; err != nil || stderr != want {
		t.Fatalf("re-import: %v, %q, want %q", err, stderr, want)
	}
}

// TestImportSaysWhatWasAlreadyPresent: an import that finds some of its records in the store
// (an earlier run stopped half way) says how many of each kind it wrote, and how many it found
// present, not counted as imported.
func TestImportSaysWhatWasAlreadyPresent(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "dst.db")
	export := seededExport(t)
	// The header and the accounts, ended as an export of those alone: what a run that stopped
	// after the accounts wrote.
	lines := strings.SplitAfter(export, "\n")
	accounts := 0
	for strings.HasPrefix(lines[1+accounts], `{"account":`) {
		accounts++
	}
	if accounts != 3 {
		t.Fatalf("the seed's export starts with %d accounts, want 3:\n%s", accounts, export)
	}
	for _, tt := range []struct{ input, want string }{
		{strings.Join(lines[:1+accounts], "") + `{"end":{"accounts":3,"keys":0,"grants":0,"ownerships":0}}` + "\n", "imported 3 accounts, 0 keys, 0 grants, 0 repositories\n"},
		{export, "imported 0 accounts, 4 keys, 3 grants, 1 repositories; 3 records already present, left as they were\n"},
	} {
		if _, stderr, err := runCLI(t, tt.input, "import", "--store", "bolt://"+dst); err != nil || stderr != tt.want {
			t.Fatalf("import: %v, %q, want %q", err, stderr, tt.want)
		}
	}
}

// TestImportRefusesBadInput: every kind of bad input gets one clear error, and the store stays
// empty.
func TestImportRefusesBadInput(t *testing.T) {
	srv := redistest.Start(t)
	header := `{"export":{"format":"regoauth-export","version":1}}` + "\n"
	account := `{"account":{"name":"alice","created":"2026-01-02T03:04:05Z"}}` + "\n"
	key := func(account string) string {
		_, id, hash, _ := keystore.NewAPIKey(rand.Reader)
		var b bytes.Buffer
		storetest.MustEncode(t, &b, keystore.Record{Key: &keystore.Key{ID: id, Account: account, Hash: hash, Created: time.Now().UTC()}})
		return b.String()
	}
	for i, tt := range []struct {
		name, input, want string
	}{
		{"empty", "", "empty input"},
		{"no header", account, "line 1: invalid: not a regoauth export"},
		{"future version", `{"export":{"format":"regoauth-export","version":9}}`, "version 9"},
		{"not JSON", header + account + "{nope\n", "line 3"},
		{"unknown field", header + `{"account":{"name":"alice","colour":"red"}}`, "unknown field"},
		{"two kinds in a line", header + `{"account":{"name":"a"},"grant":{"subject":{"kind":"account","name":"a"},"repository":"r","actions":["pull"]}}`, "exactly one"},
		{"invalid account", header + `{"account":{"name":"Bad Name"}}`, "line 2: invalid: account name"},
		{"invalid grant", header + account + `{"grant":{"subject":{"kind":"account","name":"alice"},"repository":"r","actions":["fly"]}}`, "line 3"},
		{"duplicate", header + account + account, "line 3: invalid: account \"alice\" already appears on line 2"},
		{"grant ending after 2200", header + account + `{"grant":{"subject":{"kind":"account","name":"alice"},"repository":"r","actions":["pull"],"expires":"2300-01-01T00:00:00Z"}}`, "line 3: invalid: grant end 2300-01-01T00:00:00Z is after 2200-01-01T00:00:00Z"},
		{"created in the year 10000 (UTC)", header + `{"account":{"name":"alice","created":"9999-12-31T23:59:59-23:59"}}`, "line 2: invalid: account creation 10000-01-01T23:58:59Z is after"},
		{"key of unknown account", header + account + key("bob"), "its account \"bob\""},
		{"short hash", header + account + `{"key":{"id":"aaaaaaaaaaaaaaaa","account":"alice","hash":"AAAA"}}`, "hash must be 32 bytes"},
		{"valid records before a bad last line", header + account + key("alice") + `{"ownership":{"repository":"x","owner":"nobody"}}`, "owner \"nobody\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url := srv.URL() + "?prefix=bad" + string(rune('a'+i))
			_, _, err := runCLI(t, tt.input, "import", "--store", url)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error = %v, want one line with %q", err, tt.want)
			}
			r, err := redisstore.Open(url, redisstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if snap := take(t, r); len(snap.Accounts)+len(snap.Keys)+len(snap.Grants)+len(snap.Owned) != 0 {
				t.Fatalf("bad input left records behind: %+v", snap)
			}
		})
	}
}

func TestImportConflicts(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "dst.db")
	export := seededExport(t)
	d := openBolt(t, dst)
	if err := d.CreateAccount(context.Background(), keystore.Account{Name: "seller", Roles: []string{"admin"}}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	_, _, err := runCLI(t, export, "import", "--store", "bolt://"+dst)
	if !errors.Is(err, keystore.ErrConflict) || !strings.Contains(err.Error(), `account "seller"`) {
		t.Fatalf("import over a different account: %v", err)
	}
	d = openBolt(t, dst)
	if snap := take(t, d); len(snap.Accounts) != 1 || len(snap.Keys) != 0 {
		t.Fatalf("a refused import wrote records: %+v", snap)
	}

	// A grant row with another end is refused before anything is written, as PutGrant would.
	if err := d.UpdateAccount(context.Background(), keystore.Account{Name: "seller", Groups: []string{"sellers", "staff"}}); err != nil {
		t.Fatal(err)
	}
	buyer := keystore.Subject{Kind: keystore.SubjectAccount, Name: "buyer"}
	if err := d.CreateAccount(context.Background(), keystore.Account{Name: "buyer", Disabled: true}); err != nil {
		t.Fatal(err)
	}
	if err := d.PutGrant(context.Background(), keystore.Grant{Subject: buyer, Repository: "shop/tool", Actions: []string{"pull", "push"}}, keystore.Unguarded); err != nil {
		t.Fatal(err)
	}
	d.Close()
	_, _, err = runCLI(t, export, "import", "--store", "bolt://"+dst)
	if !errors.Is(err, keystore.ErrConflict) || !strings.Contains(err.Error(), "shop/tool") || !strings.Contains(err.Error(), "pull,push with no end") {
		t.Fatalf("import of a grant whose end differs: %v", err)
	}
	d = openBolt(t, dst)
	defer d.Close()
	if snap := take(t, d); len(snap.Keys) != 0 || len(snap.Grants) != 1 {
		t.Fatalf("a refused import wrote records: %+v", snap)
	}
}

func TestExportImportUsage(t *testing.T) {
	t.Setenv("REGOAUTH_STORE_URL", "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"export"}, "--store URL is required"},
		{[]string{"import", "--store", "mysql://u:hunter2@h"}, "unsupported store URL"},
		{[]string{"import", "--store", "bolt://x.db", filepath.Join(t.TempDir(), "missing.jsonl")}, "no such file"},
	} {
		_, _, err := runCLI(t, "", tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v: error = %v, want %q", tt.args, err, tt.want)
		}
	}
}

// TestUnconfirmedImportIsNeverReportedDone: with confirm_replicas, an import the replica did not
// confirm fails with one line, and so does running it again while the replica still does not
// answer. An import stops at the first kind of record not confirmed, so it takes a run per kind
// to put every record on the primary; the run after that writes nothing, and must not report
// done what no replica holds. Once the replica answers, it is.
func TestUnconfirmedImportIsNeverReportedDone(t *testing.T) {
	primary := redistest.Start(t)
	replica := primary.StartReplica(t)
	export := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(export, []byte(seededExport(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	url := primary.URL() + "?prefix=unconfirmed&confirm_replicas=1&confirm_timeout=100ms"

	replica.Pause()
	// Accounts, keys, grants, reservations: one run each, then one that finds them all.
	for run := 1; run <= 5; run++ {
		_, stderr, err := runCLI(t, "", "import", "--store", url, export)
		if !errors.Is(err, keystore.ErrUnconfirmed) || strings.Contains(err.Error(), "\n") {
			replica.Resume()
			t.Fatalf("import run %d, replica paused: %v (%q), want one line saying the change is unconfirmed", run, err, stderr)
		}
	}
	replica.Resume()
	patient := primary.URL() + "?prefix=unconfirmed&confirm_replicas=1&confirm_timeout=10s"
	if _, stderr, err := runCLI(t, "", "import", "--store", patient, export); err != nil || !strings.Contains(stderr, "already present") {
		t.Fatalf("import with the replica answering: %v, %q", err, stderr)
	}
}

// An export cut short is refused whole, wherever it is cut: at the end of a line too, which
// reads as a shorter export of valid records; so is one with a record taken out, or added after
// its end. An export of version 1, which has no end line, is still read.
func TestImportRefusesAnExportCutShort(t *testing.T) {
	srv := redistest.Start(t)
	full := seededExport(t)
	lines := strings.SplitAfter(strings.TrimSuffix(full, "\n"), "\n")
	if len(lines) != 13 || !strings.HasPrefix(lines[12], `{"end":{"accounts":3,"keys":4,"grants":3,"ownerships":1}}`) {
		t.Fatalf("export:\n%s", full)
	}
	without := func(i int) string { return strings.Join(append(slices.Clone(lines[:i]), lines[i+1:]...), "") }
	for i, tt := range []struct{ name, input, want string }{
		{"cut after a line", strings.Join(lines[:9], ""), "line 9 without its end line"},
		{"cut before the end line", strings.Join(lines[:12], ""), "line 12 without its end line"},
		{"cut within a line", full[:len(full)-40], "line 13: invalid: not a record"},
		{"a record taken out", without(5), "the export counts 3 accounts, 4 keys, 3 grants, 1 repositories but holds 3 accounts, 3 keys, 3 grants, 1 repositories"},
		{"a record after the end", full + lines[1], "line 14: invalid: a record after the end line"},
		{"a line over 1 MiB", strings.Join(lines[:1], "") + strings.Repeat(" ", 2<<20) + "\n", "line 2: invalid: longer than 1048576 bytes"},
		{"an end line in a version 1 export", strings.Replace(full, `"version":2`, `"version":1`, 1), "line 13: invalid: an end line in a version 1 export"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url := srv.URL() + "?prefix=cut" + string(rune('a'+i))
			_, _, err := runCLI(t, tt.input, "import", "--store", url)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("import: %v, want %q", err, tt.want)
			}
			r, err := redisstore.Open(url, redisstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if snap := take(t, r); len(snap.Accounts)+len(snap.Keys)+len(snap.Grants)+len(snap.Owned) != 0 {
				t.Fatalf("a refused import wrote records: %+v", snap)
			}
		})
	}
	v1 := strings.Replace(strings.Join(lines[:12], ""), `"version":2`, `"version":1`, 1)
	if _, stderr, err := runCLI(t, v1, "import", "--store", srv.URL()+"?prefix=v1"); err != nil || !strings.Contains(stderr, "imported 3 accounts, 4 keys, 3 grants, 1 repositories") {
		t.Fatalf("import of a version 1 export: %v, %q", err, stderr)
	}
}

// seededExport is `regoauth export` of a bolt store holding storetest.Seed's records.
func seededExport(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src.db")
	s := openBolt(t, src)
	storetest.Seed(t, s)
	s.Close()
	export, stderr, err := runCLI(t, "", "export", "--store", "bolt://"+src)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	return export
}
