package policy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// fullInput and fullAdminInput set every field, so that every field can be changed.
func fullInput() *Input {
	return &Input{
		Service: "registry.example.com",
		Client:  Client{IP: "203.0.113.7", ID: "docker", UserAgent: "docker/28"},
		Principal: Principal{Account: "user1", Anonymous: false, Groups: []string{"sellers", "ops"}, Roles: []string{"checkout"},
			Key: &Key{ID: "k1", Name: "ci", Expires: "2027-01-01T00:00:00Z",
				Restrictions: &Restrictions{Actions: []string{"pull"}, Repositories: []string{"shop/*"}, CIDRs: []string{"10.0.0.0/8"}}}},
		Grants: []Grant{
			{Subject: "account:user1", Repository: "image", Actions: []string{"pull"}, Expires: "2027-01-01T00:00:00Z"},
			{Subject: "group:sellers", Repository: "shop/**", Actions: []string{"pull", "push"}},
		},
		Owned:  []string{"shop/app", "shop/tool"},
		Scopes: []Scope{{Type: "repository", Class: "image", Name: "image", Actions: []string{"pull", "push"}}, {Type: "registry", Name: "catalog", Actions: []string{"*"}}},
	}
}

func fullAdminInput() *AdminInput {
	in := fullInput()
	return &AdminInput{
		Principal: in.Principal, Client: in.Client, Operation: "keys.create",
		Target: AdminTarget{Account: "user2", Group: "sellers", Repository: "shop/app", Actions: []string{"pull"}, KeyID: "k2", Owner: "user1",
			Expires: "2027-01-01T00:00:00Z", Restrictions: &Restrictions{Actions: []string{"pull"}, Repositories: []string{"x"}, CIDRs: []string{"10.0.0.0/8"}}},
		Owned: []string{"shop/app"},
	}
}

// step is one move from a value to a part of it: a struct field, a list element, or what a
// pointer points at.
type step struct {
	field, index int
	deref        bool
}

// at is the part of v that path leads to, and its name ("Input.Scopes[0].Class") for a
// failure's message.
func at(v reflect.Value, path []step) (reflect.Value, string) {
	name := v.Type().Name()
	for _, s := range path {
		switch {
		case s.deref:
			v = v.Elem()
		case s.index >= 0:
			v = v.Index(s.index)
			name += fmt.Sprintf("[%d]", s.index)
		default:
			name += "." + v.Type().Field(s.field).Name
			v = v.Field(s.field)
		}
	}
	return v, name
}

// parts lists the path of every part of v: each field, element and pointer, at every depth.
func parts(v reflect.Value, path []step, out *[][]step) {
	*out = append(*out, append([]step(nil), path...))
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			parts(v.Elem(), append(path, step{deref: true, index: -1}), out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			parts(v.Field(i), append(path, step{field: i, index: -1}), out)
		}
	case reflect.Slice:
		for i := range v.Len() {
			parts(v.Index(i), append(path, step{index: i}), out)
		}
	}
}

// changes are the ways a part of a value can be changed, each applied to a fresh input.
func changes(v reflect.Value) []func(reflect.Value) {
	var out []func(reflect.Value)
	switch v.Kind() {
	case reflect.String:
		out = append(out,
			func(v reflect.Value) { v.SetString("") },
			func(v reflect.Value) { v.SetString(v.String() + "x") },
			func(v reflect.Value) { v.SetString("pull") })
	case reflect.Bool:
		out = append(out, func(v reflect.Value) { v.SetBool(!v.Bool()) })
	case reflect.Pointer:
		out = append(out,
			func(v reflect.Value) { v.SetZero() },
			func(v reflect.Value) { v.Set(reflect.New(v.Type().Elem())) })
	case reflect.Slice:
		out = append(out,
			func(v reflect.Value) { v.SetZero() },
			func(v reflect.Value) { v.Set(reflect.MakeSlice(v.Type(), 0, 0)) },
			func(v reflect.Value) { v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem()))) },
			func(v reflect.Value) {
				if v.Len() > 0 {
					v.Set(v.Slice(0, v.Len()-1))
				}
			},
			func(v reflect.Value) {
				if v.Len() > 1 { // the same elements in another order
					w := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
					for i := range v.Len() {
						w.Index(i).Set(v.Index(v.Len() - 1 - i))
					}
					v.Set(w)
				}
			})
	}
	return out
}

