package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
)

// timed is one answer and when it came.
type timed struct {
	at     time.Time
	status int
	err    error
}

// TestRedisKilledUnderLoad kills the redis-server under a `regoauth serve` that caches
// principals for a minute while clients request tokens, then starts an empty redis-server on
// the same port, then restores the records: no token is issued later than a second after the
// kill (the documented cache window: the cache serves only while its invalidation channel
// answered within 0.8 s); while Redis is down every answer is a 503; the empty Redis's answers
// are 401 (the cache from before the outage is gone, never a token from it); once the records
// are restored, tokens flow again without a restart.
func TestRedisKilledUnderLoad(t *testing.T) {
	srv := redistest.Start(t)
	storeURL := srv.URL() + "?prefix=killed"
	seed := seedRecords(t)
	importRecords(t, storeURL, seed.records...)
	// Failures while the records are gone must not spend the budgets the restored key needs.
	s := startServer(t, serveConfig{storeURL: storeURL, cache: redisCache, extra: "limits: {auth_failures: {enabled: false}}", noAdmin: true})

	var mu sync.Mutex
	var seen []timed
	var stop atomic.Bool
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	q := url.Values{"service": {serveService}, "scope": {"repository:image:pull"}}.Encode()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				req, _ := http.NewRequest("GET", s.realm()+"?"+q, nil)
				req.SetBasicAuth("user1", seed.key)
				resp, err := client.Do(req)
				status := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				seen = append(seen, timed{time.Now(), status, err})
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	between := func(from, to time.Time) []timed {
		mu.Lock()
		defer mu.Unlock()
		var out []timed
		for _, r := range seen {
			if !r.at.Before(from) && r.at.Before(to) {
				out = append(out, r)
			}
		}
		return out
	}

	start := time.Now()
	time.Sleep(time.Second)
	killed := time.Now()
	srv.Kill()
	time.Sleep(3 * time.Second)
	restarted := time.Now()
	startEmptyRedis(t, srv.Port())
	time.Sleep(3 * time.Second)
	restored := time.Now()
	importRecords(t, storeURL, seed.records...)
	recovered := eventually(t, 5*time.Second, "tokens after the records were restored", func() bool {
		return s.token(tokenRequest{user: "user1", key: seed.key, scopes: []string{"repository:image:pull"}}).status == http.StatusOK
	})
	recoveredAt := time.Now()
	if got := s.actions(t, "user1", seed.key, "repository:image:pull"); len(got) != 1 || got[0] != "pull" {
		t.Fatalf("after recovery the token grants %v", got)
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	count := func(rs []timed) map[int]int {
		m := map[int]int{}
		for _, r := range rs {
			if r.err != nil {
				t.Fatalf("a client request failed at %s: %v", r.at.Sub(start), r.err)
			}
			m[r.status]++
		}
		return m
	}
	before := count(between(start, killed))
	if len(before) != 1 || before[http.StatusOK] == 0 {
		t.Fatalf("before the kill: %v", before)
	}
	var lastToken time.Time
	for _, r := range between(killed, restarted) {
		if r.status == http.StatusOK {
			lastToken = r.at
		}
	}
	if !lastToken.IsZero() && lastToken.Sub(killed) > time.Second {
		t.Fatalf("a token was issued %s after Redis was killed, beyond the one-second cache window", lastToken.Sub(killed))
	}
	down := count(between(killed.Add(time.Second), restarted))
	if len(down) != 1 || down[http.StatusServiceUnavailable] == 0 {
		t.Fatalf("while Redis was down (from a second after the kill): %v, want only 503", down)
	}
	emptyAnswers := count(between(restarted, restored))
	if emptyAnswers[http.StatusOK] != 0 || emptyAnswers[http.StatusUnauthorized] == 0 {
		t.Fatalf("with an empty Redis: %v, want 401 (and 503 until it answered), never a token", emptyAnswers)
	}
	for status := range emptyAnswers {
		if status != http.StatusUnauthorized && status != http.StatusServiceUnavailable {
			t.Fatalf("with an empty Redis: %v", emptyAnswers)
		}
	}
	// Requests sent before the restore may still be answering at recoveredAt.
	after := count(between(recoveredAt.Add(100*time.Millisecond), time.Now()))
	if after[http.StatusOK] == 0 || len(after) != 1 {
		t.Fatalf("after recovery: %v", after)
	}
	lastCached := "none"
	if !lastToken.IsZero() {
		lastCached = lastToken.Sub(killed).Round(time.Millisecond).String()
	}
	t.Logf("before %v; last token %s after the kill; down %v; empty Redis %v; recovered %s after the restore; after %v",
		before, lastCached, down, emptyAnswers, recovered.Round(time.Millisecond), after)
}

// seed is a store's records: user1 with a known key and pull on image.
type seed struct {
	records []keystore.Record
	key     string
}

func seedRecords(t *testing.T) seed {
	t.Helper()
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	return seed{key: plain, records: []keystore.Record{
		{Account: &keystore.Account{Name: "user1", Created: now}},
		{Key: &keystore.Key{ID: id, Account: "user1", Name: "ci", Hash: hash, Created: now}},
		{Grant: &keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: "user1"}, Repository: "image", Actions: []string{"pull"}}},
	}}
}

