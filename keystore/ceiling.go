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
	out := Restrictions{Actions: r.Actions, Repositories: r.Repositories, CIDRs: r.CIDRs}
	if len(ceiling.Actions) > 0 {
		if len(r.Actions) == 0 {
			out.Actions = slices.Clone(ceiling.Actions)
		}
		for _, a := range r.Actions {
			if !slices.Contains(ceiling.Actions, a) {
				return Restrictions{}, fmt.Errorf("%w: action %q: the key creating this one may only %s", ErrInvalid, a, strings.Join(ceiling.Actions, ", "))
			}
		}
	}
	if len(ceiling.CIDRs) > 0 {
		if len(r.CIDRs) == 0 {
			out.CIDRs = slices.Clone(ceiling.CIDRs)
		}
		for _, c := range r.CIDRs {
			if !insideOne(c, ceiling.CIDRs) {
				return Restrictions{}, fmt.Errorf("%w: network %s is not inside the networks of the key creating this one (%s)", ErrInvalid, c, strings.Join(ceiling.CIDRs, ", "))
			}
		}
	}
	if len(ceiling.Repositories) > 0 {
		if len(r.Repositories) == 0 {
			out.Repositories = slices.Clone(ceiling.Repositories)
		}
		for _, p := range r.Repositories {
			if !coveredByOne(p, ceiling.Repositories) {
				return Restrictions{}, fmt.Errorf("%w: repository pattern %q is not one of the patterns of the key creating this one (%s), nor one name they match", ErrInvalid, p, strings.Join(ceiling.Repositories, ", "))
			}
		}
	}
	return out, nil
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
