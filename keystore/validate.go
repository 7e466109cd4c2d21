package keystore

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
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

// Limits on the lists a record holds. Every token decision about an account reads its key's
// restrictions and its groups and roles, and an account writes its own keys' restrictions: so
// each list is bounded, and no account can make the decisions about it cost more than a small
// multiple of an ordinary one (16 patterns x 32 scopes is 512 matches of 16 distinct globs).
const (
	MaxKeyRepositories = 16
	MaxKeyCIDRs        = 16
	MaxGroups          = 32
	MaxRoles           = 16
)

// EarliestInstant and LatestInstant bound every instant a record carries: an end, an expiry, a
// creation or a last use is zero (none) or between them. The Redis store writes grant ends and
// last uses as int64 nanoseconds since the Unix epoch, which hold no instant after 2262-04-11
// (nor before 1678), and its scripts order last uses as strings, which is time order only from
// the epoch on; the admin policy reads key expiries with time.parse_rfc3339_ns, bound the same
// way; and the JSON the stores write records in holds no year after 9999. Past the bound a
// grant until 2300 would be kept as ending in 1715, and a key expiring then would fail every
// decision on the keys it creates. The start of 2200 is later than anything is sold or kept
// for, sixty years short of the nearest limit, and a round date an error can name.
var (
	EarliestInstant = time.Unix(0, 0).UTC()
	LatestInstant   = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ValidateInstant checks one instant a record carries, named what in the error: zero, or from
// EarliestInstant to LatestInstant. The comparison is of instants, so the zone t was given in
// does not matter (9999-12-31T23:00-05:00 is in the year 10000).
func ValidateInstant(what string, t time.Time) error {
	switch {
	case t.IsZero():
		return nil
	case t.After(LatestInstant):
		return fmt.Errorf("%w: %s %s is after %s, the latest a record may carry", ErrInvalid, what, t.UTC().Format(time.RFC3339Nano), LatestInstant.Format(time.RFC3339))
	case t.Before(EarliestInstant):
		return fmt.Errorf("%w: %s %s is before %s, the earliest a record may carry", ErrInvalid, what, t.UTC().Format(time.RFC3339Nano), EarliestInstant.Format(time.RFC3339))
	}
	return nil
}

// ValidateRepository checks one literal repository name, as a reservation holds and a token
// scope names: distribution's grammar (path components of a-z 0-9 joined by '.', '_', '__' or
// '-' runs, separated by '/', optionally after a host that may hold dots and a :port), at most
// 255 characters, and lower case throughout. A name that passes holds no glob syntax, so a rule
// that compares it with a requested name never matches more than that one repository.
func ValidateRepository(name string) error {
	if len(name) > MaxPatternLength || !isRepositoryName(name) {
		return fmt.Errorf("%w: repository name %q: one literal lower-case repository name is required (no '*', at most %d characters)", ErrInvalid, name, MaxPatternLength)
	}
	return nil
}

// LiteralRepositories returns names without those that hold a '*'. Stores validate every name
// they are given with ValidateRepository, so only a record an earlier version wrote can fail it;
// those versions validated names as patterns (segments of a-z 0-9 . _ : - and '*'), so '*' is
// the only glob syntax such a record can hold, and the only way it could be read as more than
// one repository. Dropping them is all it takes, and costs nothing on the token path.
func LiteralRepositories(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !strings.Contains(n, "*") {
			out = append(out, n)
		}
	}
	return out
}

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
// '*' (within a segment), or a whole segment "**" (any depth). A segment "." or ".." is
// refused: it matches no repository, and a path cleaner (a proxy, a router, a link) reads it as
// another name.
func ValidatePattern(p string) error {
	if p == "" || len(p) > MaxPatternLength {
		return fmt.Errorf("%w: repository pattern must be 1-%d characters", ErrInvalid, MaxPatternLength)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if !segmentPattern.MatchString(seg) {
			return fmt.Errorf("%w: repository pattern %q: segment %q may hold only a-z 0-9 . _ - : and *", ErrInvalid, p, seg)
		}
		if seg == "." || seg == ".." {
			return fmt.Errorf("%w: repository pattern %q: a segment %q names no repository", ErrInvalid, p, seg)
		}
	}
	return nil
}

