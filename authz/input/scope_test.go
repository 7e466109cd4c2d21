package input

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/policy"
)

func repo(name string, actions ...string) policy.Scope {
	return policy.Scope{Type: "repository", Name: name, Actions: actions}
}

func TestParseScopes(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []policy.Scope
	}{
		{"none", nil, nil},
		{"one", []string{"repository:foo/bar:push,pull"}, []policy.Scope{repo("foo/bar", "pull", "push")}},
		{"repeated values", []string{"repository:a:pull", "repository:b:push"}, []policy.Scope{repo("a", "pull"), repo("b", "push")}},
		{"space separated", []string{"repository:a:pull repository:b:pull,push"}, []policy.Scope{repo("a", "pull"), repo("b", "pull", "push")}},
		{"merged duplicates (crane)", []string{"repository:a:pull,push", "repository:a:push,pull"}, []policy.Scope{repo("a", "pull", "push")}},
		{"merged across values", []string{"repository:a:pull", "repository:a:push"}, []policy.Scope{repo("a", "pull", "push")}},
		{"host and port in the name", []string{"repository:localhost:5000/a/b:pull"}, []policy.Scope{repo("localhost:5000/a/b", "pull")}},
		{"class kept apart from the type", []string{"repository(plugin):vieux/sshfs:pull"},
			[]policy.Scope{{Type: "repository", Class: "plugin", Name: "vieux/sshfs", Actions: []string{"pull"}}}},
		{"star expands to repository actions", []string{"repository:a:*"}, []policy.Scope{repo("a", "delete", "pull", "push")}},
		{"catalog keeps its star", []string{"registry:catalog:*"}, []policy.Scope{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}},
		{"unknown type ignored", []string{"tenant:acme:pull", "repository:a:pull"}, []policy.Scope{repo("a", "pull")}},
		{"malformed ignored", []string{"repository:a", "repository", ":a:pull", "repository::pull", "repository:a:", "Repository:a:pull"}, nil},
		{"invalid name ignored", []string{"repository:UPPER:pull", "repository:a//b:pull", "repository:-a:pull", "repository:" + strings.Repeat("a", 256) + ":pull"}, nil},
		// A repository name is lower case throughout: a registry host in the first segment may
		// hold dots and a :port, but an upper-case name is no repository a grant, a reservation
		// or a namespace can name, so it is dropped rather than left to broad patterns.
		{"upper case in the first segment ignored", []string{"repository:Shop/app:pull", "repository:Example.com/app:pull", "repository:HOST:5000/app:pull", "repository:[::1]:5000/App:pull"}, nil},
		{"dots and a port in the first segment kept", []string{"repository:example.com/app:pull", "repository:host:5000/app:pull", "repository:my.app/x:pull"},
			[]policy.Scope{repo("example.com/app", "pull"), repo("host:5000/app", "pull"), repo("my.app/x", "pull")}},
		{"odd actions dropped, others kept", []string{"repository:a:pull,,PUSH,fly,push"}, []policy.Scope{repo("a", "fly", "pull", "push")}},
		{"extra whitespace", []string{"  repository:a:pull\trepository:b:pull  "}, []policy.Scope{repo("a", "pull"), repo("b", "pull")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseScopes(tt.values, DefaultMaxScopes, DefaultMaxScopeLength)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseScopes(%q)\n got %+v\nwant %+v", tt.values, got, tt.want)
			}
		})
	}
}

func TestParseScopesLimits(t *testing.T) {
	many := strings.Repeat("repository:a:pull ", DefaultMaxScopes+1)
	var se *ScopeError
	if _, err := ParseScopes([]string{many}, DefaultMaxScopes, DefaultMaxScopeLength); !errors.As(err, &se) {
		t.Fatalf("too many scopes: err = %v", err)
	}
	long := "repository:" + strings.Repeat("a", DefaultMaxScopeLength) + ":pull"
	if _, err := ParseScopes([]string{long}, DefaultMaxScopes, DefaultMaxScopeLength); !errors.As(err, &se) {
		t.Fatalf("too long a scope: err = %v", err)
	}
	// Exactly at the limit is fine, even when they merge.
	atLimit := strings.Repeat("repository:a:pull ", DefaultMaxScopes)
	if got, err := ParseScopes([]string{atLimit}, DefaultMaxScopes, DefaultMaxScopeLength); err != nil || len(got) != 1 {
		t.Fatalf("at the limit: %v, %v", got, err)
	}
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{
		"repository:foo/bar:push,pull", "repository:localhost:5000/a:pull", "repository(plugin):x:pull",
		"registry:catalog:*", "repository:a:*", "a:b:c:d", ":::", "repository:a:pull repository:a:push",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
			checkGrammar(t, part)
		}
		got, err := ParseScopes([]string{s}, 8, 300)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, sc := range got {
			if sc.Type != "repository" && sc.Type != "registry" {
				t.Fatalf("unknown type %q passed", sc.Type)
			}
			if sc.Name == "" || len(sc.Actions) == 0 || !slices.IsSorted(sc.Actions) {
				t.Fatalf("bad scope %+v", sc)
			}
			if len(slices.Compact(slices.Clone(sc.Actions))) != len(sc.Actions) {
				t.Fatalf("duplicate actions in %+v", sc)
			}
			if sc.Type == "repository" && slices.Contains(sc.Actions, "*") {
				t.Fatalf("unexpanded * in %+v", sc)
			}
			key := sc.Type + ":" + sc.Name
			if seen[key] {
				t.Fatalf("unmerged duplicate %s", key)
			}
			seen[key] = true
		}
	})
}

// The regular expressions the scope grammar's readers stand for (scope.go).
var (
	typePattern      = regexp.MustCompile(`^([a-z0-9]+)(?:\(([a-z0-9]+)\))?$`)
	actionPattern    = regexp.MustCompile(`^(?:[a-z]+|\*)$`)
	registryResource = regexp.MustCompile(`^[a-z0-9]+$`)
)

// checkGrammar holds parseType, isAction and isWord equal to the regular expressions on s.
func checkGrammar(t *testing.T, s string) {
	t.Helper()
	typ, class, ok := parseType(s)
	if m := typePattern.FindStringSubmatch(s); (m != nil) != ok || ok && (m[1] != typ || m[2] != class) {
		t.Errorf("parseType(%q) = %q, %q, %v; the expression says %q", s, typ, class, ok, m)
	}
	if got, want := isAction(s), actionPattern.MatchString(s); got != want {
		t.Errorf("isAction(%q) = %v, want %v", s, got, want)
	}
	if got, want := isWord(s, true), registryResource.MatchString(s); got != want {
		t.Errorf("isWord(%q, true) = %v, want %v", s, got, want)
	}
}

// TestScopeGrammar: the byte-by-byte readers of a scope's type, actions and registry name accept
// exactly what their regular expressions do (FuzzParseScopes checks the same on its inputs).
func TestScopeGrammar(t *testing.T) {
	for _, s := range []string{
		"", "repository", "registry", "repository(plugin)", "repository()", "(plugin)", "repository(plugin",
		"repository)plugin(", "repository(plu(gin))", "repository(plugin)x", "repository(Plugin)", "Repository",
		"repo9", "9", "a(b)(c)", "a(b)c)", "a)", "*", "**", "pull", "Pull", "pull1", "pu-ll", "push ", " push",
		"catalog", "cat_alog", "é", "a\nb", "repository\n", "a\x00", "z{", "a`", "0(0)", "a(b c)",
	} {
		checkGrammar(t, s)
	}
}
