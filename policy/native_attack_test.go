package policy

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/regoauth/regoauth/policies"
)

// libraryOracle evaluates the shipped token module with cfg as data.regoauth.config, the way
// the server does when it evaluates: the decision's access alone, strict builtin errors.
type libraryOracle struct {
	access, whole rego.PreparedEvalQuery
}

func newLibraryOracle(t testing.TB, cfg ast.Value) libraryOracle {
	t.Helper()
	module, err := fs.ReadFile(policies.FS, "authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]any{}
	if cfg != nil {
		c, err := ast.JSON(cfg)
		if err != nil {
			t.Fatal(err)
		}
		data["regoauth"] = map[string]any{"config": c}
	}
	prep := func(q string) rego.PreparedEvalQuery {
		pq, err := rego.New(rego.Query(q), rego.Module("authz.rego", string(module)),
			rego.Store(inmem.NewFromObject(data)), rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return pq
	}
	return libraryOracle{access: prep(DefaultDecisionQuery + ".access"), whole: prep(DefaultDecisionQuery)}
}

// decide returns the access the evaluation gives, or its error.
func (o libraryOracle) decide(in *Input) ([]Scope, error) {
	rs, err := o.access.Eval(ctx, append(slices.Clone(evalOptions), rego.EvalParsedInput(in.value()))...)
	if err != nil {
		return nil, err
	}
	v, ok := single(rs)
	if !ok {
		return nil, errors.New("no access")
	}
	var d Decision
	if err := parseAccess(v, &d); err != nil {
		return nil, err
	}
	return d.Access, nil
}

// compareNative checks lib's answer on in against the evaluation: the same access, or a
// decline; never an answer where the evaluation fails.
func compareNative(t testing.TB, lib *nativeLibrary, o libraryOracle, cfg string, in *Input) (answered bool) {
	t.Helper()
	got, nerr := lib.decide(in)
	want, eerr := o.decide(in)
	if nerr != nil {
		if !errors.Is(nerr, errDecline) {
			t.Fatalf("config %s input %+v: %v", cfg, in, nerr)
		}
		return false
	}
	if eerr != nil {
		t.Fatalf("config %s\ninput %s\nthe evaluation fails (%v), the native decision answers %v", cfg, inputJSON(in), eerr, got)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("config %s\ninput %s\nnative    %v\nevaluated %v", cfg, inputJSON(in), got, want)
	}
	return true
}

func inputJSON(in *Input) string {
	b, _ := json.Marshal(in)
	return string(b)
}

// attackStrings are values chosen to sit on the edges of the library's string handling: glob
// syntax of every kind, separators, the subject syntax's ':', empty strings, non-ASCII.
var attackStrings = []string{
	"", "*", "**", "?", "a", "a1", "a1/", "a1/x", "a1/x/y", "a1/*", "a1/**", "shop", "shop/app", "shop/*",
	"a:b", "a:b/x", "account:a1", "group:g", "role:admin", "anonymous", "admin",
	`a1\/x`, `shop/\*`, `\*`, "a,b", "{a1,shop}/*", "{a1,}/x", "{,a1/x}", "[!a]1/x", "[a-z]1/*", "a}b", "a]b",
	"ü", "ü/x", "ü/*", "a1/ü", "?/x", "*/x", "**/x", "a1/?", "x/", "/x", "/", "a1//x", "catalog",
	"pull", "push", "delete", "tag", "PULL", "a*", "a1/x*", "*x", "{*,a}", "[/]x", "a1[/]x", "a1?x",
}

type attackRand struct{ *rand.Rand }

func (r attackRand) s() string { return attackStrings[r.IntN(len(attackStrings))] }

func (r attackRand) strs(n int, from ...string) []string {
	if len(from) == 0 {
		from = attackStrings
	}
	var out []string
	for range r.IntN(n + 1) {
		out = append(out, from[r.IntN(len(from))])
	}
	return out
}

func anyStrings(ss []string) []any {
	out := make([]any, 0, len(ss))
	for _, s := range ss {
		out = append(out, s)
	}
	return out
}

var attackActions = []string{"pull", "push", "delete", "*", "", "tag", "ü"}
var attackSubjects = []string{"*", "anonymous", "account:a1", "account:a:b", "account:", "group:g", "group:", "group:a:b", "role:admin", "role:ops", "a1", ":", "account:shop", "group:g:", "role:"}

// config draws a configuration the native decision compiles: each field of the type it reads.
func (r attackRand) config() map[string]any {
	c := map[string]any{}
	if r.IntN(2) == 0 {
		c["public_repositories"] = anyStrings(r.strs(3))
	}
	if r.IntN(2) == 0 {
		c["personal_namespaces"] = r.IntN(3) > 0
	}
	if r.IntN(3) == 0 {
		c["personal_namespace_actions"] = anyStrings(r.strs(3, attackActions...))
	}
	if r.IntN(2) == 0 {
		c["reserved_namespaces"] = anyStrings(r.strs(3, "a1", "shop", "a:b", "", "ü"))
	}
	if r.IntN(3) == 0 {
		c["admin_roles"] = anyStrings(r.strs(2, "admin", "ops", "", "*"))
	}
	if r.IntN(3) == 0 {
		c["catalog_roles"] = anyStrings(r.strs(2, "admin", "ops", "", "*"))
	}
	if r.IntN(2) == 0 {
		var rules []any
		for range 1 + r.IntN(3) {
			rule := map[string]any{"repositories": anyStrings(r.strs(3))}
			if r.IntN(2) == 0 {
				rule["actions"] = anyStrings(r.strs(3, attackActions...))
			}
			if r.IntN(2) == 0 {
				rule["subjects"] = anyStrings(r.strs(3, attackSubjects...))
			}
			if r.IntN(3) == 0 {
				rule["except"] = anyStrings(r.strs(2, attackSubjects...))
			}
			if r.IntN(2) == 0 {
				rule["reason"] = "r"
			}
			rules = append(rules, rule)
		}
		c["deny"] = rules
	}
	return c
}

func (r attackRand) input() *Input {
	in := &Input{Service: "s", Client: Client{IP: []string{"10.1.2.3", "::1", "::ffff:10.1.2.3", "203.0.113.7", "fe80::1"}[r.IntN(5)]}}
	if r.IntN(6) == 0 {
		in.Principal = Principal{Anonymous: true, Groups: []string{}, Roles: []string{}}
		if r.IntN(3) == 0 {
			in.Principal.Account = "a1"
			in.Principal.Roles = []string{"admin"}
		}
	} else {
		in.Principal = Principal{Account: []string{"a1", "a:b", "shop", "ü", "a1/x", "*", "x*"}[r.IntN(7)],
			Groups: r.strs(2, "g", "a:b", "", "g:"), Roles: r.strs(2, "admin", "ops", "", "*")}
	}
	if r.IntN(3) == 0 {
		in.Principal.Key = &Key{ID: "k"}
		if r.IntN(2) == 0 {
			in.Principal.Key.Restrictions = &Restrictions{
				Actions:      r.strs(2, attackActions...),
				Repositories: r.strs(2),
				CIDRs:        r.strs(2, "10.0.0.0/8", "::/0", "0.0.0.0/0", "::ffff:10.0.0.0/104", "203.0.113.0/24", "fe80::/10"),
			}
		}
	}
	for range r.IntN(4) {
		subj := attackSubjects[r.IntN(len(attackSubjects))]
		if r.IntN(2) == 0 {
			subj = "account:" + in.Principal.Account
		}
		in.Grants = append(in.Grants, Grant{Subject: subj, Repository: r.s(), Actions: r.strs(3, attackActions...)})
	}
	in.Owned = r.strs(3)
	for range 1 + r.IntN(3) {
		typ := "repository"
		switch r.IntN(8) {
		case 0:
			typ = "registry"
		case 1:
			typ = []string{"Repository", "plugin", "repository "}[r.IntN(3)]
		}
		in.Scopes = append(in.Scopes, Scope{Type: typ, Name: r.s(), Actions: r.strs(4, attackActions...)})
	}
	return in
}

// TestNativeMatchesEvaluationOnEdges: on configurations and inputs drawn from edge values (glob
// syntax, ':' in names and subjects, empty strings, non-ASCII, anonymous principals carrying an
// account, IPv4-mapped addresses), the native decision answers as the evaluation of the
// decision's access does, or declines.
func TestNativeMatchesEvaluationOnEdges(t *testing.T) {
	r := attackRand{rand.New(rand.NewPCG(3, 5))}
	configs, inputs := 120, 80
	if testing.Short() {
		configs = 40
	}
	var answered, declined, refused int
	for range configs {
		cfg := r.config()
		v, err := ast.InterfaceToValue(cfg)
		if err != nil {
			t.Fatal(err)
		}
		lib, _ := compileLibraryConfig(v)
		if lib == nil {
			refused++ // a pattern that does not compile
			continue
		}
		o := newLibraryOracle(t, v)
		raw, _ := json.Marshal(cfg)
		for range inputs {
			if compareNative(t, lib, o, string(raw), r.input()) {
				answered++
			} else {
				declined++
			}
		}
	}
	t.Logf("%d answered, %d declined, %d configurations refused", answered, declined, refused)
	if answered < configs*inputs/2 {
		t.Fatalf("only %d of %d inputs answered natively", answered, configs*inputs)
	}
}

// FuzzNativeDecision compares the native decision with the evaluation on configurations and
// inputs built around arbitrary strings: an account, a group, patterns of grants, of the
// configuration and of a key, a repository name, an action, a reservation, a network and an
// address.
func FuzzNativeDecision(f *testing.F) {
	f.Add(uint16(0), "a1", "g", "a1/*", "public/*", "**", "a1/x", "pull", "a1/x", "10.0.0.0/8", "10.1.2.3")
	f.Add(uint16(0xffff), "a:b", "a:b", `a\:b/*`, "{a,b}/*", "[!a]/x", "a:b/x", "*", "a:b/x", "::/0", "::ffff:10.1.2.3")
	f.Add(uint16(0x5a5a), "ü", "", "ü/?", "*/*", "", "ü/é", "", "ü/*", "fe80::/10", "fe80::1")
	oracles := map[string]libraryOracle{}
	f.Fuzz(func(t *testing.T, bits uint16, account, group, grantPattern, cfgPattern, keyPattern, name, action, owned, cidr, ip string) {
		bit := func(i int) bool { return bits&(1<<i) != 0 }
		cfg := map[string]any{}
		if bit(0) {
			cfg["public_repositories"] = []any{cfgPattern}
		}
		if bit(1) {
			cfg["personal_namespaces"] = true
		}
		if bit(2) {
			cfg["personal_namespace_actions"] = []any{action}
		}
		if bit(3) {
			cfg["reserved_namespaces"] = []any{account}
		}
		if bit(4) {
			rule := map[string]any{"repositories": []any{cfgPattern}}
			if bit(5) {
				rule["actions"] = []any{action}
			}
			if bit(6) {
				rule["subjects"] = []any{"group:" + group}
			}
			if bit(7) {
				rule["except"] = []any{"account:" + account}
			}
			cfg["deny"] = []any{rule}
		}
		if bit(8) {
			cfg["admin_roles"] = []any{group}
		}
		v, err := ast.InterfaceToValue(cfg)
		if err != nil {
			t.Skip()
		}
		lib, _ := compileLibraryConfig(v)
		if lib == nil {
			return
		}
		raw, _ := json.Marshal(cfg)
		o, ok := oracles[string(raw)]
		if !ok {
			if len(oracles) > 256 {
				clear(oracles)
			}
			o = newLibraryOracle(t, v)
			oracles[string(raw)] = o
		}
		in := &Input{Client: Client{IP: ip},
			Principal: Principal{Account: account, Anonymous: bit(9), Groups: []string{group}, Roles: []string{group}},
			Grants:    []Grant{{Subject: "group:" + group, Repository: grantPattern, Actions: []string{action, "pull"}}},
			Owned:     []string{owned},
			Scopes: []Scope{{Type: "repository", Name: name, Actions: []string{action, "pull", "push"}},
				{Type: "registry", Name: "catalog", Actions: []string{"*", action}}},
		}
		if bit(10) {
			in.Grants[0].Subject = "account:" + account
		}
		if bit(11) {
			in.Principal.Key = &Key{ID: "k", Restrictions: &Restrictions{}}
			if bit(12) {
				in.Principal.Key.Restrictions.Repositories = []string{keyPattern}
			}
			if bit(13) {
				in.Principal.Key.Restrictions.CIDRs = []string{cidr}
			}
			if bit(14) {
				in.Principal.Key.Restrictions.Actions = []string{action}
			}
		}
		if bit(15) {
			in.Scopes[1] = Scope{Type: "repository", Name: owned, Actions: []string{action}}
		}
		compareNative(t, lib, o, string(raw), in)
	})
}
