package policy

import (
	"fmt"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/regoauth/regoauth/policies"
)

// BenchmarkInputValue builds the policy input of a token request as OPA values: 3 scopes, the
// two grants that can match them, a key with restrictions. Every token request pays it, cached
// decisions included (the input is the cache's key).
func BenchmarkInputValue(b *testing.B) {
	in := &Input{
		Service: "registry.example.com",
		Client:  Client{IP: "203.0.113.7", ID: "docker", UserAgent: "docker/28"},
		Principal: Principal{Account: "user1", Groups: []string{"team"}, Roles: []string{},
			Key: &Key{ID: "k1", Name: "ci", Restrictions: &Restrictions{Actions: []string{"pull"}}}},
		Grants: []Grant{
			{Subject: "account:user1", Repository: "user1/app7", Actions: []string{"pull", "push"}},
			{Subject: "group:team", Repository: "team9/*", Actions: []string{"pull"}},
		},
		Owned: []string{},
	}
	for i := range 3 {
		in.Scopes = append(in.Scopes, Scope{Type: "repository", Name: fmt.Sprintf("user1/app%d", 7+i), Actions: []string{"push", "pull"}})
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = in.value()
	}
}

// BenchmarkDecideFloor is what any decision costs through the engine, whatever the policy
// says: a policy that copies the three requested scopes into the decision with no action,
// against the built-in library deciding the same input (two grant rows, one granted by name,
// one by a glob, one denied), evaluated and natively. The difference between the first two is
// the library's own work; the floor is OPA's; native is what the same decision costs without
// OPA (native.go).
func BenchmarkDecideFloor(b *testing.B) {
	in := &Input{
		Service:   "registry.example.com",
		Client:    Client{IP: "203.0.113.7", ID: "docker", UserAgent: "docker/28"},
		Principal: Principal{Account: "user1", Groups: []string{}, Roles: []string{}, Key: &Key{ID: "k1", Name: "ci"}},
		Grants: []Grant{
			{Subject: "account:user1", Repository: "user1/app50", Actions: []string{"pull", "push"}},
			{Subject: "account:user1", Repository: "team99/*", Actions: []string{"pull", "push"}},
		},
		Owned: []string{},
		Scopes: []Scope{
			{Type: "repository", Name: "user1/app50", Actions: []string{"pull", "push"}},
			{Type: "repository", Name: "team99/service", Actions: []string{"pull"}},
			{Type: "repository", Name: "elsewhere/app", Actions: []string{"pull", "push"}},
		},
	}
	for _, tc := range []struct {
		name   string
		fsys   fs.FS
		native bool
	}{
		{"floor", fstest.MapFS{"floor.rego": {Data: []byte("package regoauth.authz\n\n" +
			`decision := {"access": [{"type": s.type, "name": s.name, "actions": []} | some s in input.scopes], "reasons": []}` + "\n")}}, false},
		{"library", policies.FS, false},
		{"native", policies.FS, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := New(Options{EvaluateAll: !tc.native})
			if err := e.LoadFS(ctx, tc.fsys, "bench"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d, err := e.Decide(ctx, in); err != nil || len(d.Access) != 3 {
					b.Fatalf("decision %+v, %v", d, err)
				}
			}
		})
	}
}
