package authz

import (
	"reflect"
	"testing"

	"github.com/regoauth/regoauth/policy"
)

func repo(name string, actions ...string) policy.Scope {
	return policy.Scope{Type: "repository", Name: name, Actions: actions}
}

func TestIntersect(t *testing.T) {
	requested := []policy.Scope{repo("a", "pull", "push"), repo("b", "pull"), {Type: "registry", Name: "catalog", Actions: []string{"*"}}}
	d := policy.Decision{Access: []policy.Scope{
		repo("a", "pull", "delete", "*"), // delete and * were not requested
		repo("c", "pull"),                // c was not requested at all
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
	}}
	got := Intersect(requested, d)
	want := []policy.Scope{repo("a", "pull"), repo("b"), {Type: "registry", Name: "catalog", Actions: []string{"*"}}}
	want[1].Actions = []string{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Intersect\n got %+v\nwant %+v", got, want)
	}
}
