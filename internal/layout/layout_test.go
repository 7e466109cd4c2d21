package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

const module = "github.com/regoauth/regoauth"

// allowed is the package graph: for every package of the module, the project packages its
// non-test code may import. A package missing here, or an import missing from its list, fails
// the test: a new edge is a decision to make here, in the open.
var allowed = map[string][]string{
	// The leaves: the request path's stages and the shipped policy import no project package.
	"tokens":   {},
	"keystore": {},
	"policy":   {},
	"policies": {},
	"bundles":  {},

	// Key store backends and their test kits know the keystore contract only; Redis also the
	// subscription liveness it shares with throttle's Redis backend.
	"keystore/boltstore":            {"keystore"},
	"keystore/redisstore":           {"internal/redissub", "keystore"},
	"keystore/memstore":             {"keystore"},
	"keystore/storetest":            {"keystore"},
	"keystore/redisstore/redistest": {},

	// Failure budgets of authentication: a library of its own, in process or in Redis. authz
	// and admin know its refusals only by their Retry-After.
	"throttle": {"internal/redissub"},

	// The consumers of the leaves, each through its own small interfaces.
	"authz/input": {"keystore", "policy"},
	"authz":       {"authz/input", "keystore", "policy", "tokens"},
	"admin":       {"authz/input", "keystore", "policy"},
	"console":     {"admin", "keystore", "policy"},
	"devstack":    {},

	// Assembly and the command line: the only places that know the concrete stores.
	"server":       {"admin", "authz", "console", "keystore", "keystore/boltstore", "keystore/redisstore", "policies", "policy", "throttle", "tokens"},
	"cmd/regoauth": {"admin", "devstack", "internal/secretfile", "keystore", "policies", "policy", "server", "tokens"},

	"internal/secretfile": {"tokens"},
	"internal/opacli":     {},
	// A Redis subscription proven alive by pings: cache invalidations and blocked keys.
	"internal/redissub": {},
	"internal/testenv":  {"keystore", "keystore/memstore", "policies", "policy"},
	// A log destination tests read while the code under test writes (not for the leaves'
	// tests, which import nothing of the project).
	"internal/testenv/logbuf": {},
	"internal/layout":         {},
	"internal/isolation":      {},

	// Measurement and proof.
	"bench/redisscale": {"internal/secretfile", "keystore", "keystore/redisstore"},
	"bench/keycost":    {"admin", "internal/secretfile", "keystore"},
	"bench/tokenload":  {"internal/secretfile", "keystore", "tokens"},
	"e2e":              {},
	"e2e/registry3":    {"devstack"},
	// The compose test's stand-in for the registry:3 image: distribution's own command.
	"e2e/compose/standins/registry": {},
	"docs":                          {},
}

// leaves import no project package, directly or through another.
var leaves = []string{"tokens", "keystore", "policy", "policies"}

// leafTests are the project packages the tests of a leaf may use besides the leaf itself: tools
// that run opa, and the library the engine is tested with.
var leafTests = map[string][]string{
	"tokens":   {},
	"keystore": {},
	"policy":   {"internal/opacli", "policies"},
	"policies": {"internal/opacli"},
}

// concreteStores are the backends; knowing them is assembly's job.
var concreteStores = []string{"keystore/boltstore", "keystore/redisstore", "keystore/memstore"}

// storeKnowers may import a concrete store in non-test code: the server assembly, and the
// load benchmark that drives Redis directly. Test kits are tools, not knowledge: testenv.
var storeKnowers = []string{"server", "bench/redisscale", "internal/testenv"}

type pkg struct {
	ImportPath   string
	Doc          string
	GoFiles      []string
	Imports      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
}

// rel turns the module's import paths into paths relative to it, dropping every other path.
func rel(paths []string) []string {
	var out []string
	for _, p := range paths {
		if p == module {
			out = append(out, ".")
		} else if r, ok := strings.CutPrefix(p, module+"/"); ok {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var (
	listOnce sync.Once
	listed   map[string]pkg
	listErr  error
)

// listPackages lists the module's packages once per test binary.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	listOnce.Do(func() { listed, listErr = goList() })
	if listErr != nil {
		t.Fatal(listErr)
	}
	return listed
}

func goList() (map[string]pkg, error) {
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Doc,GoFiles,Imports,Deps,TestImports,XTestImports", "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		name := rel([]string{p.ImportPath})[0]
		p.Imports, p.Deps = rel(p.Imports), rel(p.Deps)
		p.TestImports = rel(append(p.TestImports, p.XTestImports...))
		pkgs[name] = p
	}
	if len(pkgs) < len(allowed)/2 {
		return nil, fmt.Errorf("go list found only %d packages", len(pkgs))
	}
	return pkgs, nil
}

// TestImportsFollowTheGraph holds every package's imports to allowed.
func TestImportsFollowTheGraph(t *testing.T) {
	pkgs := listPackages(t)
	for name, p := range pkgs {
		want, ok := allowed[name]
		if !ok {
			t.Errorf("package %s is not in the graph of internal/layout: add it with the project packages it may import", name)
			continue
		}
		for _, imp := range p.Imports {
			if !slices.Contains(want, imp) {
				t.Errorf("%s imports %s, which the graph does not allow (allowed: %v)", name, imp, want)
			}
		}
	}
	for name := range allowed {
		if _, ok := pkgs[name]; !ok {
			t.Errorf("the graph names %s, which is not a package any more", name)
		}
	}
}

// TestLeavesImportNothing: tokens, keystore, policy and the policy library depend on no project
// package at all, and their tests only on test tools.
func TestLeavesImportNothing(t *testing.T) {
	pkgs := listPackages(t)
	for _, leaf := range leaves {
		p := pkgs[leaf]
		if len(p.Deps) > 0 {
			t.Errorf("%s depends on %v; it must import no project package", leaf, p.Deps)
		}
		for _, imp := range p.TestImports {
			if imp != leaf && !slices.Contains(leafTests[leaf], imp) {
				t.Errorf("the tests of %s import %s", leaf, imp)
			}
		}
	}
}

// TestOnlyAssemblyKnowsTheStores: no package but the server assembly, what uses it, and the
// tools that need a real backend depends on a concrete key store; authz and admin do not know
// each other.
func TestOnlyAssemblyKnowsTheStores(t *testing.T) {
	pkgs := listPackages(t)
	for name, p := range pkgs {
		if slices.Contains(storeKnowers, name) || slices.Contains(p.Deps, "server") {
			continue // it is the assembly, or it uses the assembly
		}
		for _, store := range concreteStores {
			if slices.Contains(p.Deps, store) {
				t.Errorf("%s depends on the concrete store %s", name, store)
			}
		}
	}
	for _, pair := range [][2]string{{"admin", "authz"}, {"authz", "admin"}} {
		if slices.Contains(pkgs[pair[0]].Deps, pair[1]) {
			t.Errorf("%s depends on %s", pair[0], pair[1])
		}
	}
}

// TestEveryPackageSaysWhatItOwns: every package with code has a package doc.
func TestEveryPackageSaysWhatItOwns(t *testing.T) {
	for name, p := range listPackages(t) {
		if len(p.GoFiles) > 0 && strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no package doc", name)
		}
	}
}
