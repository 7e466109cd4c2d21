package bundles_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/regoauth/regoauth/internal/opacli"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
)

var ctx = context.Background()

// testCase is one entry of a bundle's cases or admin_cases in its Rego tests.
type testCase struct {
	Name   string              `json:"name"`
	Input  json.RawMessage     `json:"input"`
	Access map[string][]string `json:"access"`
	Allow  *bool               `json:"allow"`
}

// casesOf evaluates the rule data.PKG.RULE of the bundle's test file: the cases are values, so
// the test module alone is enough.
func casesOf(t *testing.T, testFile, ref string) []testCase {
	t.Helper()
	rs, err := rego.New(rego.Query(ref), rego.Load([]string{testFile}, nil)).Eval(ctx)
	if err != nil || len(rs) != 1 {
		t.Fatalf("reading %s from %s: %v", ref, testFile, err)
	}
	raw, err := json.Marshal(rs[0].Expressions[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	var out []testCase
	if err := json.Unmarshal(raw, &out); err != nil || len(out) == 0 {
		t.Fatalf("%s: %v (%d cases)", ref, err, len(out))
	}
	return out
}

// strict decodes a case's input into the server's input type, refusing fields the server never
// sends: the cases are written in the documented schema.
func strict(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("input %s: %v", raw, err)
	}
}

// TestBundlesDecideAsTheirTestsSay loads each bundle into regoauth's engine beside the built-in
// library in both forms an operator uses — the directory (as `regoauth dev --policy
// bundles/NAME` and policy.dir do) and the tarball of a plain `opa build -b bundles/NAME` —
// tests included, and checks that the engine decides every case of the bundle's Rego tests as
// they say.
func TestBundlesDecideAsTheirTestsSay(t *testing.T) {
	opa := opacli.Path(t)
	for _, name := range []string{"marketplace", "teams"} {
		tarball := filepath.Join(t.TempDir(), name+".tar.gz")
		build := exec.Command(opa, "build", "-b", name, "-o", tarball)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("opa build -b %s: %v\n%s", name, err, out)
		}
		for form, src := range map[string]policy.Source{
			"directory": {Builtin: policies.FS, Dir: name},
			"tarball":   {Builtin: policies.FS, Bundle: tarball},
		} {
			t.Run(name+"/"+form, func(t *testing.T) { decidesAsItsTestsSay(t, name, src) })
		}
	}
}

func decidesAsItsTestsSay(t *testing.T, name string, src policy.Source) {
	e := policy.New(policy.Options{Source: src})
	defer e.Stop(ctx)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if rev := e.Revision(); !strings.Contains(rev, policy.LocalBundle+"@"+name+"-1") {
		t.Fatalf("revision %q does not name the bundle", rev)
	}
	testFile := filepath.Join(name, name+"_test.rego")
	pkg := "data.regoauth.extensions." + name + "_test."
	for _, c := range casesOf(t, testFile, pkg+"cases") {
		t.Run(c.Name, func(t *testing.T) {
			var in policy.Input
			strict(t, c.Input, &in)
			d, err := e.Decide(ctx, &in)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, s := range d.Access {
				got[s.Type+":"+s.Name] = s.Actions
			}
			if !reflect.DeepEqual(got, c.Access) {
				t.Fatalf("regoauth decides %v, the Rego test says %v", got, c.Access)
			}
		})
	}
	for _, c := range casesOf(t, testFile, pkg+"admin_cases") {
		t.Run("admin: "+c.Name, func(t *testing.T) {
			var in policy.AdminInput
			strict(t, c.Input, &in)
			d, err := e.Authorize(ctx, &in)
			if err != nil {
				t.Fatal(err)
			}
			if c.Allow == nil || d.Allow != *c.Allow {
				t.Fatalf("regoauth allows: %v, the Rego test says %v (reasons %v)", d.Allow, c.Allow, d.Reasons)
			}
		})
	}
}
