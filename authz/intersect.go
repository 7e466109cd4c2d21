package authz

import (
	"slices"

	"github.com/regoauth/regoauth/policy"
)

// Intersect returns, for each requested scope in order, the actions that were both requested
// and allowed by the decision. It is the server's own check: whatever a policy returns, a
// token never carries an action nobody asked for.
func Intersect(requested []policy.Scope, d policy.Decision) []policy.Scope {
	out := make([]policy.Scope, len(requested))
	for i, s := range requested {
		allowed := d.Allowed(s.Type, s.Name)
		granted := make([]string, 0, len(s.Actions))
		for _, a := range s.Actions {
			if slices.Contains(allowed, a) {
				granted = append(granted, a)
			}
		}
		out[i] = policy.Scope{Type: s.Type, Class: s.Class, Name: s.Name, Actions: granted}
	}
	return out
}
