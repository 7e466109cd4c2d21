package policy

import (
	"fmt"
	"testing"
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
