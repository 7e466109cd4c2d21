package keystore_test

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/distribution/reference"

	"github.com/regoauth/regoauth/keystore"
)

// repositoryNameOracle is what ValidateRepository reads by hand: distribution's grammar,
// anchored, at most 255 bytes, in lower case.
var repositoryNameOracle = regexp.MustCompile(`^` + reference.NameRegexp.String() + `$`)

func oracleAccepts(name string) bool {
	return len(name) <= keystore.MaxPatternLength && repositoryNameOracle.MatchString(name) && strings.ToLower(name) == name
}

// repositoryNameSeeds are names at the edges of every rule of the grammar.
var repositoryNameSeeds = []string{
	"image", "shop/app", "a/b/c/d", "my-app_1.x", "a__b", "a___b", "a---b", "a-_b", "a_-b", "a._b", "a..b", "a.-b",
	"example.com/app", "host:5000/app", "localhost:5000/a/b", "[::1]:5000/app", "[::1]/app", "[::1]:/app", "[]/app",
	"[::g]/app", "[::1/app", "::1]/app", "x.y.z/app", "0/1", "-a.com/app", "a-.com/app", "a.-b.com/app", "a..com/app",
	".a/app", "a./app", "host:/app", "host:x/app", "host:5000", "host:5000/", "a:b:5000/app", "Host/app", "HOST:5000/app",
	strings.Repeat("a", 255), strings.Repeat("a", 256), strings.Repeat("a/", 127) + "a",
	"", "/", "*", "**", "shop/*", "shop/?", "Shop/app", "shop/App", "shop//app", "shop/app/", "/shop", "shop/-app",
	"shop/app-", "shop/.app", "shop/app\n", " shop/app", "shop/äpp", "shop/app:tag", "shop/app@sha256:00", "a_b.c-d__e",
}

// TestRepositoryGrammarMatchesDistribution holds ValidateRepository to the regular expression
// it stands for, on the edge cases and on 200,000 names drawn from the grammar's own
// alphabet (most near-misses of a valid name).
func TestRepositoryGrammarMatchesDistribution(t *testing.T) {
	check := func(name string) bool {
		t.Helper()
		want := oracleAccepts(name)
		if got := keystore.ValidateRepository(name) == nil; got != want {
			t.Fatalf("%q: ValidateRepository accepts it: %v, distribution's grammar: %v", name, got, want)
		}
		return want
	}
	for _, name := range repositoryNameSeeds {
		check(name)
	}
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab0-._/:[]fA"
	n, valid := 200_000, 0
	if testing.Short() {
		n = 20_000
	}
	for range n {
		b := make([]byte, 1+r.IntN(14))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if check(string(b)) {
			valid++
		}
	}
	if valid < n/50 {
		t.Fatalf("only %d of %d drawn names were valid: the draw does not reach the grammar", valid, n)
	}
}

// FuzzRepositoryName: ValidateRepository and distribution's grammar agree on every name.
func FuzzRepositoryName(f *testing.F) {
	for _, name := range repositoryNameSeeds {
		f.Add(name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := keystore.ValidateRepository(name) == nil, oracleAccepts(name); got != want {
			t.Fatalf("%q: ValidateRepository accepts it: %v, distribution's grammar: %v", name, got, want)
		}
	})
}
