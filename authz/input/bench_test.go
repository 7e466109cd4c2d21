package input

import "testing"

// BenchmarkParseScopes is the parse stage of a token request: three scope values as docker
// sends them.
func BenchmarkParseScopes(b *testing.B) {
	values := []string{"repository:acme/app:push,pull", "repository:acme/base:pull", "repository:registry.example.com:5000/other/x:pull"}
	b.ReportAllocs()
	for b.Loop() {
		s, err := ParseScopes(values, DefaultMaxScopes, DefaultMaxScopeLength)
		if err != nil || len(s) != 3 {
			b.Fatal(s, err)
		}
	}
}