// startEmptyRedis starts a redis-server with no data on port, as after losing the disk.
func startEmptyRedis(t *testing.T, port int) *process {
	t.Helper()
	p := startProcess(t, "redis-server (empty)", nil, redistest.Program(t, "redis-server"),
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", t.TempDir(), "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--logfile", "")
	p.waitFor(t, "Redis answering", func() bool {
		c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
		defer c.Close()
		return c.Ping(context.Background()).Err() == nil
	})
	return p
}

// loopDisk is an ext4 file system in a file, mounted on a folder, so that a test can fill it or
// make it fail read-only under a running server.
type loopDisk struct {
	t           *testing.T
	img, dir    string
	mounted     bool
	triggerPath string
}

// newLoopDisk needs root (mount) and e2fsprogs; without them the test is skipped, or fails
// under REGOAUTH_E2E=1.
func newLoopDisk(t *testing.T, size int64) *loopDisk {
	t.Helper()
	for _, name := range []string{"mkfs.ext4", "e2fsck", "mount", "umount", "findmnt"} {
		tool(t, name)
	}
	if os.Geteuid() != 0 {
		if strict() {
			t.Fatal("mounting a test file system needs root, and REGOAUTH_E2E=1 requires this test")
		}
		t.Skip("mounting a test file system needs root")
	}
	d := &loopDisk{t: t, img: filepath.Join(t.TempDir(), "disk.img"), dir: filepath.Join(t.TempDir(), "data")}
	f, err := os.Create(d.img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	os.MkdirAll(d.dir, 0o700)
	// No blocks reserved for root: the test runs as root and must be able to fill the disk.
	must(t, nil, "mkfs.ext4", "-q", "-F", "-m", "0", d.img)
	d.mount()
	t.Cleanup(d.unmount)
	return d
}

func (d *loopDisk) mount() {
	d.t.Helper()
	must(d.t, nil, "mount", "-o", "loop,errors=remount-ro", d.img, d.dir)
	d.mounted = true
	dev := strings.TrimSpace(must(d.t, nil, "findmnt", "-n", "-o", "SOURCE", d.dir))
	d.triggerPath = "/sys/fs/ext4/" + filepath.Base(dev) + "/trigger_fs_error"
}

// unmount releases the file system (and its loop device, which mount -o loop frees with it).
func (d *loopDisk) unmount() {
	if !d.mounted {
		return
	}
	if res := run(d.t, nil, "umount", d.dir); res.code != 0 {
		run(d.t, nil, "umount", "-l", d.dir)
	}
	d.mounted = false
}

// fill takes all but leave bytes of the free space.
func (d *loopDisk) fill(leave int64) string {
	d.t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.dir, &st); err != nil {
		d.t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	path := filepath.Join(d.dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, free-leave); err != nil {
		d.t.Fatalf("fallocate %d bytes: %v", free-leave, err)
	}
	return path
}

// failReadOnly makes the kernel turn the file system read-only as after a disk error
// (errors=remount-ro): files open for writing get EROFS from now on.
func (d *loopDisk) failReadOnly() {
	d.t.Helper()
	if err := os.WriteFile(d.triggerPath, []byte("regoauth e2e: simulated disk error"), 0o200); err != nil {
		d.t.Fatalf("triggering a file system error: %v", err)
	}
	eventually(d.t, 5*time.Second, "the file system turning read-only", func() bool {
		return strings.Contains(must(d.t, nil, "findmnt", "-n", "-o", "OPTIONS", d.dir), "ro")
	})
}

// TestBoltDiskFullThenReadOnly runs `regoauth serve` on a bolt file in a small ext4 file system:
// filled up, writes through the admin API fail with a 503 naming the cause while tokens keep
// being issued, and writes work again once space is freed, without a restart; turned read-only
// by a (simulated) disk error, the same; after the server stops, the file system is checked and
// mounted again, and a new server finds exactly the records whose writes succeeded.
func TestBoltDiskFullThenReadOnly(t *testing.T) {
	disk := newLoopDisk(t, 16<<20)
	signing := t.TempDir() // the signing files live off the disk under test
	generateSigningKey(t, signing, "", false)
	keyFile, certFile := filepath.Join(signing, "signing-key.pem"), filepath.Join(signing, "signing-cert.pem")
	config := serveConfig{dir: disk.dir, keyFile: keyFile, certFile: certFile}
	s := startServer(t, config)
	adminKey := s.AdminKey
	key := s.account(t, "user1")
	s.admin(t, "grants", "add", "--account", "user1", "--repo", "image", "--actions", "pull")
	adm, err := admin.NewClient("http://"+s.Addr, adminKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tokensWork := func(when string) {
		t.Helper()
		for range 5 {
			if got := s.actions(t, "user1", key, "repository:image:pull"); len(got) != 1 || got[0] != "pull" {
				t.Fatalf("%s: the token grants %v", when, got)
			}
		}
		if code, body := s.readyz(); code != http.StatusOK {
			t.Fatalf("%s: /readyz %d %v", when, code, body)
		}
	}
	written := []string{"image"}
	grant := func(repo string) error {
		_, err := adm.AddGrant(ctx, admin.GrantRequest{Account: "user1", Repository: repo, Actions: []string{"pull"}})
		if err == nil {
			written = append(written, repo)
		}
		return err
	}
	wantRefused := func(err error, cause string) {
		t.Helper()
		var apiErr *admin.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable || apiErr.Code != "store_not_writable" ||
			!strings.Contains(apiErr.Message, cause) || strings.Contains(apiErr.Message, disk.dir) {
			t.Fatalf("want a 503 store_not_writable naming %q (and no path), got %v", cause, err)
		}
	}

	// Full.
	filler := disk.fill(256 << 10)
	long := strings.Repeat("x", 200)
	var full error
	for i := 0; i < 20000 && full == nil; i++ {
		full = grant(fmt.Sprintf("fill/%s%05d", long, i))
	}
	if full == nil {
		t.Fatal("20000 grants fit in 256 KiB")
	}
	wantRefused(full, "no space left on device")
	t.Logf("the disk was full after %d grants", len(written)-1)
	tokensWork("with the disk full")
	os.Remove(filler)
	if err := grant("after/full"); err != nil {
		t.Fatalf("a write once space was freed: %v", err)
	}
	tokensWork("after space was freed")

	// Read-only.
	disk.failReadOnly()
	wantRefused(grant("during/readonly"), "read-only file system")
	tokensWork("with the disk read-only")
	res := run(t, s.cliEnv(adminKey), binary, "grants", "add", "--account", "user1", "--repo", "cli/readonly", "--actions", "pull")
	if res.code == 0 || strings.Count(strings.TrimSpace(res.out), "\n") != 0 || !strings.Contains(res.out, "read-only") {
		t.Fatalf("the CLI during the read-only disk: exit %d\n%s", res.code, res.out)
	}
	s.proc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.proc.exited:
		if s.proc.err != nil {
			t.Fatalf("regoauth serve exited with %v on a read-only disk", s.proc.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("regoauth serve did not stop")
	}

	// Checked and mounted again: exactly what was written.
	disk.unmount()
	if res := run(t, nil, "e2fsck", "-fy", disk.img); res.code >= 4 {
		t.Fatalf("e2fsck: exit %d\n%s", res.code, res.out)
	}
	disk.mount()
	config.noAdmin = true
	s2 := startServer(t, config)
	if got := s2.actions(t, "user1", key, "repository:image:pull"); len(got) != 1 {
		t.Fatalf("after remounting, the token grants %v", got)
	}
	adm2, _ := admin.NewClient("http://"+s2.Addr, adminKey, nil)
	grants, err := adm2.ListGrants(ctx, admin.GrantRequest{Account: "user1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range grants {
		got = append(got, g.Repository)
	}
	slices.Sort(got)
	slices.Sort(written)
	if !slices.Equal(got, written) {
		t.Fatalf("after remounting: %d grants, %d were written", len(got), len(written))
	}
	if _, err := adm2.AddGrant(ctx, admin.GrantRequest{Account: "user1", Repository: "after/remount", Actions: []string{"pull"}}); err != nil {
		t.Fatalf("a write after remounting: %v", err)
	}
}