// CleanPath reports whether name, read as a path, is clean: no empty, "." or ".." segment,
// so that nothing between a client and the server reads it as another name.
func CleanPath(name string) bool {
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// ValidateActions checks that actions is a non-empty list of grantable actions, each once.
func ValidateActions(actions []string) error {
	if len(actions) == 0 {
		return fmt.Errorf("%w: at least one action is required (%s)", ErrInvalid, strings.Join(GrantActions, ", "))
	}
	return validateActionList("action", actions)
}

func validateActionList(what string, actions []string) error {
	for i, a := range actions {
		if !slices.Contains(GrantActions, a) {
			return fmt.Errorf("%w: %s %q: must be one of %s", ErrInvalid, what, a, strings.Join(GrantActions, ", "))
		}
		if slices.Contains(actions[:i], a) {
			return fmt.Errorf("%w: %s %q is listed twice", ErrInvalid, what, a)
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
	return errors.Join(ValidateSubject(g.Subject), ValidatePattern(g.Repository), ValidateActions(g.Actions), ValidateInstant("grant end", g.Expires))
}

// Validate checks an ownership record: one literal repository name and an account name.
func (o Ownership) Validate() error {
	return errors.Join(ValidateRepository(o.Repository), ValidateName("owner", o.Owner), ValidateInstant("reservation time", o.Created))
}

// Validate checks every field of an account.
func (a Account) Validate() error {
	errs := []error{ValidateName("account", a.Name), ValidateInstant("account creation", a.Created)}
	if len(a.Groups) > MaxGroups || len(a.Roles) > MaxRoles {
		errs = append(errs, fmt.Errorf("%w: an account has at most %d groups and %d roles", ErrInvalid, MaxGroups, MaxRoles))
	}
	for _, g := range a.Groups {
		errs = append(errs, ValidateName("group", g))
	}
	for _, r := range a.Roles {
		errs = append(errs, ValidateName("role", r))
	}
	return errors.Join(errs...)
}

// Validate checks a change of the account name: the account it would make is valid whatever
// the fields it leaves, since each list is checked alone.
func (ch AccountChange) Validate(name string) error {
	return ch.Apply(Account{Name: name}).Validate()
}

// Validate checks a key's restrictions.
func (r Restrictions) Validate() error {
	if err := r.withinLimits(); err != nil {
		return err // before looking at each of thousands
	}
	errs := []error{validateActionList("restricted action", r.Actions)}
	for _, p := range r.Repositories {
		errs = append(errs, ValidatePattern(p))
	}
	for _, c := range r.CIDRs {
		p, err := netip.ParsePrefix(c)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%w: CIDR %q: %v", ErrInvalid, c, err))
		default:
			// The policy's net.cidr_contains reads it as the IPv4 network; the server, which
			// compares addresses unmapped, as a network no client is in.
			if v4, mapped := IPv4Spelling(p); mapped {
				errs = append(errs, fmt.Errorf("%w: CIDR %q is an IPv4 network written IPv4-mapped; write %s", ErrInvalid, c, v4))
			}
		}
	}
	return errors.Join(errs...)
}

// IPv4Spelling returns the IPv4 network p means when p is one written IPv4-mapped
// (::ffff:10.0.0.0/104 is 10.0.0.0/8). Client addresses are compared unmapped, so such a
// spelling matches no client wherever the server compares them itself.
func IPv4Spelling(p netip.Prefix) (netip.Prefix, bool) {
	if !p.Addr().Is4In6() || p.Bits() < 96 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked(), true
}

// withinLimits checks only the sizes of the lists: cheap enough for every authentication.
func (r Restrictions) withinLimits() error {
	if len(r.Repositories) > MaxKeyRepositories || len(r.CIDRs) > MaxKeyCIDRs || len(r.Actions) > len(GrantActions) {
		return fmt.Errorf("%w: a key is limited to at most %d repository patterns and %d networks", ErrInvalid, MaxKeyRepositories, MaxKeyCIDRs)
	}
	return nil
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
	return errors.Join(append(errs, ValidateName("account", k.Account), ValidateKeyName(k.Name), k.Restrictions.Validate(),
		ValidateInstant("key creation", k.Created), ValidateInstant("key expiry", k.Expires), ValidateInstant("key last use", k.LastUsed))...)
}

// Validate checks the one record r carries, as its single write does: r must carry exactly one
// account, key, grant or ownership.
func (r Record) Validate() error {
	switch {
	case r.Header != nil || r.End != nil || r.count() != 1:
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
	return errors.Join(append(errs, ValidateName("account", s.Account), ValidateInstant("session creation", s.Created), ValidateInstant("session expiry", s.Expires))...)
}

// isRepositoryName reads name by distribution's grammar for a repository name
// (reference.NameRegexp, anchored) in lower case, byte by byte: every token request checks its
// scopes with it. validate_test.go holds it equal to the regular expression.
//
//	name       [domain "/"] path ("/" path)*
//	domain     (component ("." component)* | "[" [a-f0-9:]+ "]") [":" [0-9]+]
//	component  [a-z0-9] | [a-z0-9][a-z0-9-]*[a-z0-9]
//	path       [a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*
//
// A domain holds no "/", so it can only be what comes before the first one.
func isRepositoryName(name string) bool {
	if isRemoteName(name) {
		return true
	}
	i := strings.IndexByte(name, '/')
	return i > 0 && isDomain(name[:i]) && isRemoteName(name[i+1:])
}

func isAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// isRemoteName is path ("/" path)*.
func isRemoteName(s string) bool {
	for {
		i := strings.IndexByte(s, '/')
		if i < 0 {
			return isPathComponent(s)
		}
		if !isPathComponent(s[:i]) {
			return false
		}
		s = s[i+1:]
	}
}

// isPathComponent is [a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*.
func isPathComponent(s string) bool {
	i := 0
	for {
		start := i
		for i < len(s) && isAlnum(s[i]) {
			i++
		}
		if i == start {
			return false // empty, or a separator not between alphanumerics
		}
		if i == len(s) {
			return true
		}
		switch s[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(s) && s[i] == '_' {
				i++
			}
		case '-':
			for i < len(s) && s[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// isDomain is a host of dot-separated components or a bracketed IPv6 address, with an
// optional port.
func isDomain(s string) bool {
	host := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 && (s[0] != '[' || i > strings.IndexByte(s, ']')) {
		host = s[:i]
		port := s[i+1:]
		if port == "" {
			return false
		}
		for j := 0; j < len(port); j++ {
			if port[j] < '0' || port[j] > '9' {
				return false
			}
		}
	}
	if strings.HasPrefix(host, "[") {
		inner, ok := strings.CutSuffix(host[1:], "]")
		if !ok || inner == "" {
			return false
		}
		for j := 0; j < len(inner); j++ {
			if c := inner[j]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || c == ':') {
				return false
			}
		}
		return true
	}
	for {
		i := strings.IndexByte(host, '.')
		component := host
		if i >= 0 {
			component = host[:i]
		}
		if component == "" || !isAlnum(component[0]) || !isAlnum(component[len(component)-1]) {
			return false
		}
		for j := 1; j < len(component)-1; j++ {
			if c := component[j]; !isAlnum(c) && c != '-' {
				return false
			}
		}
		if i < 0 {
			return true
		}
		host = host[i+1:]
	}
}
