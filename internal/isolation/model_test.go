package isolation

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The reference model: what docs/isolation.md and docs/policy.md say the server does, written
// as plain Go over maps, apart from the Rego and from the stores. It decides the same two
// things as the server — whether an admin call is accepted, and which actions a token carries —
// so that any difference between them shows.

// actions are the repository actions, in the order tokens list them.
var actions = []string{"delete", "pull", "push"}

// clientIP is where every call of the test comes from.
var clientIP = netip.MustParseAddr("127.0.0.1")

// bundleModel is what a shipped bundle adds to the library, in the model.
type bundleModel struct {
	name string
	// shared are first path segments that are no account's personal namespace.
	shared          []string
	personal        bool
	personalActions []string
	public          []string
	adminRoles      []string
	extraPermit     func(m *model, p *mPrincipal, repo string) []string
	extraDeny       func(m *model, p *mPrincipal, repo string) []string
	adminAllow      func(m *model, c *mCaller, op string, t mTarget) bool
	configDeny      func(p *mPrincipal, repo string) []string
}

type mAccount struct {
	name     string
	groups   []string
	roles    []string
	disabled bool
}

type mKey struct {
	label   string
	account string
	expires time.Time // zero: never
	revoked bool
	restr   mRestrictions
}

type mRestrictions struct {
	actions []string
	repos   []string
	cidrs   []string
}

func (r mRestrictions) any() bool { return len(r.actions)+len(r.repos)+len(r.cidrs) > 0 }

type mGrant struct {
	actions []string
	end     time.Time // zero: never
}

// grantKey is a grant row: "account:NAME" or "group:NAME", and a repository pattern.
type grantKey struct{ subject, pattern string }

type model struct {
	b        *bundleModel
	now      time.Time
	accounts map[string]*mAccount
	keys     map[string]*mKey
	grants   map[grantKey]mGrant
	owners   map[string]string // literal repository -> owner
	// broken is a rule deliberately left out, to prove the test and its shrinking can fail.
	broken string
}

func newModel(b *bundleModel, now time.Time) *model {
	return &model{b: b, now: now, accounts: map[string]*mAccount{}, keys: map[string]*mKey{},
		grants: map[grantKey]mGrant{}, owners: map[string]string{}}
}

// mPrincipal is an authenticated account with the key it used.
type mPrincipal struct {
	acct *mAccount
	key  *mKey
}

// mCaller is the caller of an admin operation.
type mCaller struct {
	mPrincipal
}

// mTarget is what an admin operation acts on.
type mTarget struct {
	account, group, repository, owner string
	actions                           []string
}

// authenticate is the documented credential check: a known key, not revoked, not expired, of
// an existing account that is not disabled.
func (m *model) authenticate(label string) (*mPrincipal, bool) {
	k, ok := m.keys[label]
	if !ok || k.revoked || (!k.expires.IsZero() && !m.now.Before(k.expires)) {
		return nil, false
	}
	a, ok := m.accounts[k.account]
	if !ok || a.disabled {
		return nil, false
	}
	return &mPrincipal{acct: a, key: k}, true
}

func (p *mPrincipal) hasRole(roles []string) bool {
	for _, r := range roles {
		if slices.Contains(p.acct.roles, r) {
			return true
		}
	}
	return false
}

func (m *model) isAdmin(p *mPrincipal) bool { return p.hasRole(m.b.adminRoles) }

// owned are the names p reserved.
func (m *model) owned(p *mPrincipal) []string {
	var out []string
	for repo, owner := range m.owners {
		if owner == p.acct.name {
			out = append(out, repo)
		}
	}
	return out
}

