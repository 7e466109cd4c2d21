package policy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/regoauth/regoauth/policies"
)

// genBundle is a bundle of generation gen: its decision grants the actions in its data only
// when the policy and the data come from the same generation, so a decision made on the policy
// of one generation and the data of another grants nothing, and shows.
func genBundle(gen int, actions ...string) map[string]string {
	raw, _ := json.Marshal(actions)
	return map[string]string{
		"authz.rego": fmt.Sprintf(`package regoauth.authz

decision := {"access": [{"type": s.type, "name": s.name, "actions": granted} | some s in input.scopes]}

default granted := []

granted := data.gen.actions if data.gen.n == %d
`, gen),
		"data.json": fmt.Sprintf(`{"gen": {"n": %d, "actions": %s}}`, gen, raw),
	}
}

func genFS(gen int, actions ...string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, body := range genBundle(gen, actions...) {
		fsys[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return fsys
}

// granted decides one pull,push request and returns what it allows on "image".
func granted(t testing.TB, e *Engine) []string {
	t.Helper()
	d, err := e.Decide(ctx, &Input{Scopes: []Scope{{Type: "repository", Name: "image", Actions: []string{"pull", "push"}}}})
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return d.Allowed("repository", "image")
}

func grants(want ...string) func(t testing.TB, e *Engine) bool {
	return func(t testing.TB, e *Engine) bool { return reflect.DeepEqual(granted(t, e), want) }
}

func started(t *testing.T, opts Options) *Engine {
	t.Helper()
	e := New(opts)
	if err := e.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { e.Stop(ctx) })
	return e
}

func bundleError(e *Engine, name string) string {
	for _, b := range e.Status().Bundles {
		if b.Name == name {
			return b.Error
		}
	}
	return "no status for " + name
}

func TestLocalDirectoryReloadsOnChange(t *testing.T) {
	dir := writeTree(t, t.TempDir(), genBundle(1, "g1"))
	reg := prometheus.NewRegistry()
	e := started(t, Options{Source: Source{Dir: dir}, Registerer: reg})
	if !e.Ready() || !grants("g1")(t, e) {
		t.Fatalf("ready=%v granted=%v, want g1", e.Ready(), granted(t, e))
	}
	gen := e.Status().Generation

	writeTree(t, dir, genBundle(2, "g2"))
	eventually(t, 5*time.Second, "reload to generation 2", func() bool { return grants("g2")(t, e) })
	if e.Status().Generation <= gen {
		t.Fatalf("generation %d did not advance from %d", e.Status().Generation, gen)
	}

	// A broken policy is refused: the old revision keeps deciding, and the failure shows in the
	// status and the metrics.
	writeTree(t, dir, map[string]string{"authz.rego": "package regoauth.authz\n\ndecision := {\n"})
	eventually(t, 5*time.Second, "the broken bundle's refusal", func() bool { return bundleError(e, LocalBundle) != "" })
	if !grants("g2")(t, e) {
		t.Fatalf("after a broken bundle, granted = %v, want the old g2", granted(t, e))
	}
	if v := testutil.ToFloat64(e.metrics.bundleFailing.WithLabelValues(LocalBundle)); v != 1 {
		t.Fatalf("bundle_failing = %v, want 1", v)
	}

	writeTree(t, dir, genBundle(3, "g3"))
	eventually(t, 5*time.Second, "recovery to generation 3", func() bool { return grants("g3")(t, e) })
	if err := bundleError(e, LocalBundle); err != "" {
		t.Fatalf("error still reported after recovery: %s", err)
	}
	if v := testutil.ToFloat64(e.metrics.bundleFailing.WithLabelValues(LocalBundle)); v != 0 {
		t.Fatalf("bundle_failing = %v after recovery, want 0", v)
	}
}

func TestStartFailsOnBrokenLocalBundle(t *testing.T) {
	for name, src := range map[string]Source{
		"syntax error": {Dir: writeTree(t, t.TempDir(), map[string]string{"p.rego": "package regoauth.authz\n\ndecision := {\n"})},
		"missing":      {Dir: filepath.Join(t.TempDir(), "nope")},
		"both":         {Dir: t.TempDir(), Bundle: "x.tar.gz"},
		"bad config":   {OPAConfig: []byte("services: [unclosed")},
		"unused key":   {Signing: &Signing{Key: "k"}},
	} {
		t.Run(name, func(t *testing.T) {
			e := New(Options{Source: src})
			defer e.Stop(ctx)
			if err := e.Start(ctx); err == nil {
				t.Fatal("Start accepted it")
			}
			if e.Ready() {
				t.Fatal("ready without a policy")
			}
		})
	}
}

// TestBundlesConfigureTheLibrary: a bundle of data alone (roots regoauth/config) configures the
// built-in library; a bundle that claims the library's roots is refused beside it.
func TestBundlesConfigureTheLibrary(t *testing.T) {
	dir := writeTree(t, t.TempDir(), map[string]string{
		".manifest": `{"revision": "cfg-1", "roots": ["regoauth/config"]}`,
		"data.json": `{"regoauth": {"config": {"public_repositories": ["library/*"]}}}`,
	})
	e := started(t, Options{Source: Source{Builtin: policies.FS, Dir: dir}})
	if got := e.Revision(); got != "builtin,policy@cfg-1" {
		t.Fatalf("revision = %q", got)
	}
	d, err := e.Decide(ctx, &Input{Client: Client{IP: "192.0.2.1"}, Principal: Principal{Anonymous: true, Groups: []string{}, Roles: []string{}},
		Grants: []Grant{}, Owned: []string{},
		Scopes: []Scope{{Type: "repository", Name: "library/alpine", Actions: []string{"pull", "push"}}}})
	if err != nil || !reflect.DeepEqual(d.Allowed("repository", "library/alpine"), []string{"pull"}) {
		t.Fatalf("anonymous pull of a public repository: %+v %v", d, err)
	}

	overlapping := writeTree(t, t.TempDir(), map[string]string{"p.rego": "package regoauth.authz\n\ndecision := {\"access\": []}\n"})
	e2 := New(Options{Source: Source{Builtin: policies.FS, Dir: overlapping}})
	defer e2.Stop(ctx)
	if err := e2.Start(ctx); err == nil || !strings.Contains(err.Error(), "overlap") || !strings.Contains(err.Error(), "builtin: false") {
		t.Fatalf("a bundle overlapping the library's roots: %v", err)
	}
}

func TestSignedTarball(t *testing.T) {
	priv, pub := rsaKeyPair(t)
	otherPriv, _ := rsaKeyPair(t)
	work := t.TempDir()
	build := func(gen int, args ...string) string {
		src := writeTree(t, filepath.Join(work, fmt.Sprintf("src%d-%d", gen, len(args))), genBundle(gen, fmt.Sprintf("g%d", gen)))
		return opaBuild(t, src, filepath.Join(work, fmt.Sprintf("b%d-%d.tar.gz", gen, len(args))), args...)
	}
	signed := func(gen int) string { return build(gen, "--signing-key", priv, "--signing-alg", "RS256") }
	live := filepath.Join(t.TempDir(), "bundle.tar.gz")
	replaceFile(t, signed(1), live)
	signing := &Signing{Key: pub, Algorithm: "RS256"}

	unsignedStart := filepath.Join(t.TempDir(), "unsigned.tar.gz")
	replaceFile(t, build(1), unsignedStart)
	e0 := New(Options{Source: Source{Bundle: unsignedStart, Signing: signing}})
	if err := e0.Start(ctx); err == nil || e0.Ready() {
		t.Fatalf("an unsigned bundle started a signing engine: %v", err)
	}
	e0.Stop(ctx)

	e := started(t, Options{Source: Source{Bundle: live, Signing: signing}})
	if !grants("g1")(t, e) {
		t.Fatalf("granted = %v, want g1", granted(t, e))
	}
	tampered := filepath.Join(work, "tampered.tar.gz")
	rewriteTarball(t, signed(2), tampered, "data.json", `{"gen": {"n": 2, "actions": ["everything"]}}`)
	for _, tc := range []struct{ name, file string }{
		{"unsigned", build(2)},
		{"tampered", tampered},
		{"signed with another key", build(2, "--signing-key", otherPriv, "--signing-alg", "RS256")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.Status().Bundles[0].LastAttempt
			replaceFile(t, tc.file, live)
			eventually(t, 5*time.Second, "the refusal", func() bool {
				b := e.Status().Bundles[0]
				return b.LastAttempt.After(before) && b.Error != ""
			})
			if !grants("g1")(t, e) {
				t.Fatalf("after the refusal granted = %v, want the old g1", granted(t, e))
			}
		})
	}
	replaceFile(t, signed(3), live)
	eventually(t, 5*time.Second, "the next signed bundle", func() bool { return grants("g3")(t, e) })
}

