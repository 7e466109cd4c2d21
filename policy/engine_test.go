package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/policies"
)

var ctx = context.Background()

func storyInput() *Input {
	return &Input{
		Service: "registry.example.com",
		Client:  Client{IP: "203.0.113.7", ID: "docker", UserAgent: "docker/28"},
		Principal: Principal{Account: "user1", Groups: []string{}, Roles: []string{},
			Key: &Key{ID: "k1", Name: "ci"}},
		Grants: []Grant{
			{Subject: "account:user1", Repository: "image", Actions: []string{"pull"}},
			{Subject: "account:user1", Repository: "image2", Actions: []string{"pull", "push"}},
		},
		Owned:  []string{},
		Scopes: []Scope{{Type: "repository", Name: "image", Actions: []string{"pull", "push"}}},
	}
}

func loaded(t *testing.T) *Engine {
	t.Helper()
	e := New(Options{})
	if e.Ready() {
		t.Fatal("ready before any policy was loaded")
	}
	if err := e.LoadFS(ctx, policies.FS, "default"); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDefaultPolicyStory(t *testing.T) {
	e := loaded(t)
	if !e.Ready() || e.Revision() != "default" {
		t.Fatalf("Ready=%v Revision=%q", e.Ready(), e.Revision())
	}
	d, err := e.Decide(ctx, storyInput())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Defined || d.ID == "" {
		t.Fatalf("decision = %+v", d)
	}
	if got := d.Allowed("repository", "image"); !reflect.DeepEqual(got, []string{"pull"}) {
		t.Fatalf("allowed on image = %v, want [pull]", got)
	}
	// The token path reads the access alone; the whole decision has the reasons.
	ev, err := e.eval(ctx, queryAuthz, storyInput().value(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if reasons := stringList(field(ev.value.(ast.Object), keyReasons)); len(reasons) != 1 {
		t.Fatalf("reasons = %v", reasons)
	}
}

func TestNotReady(t *testing.T) {
	e := New(Options{})
	if _, err := e.Decide(ctx, storyInput()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Decide without policy: %v", err)
	}
	if _, err := e.Authorize(ctx, &AdminInput{}); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Authorize without policy: %v", err)
	}
}

func load(t *testing.T, e *Engine, rego string) error {
	t.Helper()
	return e.LoadFS(ctx, fstest.MapFS{"p.rego": {Data: []byte(rego)}}, "test")
}

func TestUndefinedAndMalformedDecisionsDeny(t *testing.T) {
	for name, src := range map[string]string{
		"undefined":      "package regoauth.authz\nx := 1\n",
		"not an object":  "package regoauth.authz\ndecision := 7\n",
		"no access":      "package regoauth.authz\ndecision := {\"allow\": true}\n",
		"bad entry":      "package regoauth.authz\ndecision := {\"access\": [{\"type\": \"repository\", \"name\": \"image\", \"actions\": \"pull\"}]}\n",
		"numeric action": "package regoauth.authz\ndecision := {\"access\": [{\"type\": \"repository\", \"name\": \"image\", \"actions\": [1]}]}\n",
	} {
		t.Run(name, func(t *testing.T) {
			e := New(Options{})
			if err := load(t, e, src); err != nil {
				t.Fatal(err)
			}
			d, err := e.Decide(ctx, storyInput())
			if err != nil {
				t.Fatal(err)
			}
			if d.Defined || len(d.Access) != 0 {
				t.Fatalf("decision = %+v, want a deny", d)
			}
		})
	}
}

func TestEvaluationErrorIsAnError(t *testing.T) {
	e := New(Options{})
	// With strict builtin errors, a failing builtin fails the evaluation rather than
	// silently making a rule undefined.
	src := "package regoauth.authz\ndecision := {\"access\": [], \"n\": to_number(\"x\")}\n"
	if err := load(t, e, src); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Decide(ctx, storyInput()); err == nil {
		t.Fatal("evaluation error was not reported")
	}
}

func TestBrokenPolicyKeepsPreviousRevision(t *testing.T) {
	e := loaded(t)
	for _, src := range []string{
		"package regoauth.authz\ndecision := {",   // syntax
		"package regoauth.authz\ndecision := x\n", // unsafe / undefined var
	} {
		if err := load(t, e, src); err == nil {
			t.Fatalf("broken policy %q accepted", src)
		}
	}
	if e.Revision() != "default" {
		t.Fatalf("revision = %q after failed loads", e.Revision())
	}
	d, err := e.Decide(ctx, storyInput())
	if err != nil || !reflect.DeepEqual(d.Allowed("repository", "image"), []string{"pull"}) {
		t.Fatalf("old revision no longer decides: %+v %v", d, err)
	}
}

// TestTestFilesAreNotLoaded: a _test.rego file beside the policy never takes part in
// decisions. The test file here would grant push if it were loaded (it overrides a default the
// policy relies on), and the policy alone grants nothing.
func TestTestFilesAreNotLoaded(t *testing.T) {
	e := New(Options{})
	fs := fstest.MapFS{
		"p.rego": {Data: []byte("package regoauth.authz\n\ndefault extra := []\n\ndecision := {\"access\": extra}\n")},
		"p_test.rego": {Data: []byte("package regoauth.authz\n\n" +
			"extra := [{\"type\": \"repository\", \"name\": \"image\", \"actions\": [\"push\"]}]\n")},
	}
	if err := e.LoadFS(ctx, fs, "t"); err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(ctx, storyInput())
	if err != nil || !d.Defined {
		t.Fatalf("the policy does not decide: %+v %v", d, err)
	}
	if len(d.Access) != 0 {
		t.Fatalf("a _test.rego file took part in the decision: %+v", d)
	}
}

func TestAdminDecision(t *testing.T) {
	e := loaded(t)
	in := &AdminInput{
		Principal: Principal{Account: "admin", Groups: []string{}, Roles: []string{"admin"}, Key: &Key{ID: "k"}},
		Operation: "accounts.create", Target: AdminTarget{Account: "user1"},
	}
	d, err := e.Authorize(ctx, in)
	if err != nil || !d.Allow {
		t.Fatalf("admin refused: %+v %v", d, err)
	}
	in.Principal.Roles = []string{}
	d, err = e.Authorize(ctx, in)
	if err != nil || d.Allow || len(d.Reasons) == 0 {
		t.Fatalf("non-admin allowed: %+v %v", d, err)
	}
}

// TestASTMatchesJSON holds the hand-built OPA values equal to the documented JSON form.
func TestASTMatchesJSON(t *testing.T) {
	in := storyInput()
	in.Principal.Key.Restrictions = &Restrictions{Actions: []string{"pull"}, CIDRs: []string{"10.0.0.0/8"}}
	in.Scopes = append(in.Scopes, Scope{Type: "repository", Class: "plugin", Name: "p", Actions: []string{"pull"}})
	in.Grants[1].Expires = "2026-12-31T00:00:00.5Z"
	assertSameValue(t, in, in.value())

	anon := &Input{Service: "s", Client: Client{IP: "::1"}, Principal: Principal{Anonymous: true, Groups: []string{}, Roles: []string{}},
		Grants: []Grant{}, Owned: []string{}, Scopes: []Scope{}}
	assertSameValue(t, anon, anon.value())

	admin := &AdminInput{Principal: in.Principal, Client: Client{IP: "10.1.2.3"}, Operation: "grants.add", Owned: []string{"x"},
		Target: AdminTarget{Account: "a", Repository: "r", Actions: []string{"pull"}, Owner: "o", Expires: "2026-12-31T00:00:00Z"}}
	assertSameValue(t, admin, admin.value())
	in.Principal.Key.Expires = "2026-03-01T12:02:00Z"
	assertSameValue(t, in, in.value())
	keys := &AdminInput{Principal: in.Principal, Client: Client{IP: "10.1.2.3"}, Operation: "keys.create", Owned: []string{},
		Target: AdminTarget{Account: "a", Expires: "2026-03-01T12:01:00Z", Restrictions: &Restrictions{Repositories: []string{"a/*"}}}}
	assertSameValue(t, keys, keys.value())
	// A removal of nothing still says so: an empty list, not an absent one.
	admin.Target.Actions = []string{}
	assertSameValue(t, admin, admin.value())
	admin.Target.Actions = nil
	assertSameValue(t, admin, admin.value())
}

// TestAdminLimitsAreReadOrRefused reads max_owned from an admin decision; a limit the server
// cannot read is a malformed decision, a deny, never "no limit".
func TestAdminLimitsAreReadOrRefused(t *testing.T) {
	for _, tt := range []struct {
		limit string
		allow bool
		max   int
	}{
		{`"max_owned": 20`, true, 20},
		{`"max_owned": 0`, false, 0},
		{`"max_owned": -1`, false, 0},
		{`"max_owned": 2.5`, false, 0},
		{`"max_owned": "20"`, false, 0},
		{`"max_owned": null`, false, 0},
	} {
		t.Run(tt.limit, func(t *testing.T) {
			e := New(Options{})
			src := "package regoauth.admin\n\ndecision := {\"allow\": true, \"reasons\": [], " + tt.limit + "}\n"
			if err := e.LoadFS(ctx, fstest.MapFS{"a.rego": {Data: []byte(src)}}, "a"); err != nil {
				t.Fatal(err)
			}
			d, err := e.Authorize(ctx, &AdminInput{Principal: Principal{Anonymous: true, Groups: []string{}, Roles: []string{}}, Operation: "repos.reserve"})
			if err != nil || d.Allow != tt.allow || d.MaxOwned != tt.max {
				t.Fatalf("decision = %+v, %v; want allow %v, max_owned %d", d, err, tt.allow, tt.max)
			}
		})
	}
}

func assertSameValue(t *testing.T, v any, got ast.Value) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if want.Compare(got) != 0 {
		t.Fatalf("AST value\n %v\ndiffers from JSON\n %v", got, want)
	}
}

// TestInputExample holds policy/input.example.json, the documented input, to the Go types: it
// decodes strictly and encodes back unchanged. (The e2e tests hold it to what the running
// server sends.)
func TestInputExample(t *testing.T) {
	raw, err := os.ReadFile("input.example.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var in Input
	if err := dec.Decode(&in); err != nil {
		t.Fatal(err)
	}
	back, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	json.Unmarshal(raw, &a)
	json.Unmarshal(back, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("the example does not survive the Go types:\n%s\n%s", raw, back)
	}
	assertSameValue(t, &in, in.value())
	d, err := loaded(t).Decide(ctx, &in)
	if err != nil || !d.Defined {
		t.Fatalf("the library does not decide the example: %+v %v", d, err)
	}
	// The policy guide shows the same document.
	page, err := os.ReadFile("../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(page), "```json\n")
	block, _, _ = strings.Cut(block, "```")
	var shown any
	if err := json.Unmarshal([]byte(block), &shown); err != nil || !reflect.DeepEqual(shown, a) {
		t.Fatalf("docs/policy.md's first JSON block (%v) is not policy/input.example.json:\n%s", err, block)
	}
}

// TestMalformedRestrictionFailsClosed: with strict builtin errors, a key restriction that
// cannot be evaluated refuses the decision (the server answers 503, no token) instead of
// skipping the check.
func TestMalformedRestrictionFailsClosed(t *testing.T) {
	e := loaded(t)
	for name, r := range map[string]*Restrictions{
		"network":            {CIDRs: []string{"not-a-network"}},
		"repository pattern": {Repositories: []string{"[unclosed"}},
	} {
		t.Run(name, func(t *testing.T) {
			in := storyInput()
			in.Principal.Key.Restrictions = r
			if d, err := e.Decide(ctx, in); err == nil {
				t.Fatalf("decided %+v", d)
			}
		})
	}
}

// TestOPAMetricsJoinTheRegistry: OPA's status plugin with prometheus on registers its metrics
// in the server's registry, under the project's namespace.
func TestOPAMetricsJoinTheRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := New(Options{Registerer: reg, Source: Source{Builtin: policies.FS, OPAConfig: []byte("status: {prometheus: true}\n")}})
	defer e.Stop(ctx)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var opa, foreign []string
	for _, f := range families {
		switch {
		case strings.HasPrefix(f.GetName(), "regoauth_opa_"):
			opa = append(opa, f.GetName())
		case !strings.HasPrefix(f.GetName(), "regoauth_"):
			foreign = append(foreign, f.GetName())
		}
	}
	if len(opa) == 0 || len(foreign) > 0 {
		t.Fatalf("OPA's metrics %v, outside the namespace %v", opa, foreign)
	}
}

// TestDecisionIsReadAsJSONShowsIt: the server reads decisions from OPA's values, not from their
// JSON form, and read the same: a set as the array JSON makes of it, keys other than the
// decision's own ignored, an action that is not a string a malformed decision (a deny).
func TestDecisionIsReadAsJSONShowsIt(t *testing.T) {
	for name, tt := range map[string]struct {
		src  string
		want []string
	}{
		"set of actions": {"decision := {\"access\": {{\"type\": \"repository\", \"name\": \"image\", \"actions\": {\"pull\", \"push\"}}}}", []string{"pull", "push"}},
		"numeric key":    {"decision := {\"access\": [{\"type\": \"repository\", \"name\": \"image\", \"actions\": [\"pull\"], 1: 2}], 3: 4}", []string{"pull"}},
		"object action":  {"decision := {\"access\": [{\"type\": \"repository\", \"name\": \"image\", \"actions\": [{\"pull\": true}]}]}", nil},
	} {
		t.Run(name, func(t *testing.T) {
			e := New(Options{})
			if err := load(t, e, "package regoauth.authz\n"+tt.src+"\n"); err != nil {
				t.Fatal(err)
			}
			d, err := e.Decide(ctx, storyInput())
			if err != nil {
				t.Fatal(err)
			}
			got := d.Allowed("repository", "image")
			slices.Sort(got)
			if !slices.Equal(got, tt.want) || d.Defined != (tt.want != nil) {
				t.Fatalf("decision = %+v, want %v allowed", d, tt.want)
			}
		})
	}
}