// tokenActions are the actions a token of p carries on repo when it asks for all three (p nil:
// anonymous).
func (m *model) tokenActions(p *mPrincipal, repo string) []string {
	permit := map[string]bool{}
	add := func(acts ...string) {
		for _, a := range acts {
			permit[a] = true
		}
	}
	for _, pat := range m.b.public {
		if globMatch(pat, repo) {
			add("pull")
		}
	}
	if p != nil {
		if m.isAdmin(p) {
			add(actions...)
		}
		subjects := []string{"account:" + p.acct.name}
		for _, g := range p.acct.groups {
			subjects = append(subjects, "group:"+g)
		}
		for gk, g := range m.grants {
			if slices.Contains(subjects, gk.subject) && (g.end.IsZero() || m.now.Before(g.end)) && globMatch(gk.pattern, repo) {
				add(g.actions...)
			}
		}
		if m.owners[repo] == p.acct.name {
			if m.broken == "owners-never-delete" {
				add("pull", "push")
			} else {
				add(actions...)
			}
		}
		if m.b.personal && !slices.Contains(m.b.shared, p.acct.name) {
			if rest, ok := strings.CutPrefix(repo, p.acct.name+"/"); ok && rest != "" && !strings.Contains(rest, "/") {
				add(m.b.personalActions...)
			}
		}
		if m.b.extraPermit != nil {
			add(m.b.extraPermit(m, p, repo)...)
		}
	}
	deny := map[string]bool{}
	if p != nil {
		r := p.key.restr
		for _, a := range actions {
			if len(r.actions) > 0 && !slices.Contains(r.actions, a) {
				deny[a] = true
			}
		}
		if len(r.repos) > 0 && !slices.ContainsFunc(r.repos, func(pat string) bool { return globMatch(pat, repo) }) {
			for _, a := range actions {
				deny[a] = true
			}
		}
		if len(r.cidrs) > 0 && !inNetworks(r.cidrs) {
			for _, a := range actions {
				deny[a] = true
			}
		}
	}
	if m.b.configDeny != nil {
		for _, a := range m.b.configDeny(p, repo) {
			deny[a] = true
		}
	}
	if m.b.extraDeny != nil {
		for _, a := range m.b.extraDeny(m, p, repo) {
			deny[a] = true
		}
	}
	var out []string
	for _, a := range actions {
		if permit[a] && !deny[a] {
			out = append(out, a)
		}
	}
	return out
}

func inNetworks(cidrs []string) bool {
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Contains(clientIP) {
			return true
		}
	}
	return false
}

// globMatch is a grant pattern's match: '*' within one path segment, '**' across segments,
// anchored at both ends; every other character is itself.
func globMatch(pattern, name string) bool {
	if pattern == "" {
		return name == ""
	}
	if strings.HasPrefix(pattern, "**") {
		for i := 0; i <= len(name); i++ {
			if globMatch(pattern[2:], name[i:]) {
				return true
			}
		}
		return false
	}
	if pattern[0] == '*' {
		for i := 0; i <= len(name); i++ {
			if globMatch(pattern[1:], name[i:]) {
				return true
			}
			if i < len(name) && name[i] == '/' {
				break
			}
		}
		return false
	}
	return name != "" && name[0] == pattern[0] && globMatch(pattern[1:], name[1:])
}

// literalName is one repository name as a reservation holds it: lower-case path components of
// letters and digits, joined by '.', '_', '__' or runs of '-', separated by single '/'s.
var literalName = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

func isLiteral(name string) bool { return len(name) <= 255 && literalName.MatchString(name) }

// validPattern is a grant or key pattern: a literal name, or one with '*' in a segment or '**'
// as one; each segment could match a path component of some repository, so no segment is
// empty, "." or "..".
func validPattern(p string) bool {
	if p == "" || len(p) > 255 {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("._:-*", c)) {
				return false
			}
		}
	}
	return true
}

var validNameRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$`)

// covers is the key-restriction test of the admin API: a pattern equal to the target, or one
// matching it when the target is a literal name.
func covers(pattern, target string) bool {
	return pattern == target || (isLiteral(target) && globMatch(pattern, target))
}

// refused is the admin policy's floor: what no rule can allow.
func (m *model) refused(c *mCaller, op string, t mTarget) bool {
	r := c.key.restr
	if len(r.cidrs) > 0 && !inNetworks(r.cidrs) {
		return true
	}
	if len(r.repos) > 0 && op != "whoami" && !slices.ContainsFunc(r.repos, func(p string) bool { return covers(p, t.repository) }) {
		return true
	}
	if len(r.actions) > 0 && !strings.HasSuffix(op, ".list") && op != "whoami" && op != "accounts.get" {
		return true
	}
	switch op {
	case "repos.reserve":
		if !isLiteral(t.repository) {
			return true
		}
		if m.b.personal {
			if parts := strings.Split(t.repository, "/"); len(parts) == 2 && !slices.Contains(m.b.shared, parts[0]) && parts[0] != t.account {
				return true
			}
		}
	case "accounts.create":
		if slices.Contains(m.b.shared, t.account) {
			return true
		}
	}
	return false
}

// keyPermitsWrite is data.regoauth.admin.key_permits_write.
func keyPermitsWrite(c *mCaller, t mTarget) bool {
	r := c.key.restr
	return len(r.actions) == 0 && (len(r.cidrs) == 0 || inNetworks(r.cidrs)) &&
		(len(r.repos) == 0 || slices.ContainsFunc(r.repos, func(p string) bool { return covers(p, t.repository) }))
}

// allowed is the admin decision: a rule permits it and the floor does not refuse it.
func (m *model) allowed(c *mCaller, op string, t mTarget) bool {
	if m.refused(c, op, t) {
		return false
	}
	unrestricted := !c.key.restr.any()
	self := c.acct.name
	switch {
	case m.isAdmin(&c.mPrincipal) && unrestricted:
		return true
	case (op == "keys.create" || op == "keys.revoke") && t.account == self && unrestricted:
		return true
	case (op == "grants.add" || op == "grants.remove") && unrestricted && isLiteral(t.repository) && t.owner == self &&
		t.account != "" && t.group == "" && !slices.ContainsFunc(t.actions, func(a string) bool { return a != "pull" }):
		return true
	}
	return m.b.adminAllow != nil && m.b.adminAllow(m, c, op, t)
}

// ownerOf is the owner the admin API reports for a target: only a literal name has one.
func (m *model) ownerOf(repo string) string {
	if !isLiteral(repo) {
		return ""
	}
	return m.owners[repo]
}

// The bundles, as their documentation and data say.

var library = &bundleModel{name: "library", adminRoles: []string{"admin"}}

func listing(name string) bool {
	parts := strings.Split(name, "/")
	return !strings.Contains(name, "*") && len(parts) == 2 && parts[0] == "shop" && parts[1] != ""
}

var marketplace = &bundleModel{
	name: "marketplace", shared: []string{"shop", "previews"}, public: []string{"previews/*"},
	adminRoles: []string{"admin"},
	extraPermit: func(m *model, p *mPrincipal, repo string) []string {
		// The seller of shop/NAME publishes its preview previews/NAME.
		if parts := strings.Split(repo, "/"); len(parts) == 2 && parts[0] == "previews" && m.owners["shop/"+parts[1]] == p.acct.name {
			return actions
		}
		return nil
	},
	extraDeny: func(m *model, p *mPrincipal, repo string) []string {
		// Only a listing's seller pushes to it; only its seller or an admin deletes it.
		if !listing(repo) || (p != nil && m.owners[repo] == p.acct.name) {
			return nil
		}
		if p != nil && m.isAdmin(p) {
			return []string{"push"}
		}
		return []string{"delete", "push"}
	},
	adminAllow: func(m *model, c *mCaller, op string, t mTarget) bool {
		seller := slices.Contains(c.acct.groups, "sellers")
		unrestricted := !c.key.restr.any()
		switch op {
		case "repos.reserve":
			// max_listings_per_seller is 20 in the bundle's data.
			return seller && unrestricted && t.account == c.acct.name && listing(t.repository) && len(m.owned(&c.mPrincipal)) < 20
		case "repos.release":
			return seller && unrestricted && listing(t.repository) && t.owner == c.acct.name
		case "grants.add", "grants.remove":
			return slices.Contains(c.acct.roles, "checkout") && keyPermitsWrite(c, t) && listing(t.repository) &&
				t.owner != "" && t.account != "" && t.group == "" && !slices.ContainsFunc(t.actions, func(a string) bool { return a != "pull" })
		}
		return false
	},
}

// teamModel is a team of bundles/teams/data.json: its members, and its role (as actions) per
// repository pattern.
type teamModel struct {
	members []string
	repos   map[string][]string // pattern -> actions of its role
}

var (
	read     = []string{"pull"}
	write    = []string{"pull", "push"}
	maintain = []string{"delete", "pull", "push"}
	// orgs are the organisations of bundles/teams/data.json.
	orgs = map[string]struct {
		owners []string
		frozen bool
		teams  map[string]teamModel
	}{
		"acme": {owners: []string{"alice"}, teams: map[string]teamModel{
			"backend": {members: []string{"bob"}, repos: map[string][]string{"acme/api": maintain, "acme/backend-*": write, "acme/base/**": read}},
			"qa":      {members: []string{"carol"}, repos: map[string][]string{"acme/**": read}},
		}},
		"globex": {owners: []string{"gina"}, frozen: true, teams: map[string]teamModel{
			"dev": {members: []string{"dan"}, repos: map[string][]string{"globex/**": write, "acme/api": maintain}},
		}},
	}
)

// ownsOrg reports whether p owns organisation org: listed as an owner, or in group ORG.owners.
func ownsOrg(p *mPrincipal, org string) bool {
	return slices.Contains(orgs[org].owners, p.acct.name) || slices.Contains(p.acct.groups, org+".owners")
}

func inTeam(p *mPrincipal, org, team string) bool {
	return slices.Contains(orgs[org].teams[team].members, p.acct.name) || slices.Contains(p.acct.groups, org+"."+team)
}

var teams = &bundleModel{
	name: "teams", shared: []string{"acme", "globex"}, personal: true, personalActions: []string{"pull", "push"},
	adminRoles: []string{"admin"},
	extraPermit: func(m *model, p *mPrincipal, repo string) []string {
		var out []string
		for org := range orgs {
			if !strings.HasPrefix(repo, org+"/") {
				continue
			}
			if ownsOrg(p, org) {
				out = append(out, actions...)
			}
		}
		for org, o := range orgs {
			for name, team := range o.teams {
				if !inTeam(p, org, name) {
					continue
				}
				for pattern, acts := range team.repos {
					// A team's pattern outside its organisation grants nothing.
					if strings.HasPrefix(pattern, org+"/") && globMatch(pattern, repo) {
						out = append(out, acts...)
					}
				}
			}
		}
		return out
	},
	extraDeny: func(m *model, p *mPrincipal, repo string) []string {
		// A frozen organisation is read-only.
		for org, o := range orgs {
			if o.frozen && strings.HasPrefix(repo, org+"/") {
				return []string{"delete", "push"}
			}
		}
		return nil
	},
	configDeny: func(p *mPrincipal, repo string) []string {
		// Releases are immutable: nobody but an admin deletes */releases/**.
		if globMatch("*/releases/**", repo) && (p == nil || !slices.Contains(p.acct.roles, "admin")) {
			return []string{"delete"}
		}
		return nil
	},
	adminAllow: func(m *model, c *mCaller, op string, t mTarget) bool {
		switch op {
		case "grants.add", "grants.remove", "repos.reserve", "repos.release":
		default:
			return false
		}
		if c.key.restr.any() {
			return false
		}
		if (op == "repos.reserve" || op == "repos.release") && !isLiteral(t.repository) {
			return false
		}
		for org := range orgs {
			if ownsOrg(&c.mPrincipal, org) && strings.HasPrefix(t.repository, org+"/") {
				return true
			}
		}
		return false
	},
}