// bundleServer serves one bundle tarball at /bundles/authz.tar.gz, swappable, like a bundle
// server an operator runs.
type bundleServer struct {
	*httptest.Server
	body     atomic.Pointer[[]byte]
	requests atomic.Int64
}

func newBundleServer(t *testing.T) *bundleServer {
	s := &bundleServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		b := s.body.Load()
		if r.URL.Path != "/bundles/authz.tar.gz" || b == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(*b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *bundleServer) serve(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.body.Store(&raw)
}

// TestBundleServerPolling: an OPA configuration as OPA users write it (services, bundles with
// polling, keys, signing) loads bundles from a real HTTP server and follows its changes;
// broken and unsigned bundles are refused.
func TestBundleServerPolling(t *testing.T) {
	priv, pub := rsaKeyPair(t)
	work := t.TempDir()
	build := func(gen int, sign bool) string {
		src := writeTree(t, filepath.Join(work, fmt.Sprintf("src%d-%v", gen, sign)), genBundle(gen, fmt.Sprintf("g%d", gen)))
		var args []string
		if sign {
			args = []string{"--signing-key", priv, "--signing-alg", "RS256", "--revision", fmt.Sprintf("rev%d", gen)}
		}
		return opaBuild(t, src, filepath.Join(work, fmt.Sprintf("b%d-%v.tar.gz", gen, sign)), args...)
	}
	srv := newBundleServer(t)
	srv.serve(t, build(1, true))
	keyJSON, _ := json.Marshal(pub)
	cfg := fmt.Sprintf(`
services:
  bundles:
    url: %s
bundles:
  authz:
    service: bundles
    resource: bundles/authz.tar.gz
    polling: {min_delay_seconds: 1, max_delay_seconds: 1}
    signing: {keyid: release}
keys:
  release:
    algorithm: RS256
    key: %s
`, srv.URL, keyJSON)
	e := started(t, Options{Source: Source{OPAConfig: []byte(cfg)}})
	eventually(t, 10*time.Second, "the first bundle from the server", e.Ready)
	if !grants("g1")(t, e) || e.Revision() != "authz@rev1" {
		t.Fatalf("granted %v, revision %q", granted(t, e), e.Revision())
	}

	srv.serve(t, build(2, true))
	eventually(t, 10*time.Second, "the second bundle", func() bool { return grants("g2")(t, e) })

	for _, tc := range []struct{ name, file string }{
		{"unsigned", build(3, false)},
		{"not a bundle", writeTree(t, t.TempDir(), map[string]string{"junk": "not gzip"}) + "/junk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.requests.Load()
			srv.serve(t, tc.file)
			eventually(t, 10*time.Second, "the refusal", func() bool { return srv.requests.Load() > before+1 && bundleError(e, "authz") != "" })
			if !grants("g2")(t, e) || e.Revision() != "authz@rev2" {
				t.Fatalf("after the refusal: granted %v, revision %q", granted(t, e), e.Revision())
			}
		})
	}
	srv.serve(t, build(4, true))
	eventually(t, 10*time.Second, "recovery", func() bool { return grants("g4")(t, e) })
}

