package keystore

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gobwas/glob"
)

// Within returns the restrictions of a key created by a key restricted by ceiling: each list
// r leaves empty is the ceiling's, and each list r sets must be no wider than the ceiling's.
// A key never creates a key that can do more than itself: an action must be in the ceiling's
// actions; a network must lie inside one of its networks; a repository pattern must be one of
// its patterns, or a literal name one of them matches (whether one glob is inside another is
// not decided, so a narrower glob is refused — name the repositories instead). The result is
// ErrInvalid when r is wider.
func (r Restrictions) Within(ceiling Restrictions) (Restrictions, error) {
	actions, err := narrow(r.Actions, ceiling.Actions, slices.Contains, func(a string) error {
		return fmt.Errorf("%w: action %q: the key creating this one may only %s", ErrInvalid, a, strings.Join(ceiling.Actions, ", "))
	})
	if err != nil {
		return Restrictions{}, err
	}
	cidrs, err := narrow(r.CIDRs, ceiling.CIDRs, func(outer []string, c string) bool { return insideOne(c, outer) }, func(c string) error {
		return fmt.Errorf("%w: network %s is not inside the networks of the key creating this one (%s)", ErrInvalid, c, strings.Join(ceiling.CIDRs, ", "))
	})
	if err != nil {
		return Restrictions{}, err
	}
	repos, err := narrow(r.Repositories, ceiling.Repositories, func(outer []string, p string) bool { return coveredByOne(p, outer) }, func(p string) error {
		return fmt.Errorf("%w: repository pattern %q is not one of the patterns of the key creating this one (%s), nor one name they match", ErrInvalid, p, strings.Join(ceiling.Repositories, ", "))
	})
	if err != nil {
		return Restrictions{}, err
	}
	return Restrictions{Actions: actions, Repositories: repos, CIDRs: cidrs}, nil
}

// narrow is one list of Within: asked when the ceiling sets none, else asked (the ceiling's
// own when empty) with every entry inside the ceiling, or the error wider gives for the first
// entry that is not.
func narrow(asked, ceiling []string, inside func(ceiling []string, entry string) bool, wider func(entry string) error) ([]string, error) {
	if len(ceiling) == 0 {
		return asked, nil
	}
	if len(asked) == 0 {
		return slices.Clone(ceiling), nil
	}
	for _, e := range asked {
		if !inside(ceiling, e) {
			return nil, wider(e)
		}
	}
	return asked, nil
}

func insideOne(cidr string, ceiling []string) bool {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return false
	}
	for _, c := range ceiling {
		outer, err := netip.ParsePrefix(c)
		if err == nil && outer.Bits() <= p.Bits() && outer.Contains(p.Masked().Addr()) {
			return true
		}
	}
	return false
}

// coveredByOne reports whether pattern is one of ceiling, or a literal repository name one of
// them matches — matched as the policy matches (glob.match with "/" as the separator, which is
// this library).
func coveredByOne(pattern string, ceiling []string) bool {
	if slices.Contains(ceiling, pattern) {
		return true
	}
	if ValidateRepository(pattern) != nil {
		return false
	}
	for _, c := range ceiling {
		if g, err := glob.Compile(c, '/'); err == nil && g.Match(pattern) {
			return true
		}
	}
	return false
}
