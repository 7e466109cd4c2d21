package keystore

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Actions a grant may carry on a repository.
var GrantActions = []string{"pull", "push", "delete"}

var (
	namePattern    = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$`)
	segmentPattern = regexp.MustCompile(`^(?:\*\*|[a-z0-9._:*-]+)$`)
)

// MaxPatternLength bounds a repository pattern; registries cap names at 255 bytes.
const MaxPatternLength = 255

// ValidateName checks an account, group or role name: 1–64 lowercase letters, digits, '.', '_'
// or '-', starting and ending with a letter or digit, so that it is also a valid repository path
// component (personal namespaces use it).
func ValidateName(kind, name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: %s name %q: use 1-64 of a-z 0-9 . _ - starting and ending with a letter or digit", ErrInvalid, kind, name)
	}
	return nil
}

// ValidatePattern checks a repository pattern: '/'-separated segments of a-z 0-9 . _ - : and
// '*' (within a segment), or a whole segment "**" (any depth).
func ValidatePattern(p string) error {
	if p == "" || len(p) > MaxPatternLength {
		return fmt.Errorf("%w: repository pattern must be 1-%d characters", ErrInvalid, MaxPatternLength)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if !segmentPattern.MatchString(seg) {
			return fmt.Errorf("%w: repository pattern %q: segment %q may hold only a-z 0-9 . _ - : and *", ErrInvalid, p, seg)
		}
	}
	return nil
}

// ValidateActions checks that actions is a non-empty list of grantable actions.
func ValidateActions(actions []string) error {
	if len(actions) == 0 {
		return fmt.Errorf("%w: at least one action is required (%s)", ErrInvalid, strings.Join(GrantActions, ", "))
	}
	for _, a := range actions {
		if !slices.Contains(GrantActions, a) {
			return fmt.Errorf("%w: action %q: must be one of %s", ErrInvalid, a, strings.Join(GrantActions, ", "))
		}
	}
	return nil
}

// ValidateSubject checks a grant subject.
func ValidateSubject(s Subject) error {
	switch s.Kind {
	case SubjectAccount, SubjectGroup:
		return ValidateName(string(s.Kind), s.Name)
	default:
		return fmt.Errorf("%w: subject kind %q: must be account or group", ErrInvalid, s.Kind)
	}
}

// Validate checks every field of a grant.
func (g Grant) Validate() error {
	return errors.Join(ValidateSubject(g.Subject), ValidatePattern(g.Repository), ValidateActions(g.Actions))
}

// Validate checks every field of an account.
func (a Account) Validate() error {
	errs := []error{ValidateName("account", a.Name)}
	for _, g := range a.Groups {
		errs = append(errs, ValidateName("group", g))
	}
	for _, r := range a.Roles {
		errs = append(errs, ValidateName("role", r))
	}
	return errors.Join(errs...)
}

// Validate checks a key's restrictions.
func (r Restrictions) Validate() error {
	var errs []error
	for _, a := range r.Actions {
		if !slices.Contains(GrantActions, a) {
			errs = append(errs, fmt.Errorf("%w: restricted action %q: must be one of %s", ErrInvalid, a, strings.Join(GrantActions, ", ")))
		}
	}
	for _, p := range r.Repositories {
		errs = append(errs, ValidatePattern(p))
	}
	for _, c := range r.CIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			errs = append(errs, fmt.Errorf("%w: CIDR %q: %v", ErrInvalid, c, err))
		}
	}
	return errors.Join(errs...)
}

// ValidateKeyName checks a key's human label: up to 64 printable characters.
func ValidateKeyName(name string) error {
	if len(name) > 64 || strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return fmt.Errorf("%w: key name must be at most 64 printable characters", ErrInvalid)
	}
	return nil
}

// Validate checks a key record before it is stored.
func (k Key) Validate() error {
	var errs []error
	if !ValidKeyID(k.ID) {
		errs = append(errs, fmt.Errorf("%w: key id %q", ErrInvalid, k.ID))
	}
	if len(k.Hash) != sha256.Size {
		errs = append(errs, fmt.Errorf("%w: key hash must be %d bytes", ErrInvalid, sha256.Size))
	}
	return errors.Join(append(errs, ValidateName("account", k.Account), ValidateKeyName(k.Name), k.Restrictions.Validate())...)
}

// Validate checks an ownership record before it is stored.
func (o Ownership) Validate() error { return ValidatePattern(o.Repository) }

// Validate checks the one record r carries, as its single write does: r must carry exactly one
// account, key, grant or ownership.
func (r Record) Validate() error {
	switch {
	case r.Header != nil || r.count() != 1:
		return fmt.Errorf("%w: a record written to a store holds exactly one account, key, grant or ownership", ErrInvalid)
	case r.Account != nil:
		return r.Account.Validate()
	case r.Key != nil:
		return r.Key.Validate()
	case r.Grant != nil:
		return r.Grant.Validate()
	}
	return r.Ownership.Validate()
}

// ValidateBatch checks every record of a batch; a store writes none of a batch that fails.
func ValidateBatch(recs []Record) error {
	for i, r := range recs {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("record %d of the batch: %w", i+1, err)
		}
	}
	return nil
}

// ValidSessionID reports whether s has the form of a session id: a hex SHA-256.
func ValidSessionID(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Validate checks a session record before it is stored.
func (s Session) Validate() error {
	var errs []error
	if !ValidSessionID(s.ID) {
		errs = append(errs, fmt.Errorf("%w: session id", ErrInvalid))
	}
	if !ValidKeyID(s.KeyID) {
		errs = append(errs, fmt.Errorf("%w: session key id %q", ErrInvalid, s.KeyID))
	}
	if s.Expires.IsZero() || !s.Expires.After(s.Created) {
		errs = append(errs, fmt.Errorf("%w: a session must expire after it is created", ErrInvalid))
	}
	return errors.Join(append(errs, ValidateName("account", s.Account))...)
}