// TestSwapIsAtomicUnderConcurrentDecisions swaps the policy and its data many times while
// decisions run: none fails, and each is made wholly by one generation (a mix of one
// generation's policy and another's data would grant nothing).
func TestSwapIsAtomicUnderConcurrentDecisions(t *testing.T) {
	e := New(Options{})
	if err := e.LoadFS(ctx, genFS(0, "g0"), "gen"); err != nil {
		t.Fatal(err)
	}
	const swaps = 40
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var decisions atomic.Int64
	errs := make(chan error, 8)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := -1
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := e.Decide(ctx, &Input{Scopes: []Scope{{Type: "repository", Name: "image", Actions: []string{"pull"}}}})
				if err != nil {
					errs <- err
					return
				}
				got := d.Allowed("repository", "image")
				var gen int
				if len(got) != 1 || func() bool { _, err := fmt.Sscanf(got[0], "g%d", &gen); return err != nil }() {
					errs <- fmt.Errorf("decision %v mixes generations", got)
					return
				}
				if gen < last {
					errs <- fmt.Errorf("generation went back from %d to %d", last, gen)
					return
				}
				last = gen
				decisions.Add(1)
			}
		}()
	}
	for gen := 1; gen <= swaps; gen++ {
		if err := e.LoadFS(ctx, genFS(gen, fmt.Sprintf("g%d", gen)), "gen"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if decisions.Load() < swaps {
		t.Fatalf("only %d decisions ran during %d swaps", decisions.Load(), swaps)
	}
	if !grants(fmt.Sprintf("g%d", swaps))(t, e) {
		t.Fatalf("final generation not active: %v", granted(t, e))
	}
}
