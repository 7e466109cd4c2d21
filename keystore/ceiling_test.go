package keystore_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

func TestRestrictionsWithinACeiling(t *testing.T) {
	ceiling := keystore.Restrictions{Actions: []string{"pull", "push"}, Repositories: []string{"shop/*", "tools", "base/**"}, CIDRs: []string{"10.0.0.0/8", "2001:db8::/32"}}
	for _, tt := range []struct {
		name string
		r    keystore.Restrictions
		want *keystore.Restrictions // nil: refused
	}{
		{"nothing asked inherits everything", keystore.Restrictions{}, &ceiling},
		{"narrower everywhere", keystore.Restrictions{Actions: []string{"pull"}, Repositories: []string{"shop/app", "base/a/b"}, CIDRs: []string{"10.1.0.0/16", "2001:db8:1::/48"}},
			&keystore.Restrictions{Actions: []string{"pull"}, Repositories: []string{"shop/app", "base/a/b"}, CIDRs: []string{"10.1.0.0/16", "2001:db8:1::/48"}}},
		{"one list set, the others inherited", keystore.Restrictions{CIDRs: []string{"10.0.0.1/32"}},
			&keystore.Restrictions{Actions: ceiling.Actions, Repositories: ceiling.Repositories, CIDRs: []string{"10.0.0.1/32"}}},
		{"an action beyond", keystore.Restrictions{Actions: []string{"delete"}}, nil},
		{"a name * does not reach", keystore.Restrictions{Repositories: []string{"shop/app/sub"}}, nil},
		{"a glob inside a glob", keystore.Restrictions{Repositories: []string{"shop/a*"}}, nil},
		{"the same glob", keystore.Restrictions{Repositories: []string{"shop/*"}}, &keystore.Restrictions{Actions: ceiling.Actions, Repositories: []string{"shop/*"}, CIDRs: ceiling.CIDRs}},
		{"a wider network", keystore.Restrictions{CIDRs: []string{"10.0.0.0/7"}}, nil},
		{"a network elsewhere", keystore.Restrictions{CIDRs: []string{"192.168.0.0/16"}}, nil},
		{"an IPv6 network wider", keystore.Restrictions{CIDRs: []string{"2001:db8::/31"}}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.r.Within(ceiling)
			if tt.want == nil {
				if !errors.Is(err, keystore.ErrInvalid) {
					t.Fatalf("Within = %+v, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, *tt.want) {
				t.Fatalf("Within = %+v, %v; want %+v", got, err, *tt.want)
			}
		})
	}
	// Without a ceiling, a key creates whatever it asks for.
	free := keystore.Restrictions{Repositories: []string{"x/**"}}
	if got, err := free.Within(keystore.Restrictions{}); err != nil || !reflect.DeepEqual(got, free) {
		t.Fatalf("Within(no ceiling) = %+v, %v", got, err)
	}
}