type keyed interface {
	appendKey([]byte) []byte
	value() ast.Value
}

// TestInputKeysMatchValues: the decision cache answers by an input's canonical encoding, so two
// inputs must have the same encoding exactly when they have the same OPA value; were a field
// left out of the encoding, a decision made for one input would be given to another. Every part
// of a full token input and admin input, found by reflection (a field added to the types is
// found too), is changed in every way that applies, and the encodings and values of the two
// inputs are compared; then random inputs over a small alphabet are compared pairwise, where
// lists of strings that run together ("ab" and "a","b") and empty and absent values meet.
func TestInputKeysMatchValues(t *testing.T) {
	for name, full := range map[string]func() keyed{
		"token": func() keyed { return fullInput() },
		"admin": func() keyed { return fullAdminInput() },
	} {
		t.Run(name, func(t *testing.T) {
			base := full()
			var paths [][]step
			parts(reflect.ValueOf(base).Elem(), nil, &paths)
			checked := 0
			for _, path := range paths {
				// The full input and each change of this part of it, compared two by two: a
				// change against the full input, and changes against each other (a list made
				// empty against one made absent).
				part, name := at(reflect.ValueOf(base).Elem(), path)
				inputs := []keyed{base}
				for _, change := range changes(part) {
					in := full()
					target, _ := at(reflect.ValueOf(in).Elem(), path)
					change(target)
					inputs = append(inputs, in)
				}
				for i := range inputs {
					for j := range i {
						sameKey := bytes.Equal(inputs[i].appendKey(nil), inputs[j].appendKey(nil))
						sameValue := inputs[i].value().Compare(inputs[j].value()) == 0
						if sameKey != sameValue {
							t.Errorf("%v, changes %d and %d: same encoding %v, same value %v\n%v\n%v", name, j, i, sameKey, sameValue, inputs[j].value(), inputs[i].value())
						}
						checked++
					}
				}
			}
			if checked < 60 {
				t.Fatalf("only %d changes checked", checked)
			}
		})
	}

	t.Run("random pairs", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		// Few choices per field, so that equal inputs come up: empty and absent lists, lists
		// that run together ("ab" and "a","b"), an optional string empty.
		lists := [][]string{nil, {}, {"ab"}, {"a", "b"}}
		list := func() []string { return lists[r.IntN(len(lists))] }
		word := func() string { return []string{"", "a"}[r.IntN(2)] }
		random := func() *Input {
			in := &Input{Service: "s", Client: Client{IP: "ip", ID: word()},
				Principal: Principal{Account: "a", Groups: list(), Roles: list()},
				Owned:     list()}
			if r.IntN(2) == 0 {
				in.Principal.Key = &Key{ID: "k", Name: word()}
				if r.IntN(2) == 0 {
					in.Principal.Key.Restrictions = &Restrictions{Actions: list()}
				}
			}
			for range r.IntN(2) {
				in.Grants = append(in.Grants, Grant{Subject: "s", Repository: "r", Actions: list(), Expires: word()})
			}
			for range r.IntN(2) {
				in.Scopes = append(in.Scopes, Scope{Type: "t", Name: word(), Actions: list()})
			}
			return in
		}
		inputs := make([]*Input, 1000)
		keys := make([][]byte, len(inputs))
		values := make([]ast.Value, len(inputs))
		for i := range inputs {
			inputs[i] = random()
			keys[i], values[i] = inputs[i].appendKey(nil), inputs[i].value()
		}
		same := 0
		for i := range inputs {
			for j := range i {
				sameKey, sameValue := bytes.Equal(keys[i], keys[j]), values[i].Compare(values[j]) == 0
				if sameKey != sameValue {
					t.Fatalf("same encoding %v, same value %v:\n%v\n%v", sameKey, sameValue, values[i], values[j])
				}
				if sameValue {
					same++
				}
			}
		}
		if same == 0 {
			t.Fatal("no two random inputs were equal: the comparison of equal inputs was not exercised")
		}
	})
}
