package input

import (
	"fmt"
	"slices"
	"strings"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// Limits on what one token request may ask for. Real clients send one to three scopes of well
// under 300 bytes; anything far beyond is refused with a 400 rather than evaluated.
const (
	DefaultMaxScopes      = 32
	DefaultMaxScopeLength = 512
)

// repositoryActions is what "*" on a repository expands to: what a registry checks.
var repositoryActions = []string{"delete", "pull", "push"}

// The grammar of a scope's parts, read byte by byte (they are read on every token request; the
// regular expressions they stand for are in scope_test.go, which holds them equal):
//
//	type     ^([a-z0-9]+)(?:\(([a-z0-9]+)\))?$   a lowercase word, optionally a class in parentheses
//	action   ^(?:[a-z]+|\*)$
//	registry ^[a-z0-9]+$                          a registry resource's name

// parseType splits "type" or "type(class)".
func parseType(s string) (typ, class string, ok bool) {
	typ = s
	if i := strings.IndexByte(s, '('); i >= 0 {
		if !strings.HasSuffix(s, ")") {
			return "", "", false
		}
		typ, class = s[:i], s[i+1:len(s)-1]
		if !isWord(class, true) {
			return "", "", false
		}
	}
	return typ, class, isWord(typ, true)
}

// isWord reports whether s is one or more of a-z (and 0-9 with digits).
func isWord(s string, digits bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || digits && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func isAction(s string) bool { return s == "*" || isWord(s, false) }

// ScopeError is a request that asks for too much to be evaluated.
type ScopeError struct{ msg string }

func (e *ScopeError) Error() string { return e.msg }

// ParseScopes reads every scope value of a request. A value may hold several scopes separated
// by spaces. Entries for the same (type, name) are merged. Malformed scopes and unknown
// resource types are dropped: they grant nothing and never fail the request. Only a request
// beyond the limits is an error.
func ParseScopes(values []string, maxScopes, maxLength int) ([]policy.Scope, error) {
	var out []policy.Scope
	count := 0
	for _, v := range values {
		for raw := range strings.FieldsSeq(v) {
			if count++; count > maxScopes {
				return nil, &ScopeError{fmt.Sprintf("too many scopes: at most %d per request", maxScopes)}
			}
			if len(raw) > maxLength {
				return nil, &ScopeError{fmt.Sprintf("scope of %d bytes is too long: at most %d", len(raw), maxLength)}
			}
			s, ok := parseScope(raw)
			if !ok {
				continue
			}
			out = merge(out, s)
		}
	}
	return out, nil
}

// parseScope reads "type[(class)]:name:actions". The type ends at the first ':' and the
// actions start after the last, so a name may hold a "host:port/" prefix.
func parseScope(raw string) (policy.Scope, bool) {
	first, last := strings.IndexByte(raw, ':'), strings.LastIndexByte(raw, ':')
	if first < 0 || first == last {
		return policy.Scope{}, false
	}
	typ, class, ok := parseType(raw[:first])
	if !ok {
		return policy.Scope{}, false
	}
	s := policy.Scope{Type: typ, Class: class, Name: raw[first+1 : last]}
	switch s.Type {
	case "repository":
		// The grammar reservations are held to: a name no reservation, grant or namespace
		// can spell (upper case) is no repository the server issues rights on.
		if keystore.ValidateRepository(s.Name) != nil {
			return policy.Scope{}, false
		}
	case "registry":
		if !isWord(s.Name, true) {
			return policy.Scope{}, false
		}
	default:
		return policy.Scope{}, false
	}
	for a := range strings.SplitSeq(raw[last+1:], ",") {
		a = strings.TrimSpace(a)
		switch {
		case a == "*" && s.Type == "repository":
			s.Actions = append(s.Actions, repositoryActions...)
		case isAction(a):
			s.Actions = append(s.Actions, a)
		}
	}
	if len(s.Actions) == 0 {
		return policy.Scope{}, false
	}
	slices.Sort(s.Actions)
	s.Actions = slices.Compact(s.Actions)
	return s, true
}

// merge adds s to scopes, joining it with an earlier entry for the same (type, name): clients
// send "repository:a:pull,push" and "repository:a:push,pull" side by side.
func merge(scopes []policy.Scope, s policy.Scope) []policy.Scope {
	for i := range scopes {
		if scopes[i].Type == s.Type && scopes[i].Name == s.Name {
			acts := append(scopes[i].Actions, s.Actions...)
			slices.Sort(acts)
			scopes[i].Actions = slices.Compact(acts)
			if scopes[i].Class == "" {
				scopes[i].Class = s.Class
			}
			return scopes
		}
	}
	return append(scopes, s)
}
