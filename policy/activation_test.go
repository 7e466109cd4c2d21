package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/policies"
)

// shopExtension is a bundle extending the library under data.regoauth.extensions: its policy
// permits nothing, and its test file, as `opa test` users write one, defines a rule named
// permit in a test package that the library would read as an extension granting push on
// victim/app to anyone.
var shopExtension = map[string]string{
	".manifest": `{"revision": "shop-1", "roots": ["regoauth/extensions"]}`,
	"shop/shop.rego": `package regoauth.extensions.shop

namespaces contains "shop"
`,
	"shop/shop_test.rego": `package regoauth.extensions.shop_test

import data.regoauth.extensions.shop

permit contains ["repository", "victim/app", "push"]

test_claims_its_namespace if "shop" in shop.namespaces
`,
}

// TestTestFilesOfConfiguredBundlesTakeNoPart: however a bundle arrives (a directory, a
// tarball built by `opa build`, which keeps test files, or a bundle server), its _test.rego
// modules are left out of the policy, as they are from the built-in library: a test package
// beside an extension grants nothing.
func TestTestFilesOfConfiguredBundlesTakeNoPart(t *testing.T) {
	work := t.TempDir()
	dir := writeTree(t, filepath.Join(work, "shop"), shopExtension)
	tarball := opaBuild(t, dir, filepath.Join(work, "shop.tar.gz"))
	srv := newBundleServer(t)
	srv.serve(t, tarball)
	cfg := fmt.Sprintf(`
services:
  bundles:
    url: %s
bundles:
  shop:
    service: bundles
    resource: bundles/authz.tar.gz
    polling: {min_delay_seconds: 1, max_delay_seconds: 1}
`, srv.URL)

	for name, src := range map[string]Source{
		"directory":     {Builtin: policies.FS, Dir: dir},
		"tarball":       {Builtin: policies.FS, Bundle: tarball},
		"bundle server": {Builtin: policies.FS, OPAConfig: []byte(cfg)},
	} {
		t.Run(name, func(t *testing.T) {
			e := started(t, Options{Source: src})
			eventually(t, 10*time.Second, "the shop bundle", func() bool { return strings.Contains(e.Revision(), "@shop-1") })
			in := storyInput()
			in.Principal = Principal{Account: "mallory", Groups: []string{}, Roles: []string{}, Key: &Key{ID: "k", Name: "laptop"}}
			in.Grants = []Grant{}
			in.Scopes = []Scope{{Type: "repository", Name: "victim/app", Actions: []string{"pull", "push"}}}
			d, err := e.Decide(ctx, in)
			if err != nil || !d.Defined {
				t.Fatalf("the library does not decide: %+v %v", d, err)
			}
			if got := d.Allowed("repository", "victim/app"); len(got) != 0 {
				t.Fatalf("a test package of the bundle granted %v on victim/app", got)
			}
		})
	}
}

// TestARefusedRevisionLeavesNothingHalfActive: a bundle whose decision query cannot be
// prepared, or which leaves no Rego module at all, is refused before its data is committed,
// like a bundle that does not compile: the previous revision keeps deciding over its own data,
// and the refusal shows in the bundle's status. (genBundle's policy grants only over the data
// of its own generation, so old rules over new data would grant nothing.)
func TestARefusedRevisionLeavesNothingHalfActive(t *testing.T) {
	for name, next := range map[string]map[string]string{
		"decision is a function": {
			"authz.rego": "package regoauth.authz\n\ndecision(x) := {\"access\": x}\n",
			"data.json":  `{"gen": {"n": 2, "actions": ["g2"]}}`,
		},
		"no modules": {
			"data.json": `{"gen": {"n": 2, "actions": ["g2"]}}`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeTree(t, t.TempDir(), genBundle(1, "g1"))
			e := started(t, Options{Source: Source{Dir: dir}})
			if !grants("g1")(t, e) {
				t.Fatalf("granted %v, want g1", granted(t, e))
			}
			gen := e.Status().Generation

			writeTree(t, dir, next)
			if _, ok := next["authz.rego"]; !ok {
				if err := os.Remove(filepath.Join(dir, "authz.rego")); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 10*time.Second, "the refusal", func() bool { return bundleError(e, LocalBundle) != "" })
			if got := granted(t, e); !reflect.DeepEqual(got, []string{"g1"}) {
				t.Fatalf("after the refusal granted %v, want the previous revision's g1 over its own data", got)
			}
			if g := e.Status().Generation; g != gen {
				t.Fatalf("generation %d after a refused bundle, want %d", g, gen)
			}

			writeTree(t, dir, genBundle(3, "g3"))
			eventually(t, 10*time.Second, "recovery to generation 3", func() bool { return grants("g3")(t, e) })
		})
	}
}

// TestDecisionsWhileThePolicyEnds: onCompile ends the active revision when a policy it was not
// given cannot be prepared. Decisions made meanwhile are ErrNotReady or made wholly by the
// revision that was active, never a panic.
func TestDecisionsWhileThePolicyEnds(t *testing.T) {
	e := New(Options{DecisionCacheBytes: 1 << 20})
	if err := e.LoadFS(ctx, genFS(1, "g1"), "gen"); err != nil {
		t.Fatal(err)
	}
	r := e.active.Load()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				e.active.Store(nil)
				e.active.Store(r)
			}
		}
	}()
	for range 20000 {
		d, err := e.Decide(ctx, &Input{Scopes: []Scope{{Type: "repository", Name: "image", Actions: []string{"pull", "push"}}}})
		switch {
		case errors.Is(err, ErrNotReady):
		case err != nil:
			t.Fatalf("Decide: %v", err)
		case !reflect.DeepEqual(d.Allowed("repository", "image"), []string{"g1"}):
			t.Fatalf("granted %v, want g1", d.Allowed("repository", "image"))
		}
	}
	close(stop)
	<-done
}
