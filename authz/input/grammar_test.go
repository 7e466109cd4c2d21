package input_test

import (
	"context"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policies"
)

// TestRepositoryNameGrammarMatchesTheServer holds the library's repository_name, which every
// ownership rule reads, to the grammar the server validates reservations and scopes with: a name
// one accepts and the other refuses would be a name one side reads as a literal and the other
// as something else.
func TestRepositoryNameGrammarMatchesTheServer(t *testing.T) {
	names := []string{
		"image", "shop/app", "a/b/c/d", "my-app_1.x", "a__b", "a---b", "example.com/app", "host:5000/app",
		"localhost:5000/a/b", "[::1]:5000/app", "x.y.z/app", "0/1",
		strings.Repeat("a", 255), strings.Repeat("a", 256), strings.Repeat("a/", 127) + "a",
		"", "*", "**", "shop/*", "shop/**", "shop/prem*", "*/app", "shop/?", "shop/[a]", "shop/{a,b}",
		"Shop/app", "shop/App", "SHOP", "Example.com/app", "HOST:5000/app", "shop//app", "shop/app/", "/shop",
		"shop/-app", "shop/app-", "shop/.app", "shop/a..b", "shop/a_.b", "host:/app", "host:x/app", "[::1]/app",
		"shop/app\n", " shop/app", "shop/äpp", "shop/app:tag", "shop/app@sha256:00",
	}
	ctx := context.Background()
	src, err := policies.FS.ReadFile("authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	pq, err := rego.New(rego.Query("data.regoauth.authz.repository_name(input)"), rego.Module("authz.rego", string(src))).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		rs, err := pq.Eval(ctx, rego.EvalInput(name))
		if err != nil {
			t.Fatal(err)
		}
		library := len(rs) == 1 && rs[0].Expressions[0].Value == true
		server := keystore.ValidateRepository(name) == nil
		if library != server {
			t.Errorf("%q: the library says %v, the server says %v", name, library, server)
		}
	}
}
