package isolation

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

// An op is one step of a sequence: an admin API call by the key labelled Actor, or the clock
// moving on. Keys are named by labels given when they are created, so a sequence replays the
// same with any secrets, and a step whose actor or target key was never created is skipped.
type op struct {
	Kind string // account, update, key, revoke, reserve, release, grant, ungrant, advance
	// Actor is the label of the calling key; "root" is the first admin's.
	Actor   string
	Account string
	Group   string
	Groups  []string
	Roles   []string
	// SetGroups, SetRoles and Disable say what an update changes.
	SetGroups bool
	SetRoles  bool
	Disable   *bool
	// Label names the key a "key" step creates; Key is the key a "revoke" step revokes.
	Label   string
	Key     string
	Expires string
	Restr   mRestrictions
	Repo    string
	Owner   string
	Actions []string
	Advance time.Duration
	// Raw sends a release as plain HTTP with the name in the path as it is, as curl would,
	// rather than through the admin client (which refuses names a path cleaner would change).
	Raw bool
}

func (o op) String() string {
	subject := func() string {
		if o.Group != "" {
			return "group:" + o.Group
		}
		return "account:" + o.Account
	}
	var b strings.Builder
	if o.Kind != "advance" {
		fmt.Fprintf(&b, "%s: ", o.Actor)
	}
	switch o.Kind {
	case "account":
		fmt.Fprintf(&b, "accounts create %s groups=%v roles=%v", o.Account, o.Groups, o.Roles)
	case "update":
		fmt.Fprintf(&b, "accounts update %s", o.Account)
		if o.SetGroups {
			fmt.Fprintf(&b, " groups=%v", o.Groups)
		}
		if o.SetRoles {
			fmt.Fprintf(&b, " roles=%v", o.Roles)
		}
		if o.Disable != nil {
			fmt.Fprintf(&b, " disabled=%v", *o.Disable)
		}
	case "key":
		who := o.Account
		if who == "" {
			who = "(itself)"
		}
		fmt.Fprintf(&b, "keys create %s for %s", o.Label, who)
		if o.Expires != "" {
			fmt.Fprintf(&b, " expires_in=%s", o.Expires)
		}
		if len(o.Restr.actions) > 0 {
			fmt.Fprintf(&b, " actions=%v", o.Restr.actions)
		}
		if len(o.Restr.repos) > 0 {
			fmt.Fprintf(&b, " repositories=%q", o.Restr.repos)
		}
		if len(o.Restr.cidrs) > 0 {
			fmt.Fprintf(&b, " cidrs=%v", o.Restr.cidrs)
		}
	case "revoke":
		fmt.Fprintf(&b, "keys revoke %s", o.Key)
	case "reserve":
		fmt.Fprintf(&b, "repos reserve %q", o.Repo)
		if o.Owner != "" {
			fmt.Fprintf(&b, " owner=%s", o.Owner)
		}
	case "release":
		fmt.Fprintf(&b, "repos release %q", o.Repo)
		if o.Raw {
			b.WriteString(" (plain DELETE of the path)")
		}
	case "grant":
		fmt.Fprintf(&b, "grants add %s %q %v", subject(), o.Repo, o.Actions)
		if o.Expires != "" {
			fmt.Fprintf(&b, " expires_in=%s", o.Expires)
		}
	case "ungrant":
		fmt.Fprintf(&b, "grants remove %s %q", subject(), o.Repo)
		if len(o.Actions) > 0 {
			fmt.Fprintf(&b, " %v", o.Actions)
		} else {
			b.WriteString(" (whole row)")
		}
	case "advance":
		fmt.Fprintf(&b, "clock +%s", o.Advance)
	}
	return b.String()
}

func (r mRestrictions) keystore() keystore.Restrictions {
	return keystore.Restrictions{Actions: r.actions, Repositories: r.repos, CIDRs: r.cidrs}
}

// runs reports whether the model has what op needs (its actor, the key it revokes): a step
// without it is skipped, in the model and on the server alike.
func (m *model) runs(o op) bool {
	if o.Kind == "advance" {
		return true
	}
	if _, ok := m.keys[o.Actor]; !ok {
		return false
	}
	if o.Kind == "revoke" {
		_, ok := m.keys[o.Key]
		return ok
	}
	return true
}

// apply performs op on the model and reports whether the server must accept it.
func (m *model) apply(o op) bool {
	if o.Kind == "advance" {
		m.now = m.now.Add(o.Advance)
		return true
	}
	p, ok := m.authenticate(o.Actor)
	if !ok {
		return false
	}
	c := &mCaller{*p}
	self := c.acct.name
	switch o.Kind {
	case "account":
		if !validNameRE.MatchString(o.Account) || !allValid(o.Groups) || !allValid(o.Roles) {
			return false
		}
		if !m.allowed(c, "accounts.create", mTarget{account: o.Account}) || m.accounts[o.Account] != nil {
			return false
		}
		m.accounts[o.Account] = &mAccount{name: o.Account, groups: slices.Clone(o.Groups), roles: slices.Clone(o.Roles)}
		return true

	case "update":
		a := m.accounts[o.Account]
		if !m.allowed(c, "accounts.update", mTarget{account: o.Account}) || a == nil {
			return false
		}
		if o.SetGroups {
			a.groups = slices.Clone(o.Groups)
		}
		if o.SetRoles {
			a.roles = slices.Clone(o.Roles)
		}
		if o.Disable != nil {
			a.disabled = *o.Disable
		}
		return true

	case "key":
		account := o.Account
		if account == "" {
			account = self
		}
		k := &mKey{label: o.Label, account: account, restr: o.Restr}
		now := m.now.Truncate(time.Second)
		if o.Expires != "" {
			d, err := time.ParseDuration(o.Expires)
			if err != nil {
				return false
			}
			k.expires = now.Add(d)
		}
		if !validRestrictions(o.Restr) {
			return false
		}
		// A key never outlives the key that creates it: it inherits the caller's expiry,
		// and may not ask for a later one.
		if parent := c.key.expires; !parent.IsZero() {
			if k.expires.IsZero() {
				k.expires = parent
			} else if k.expires.After(parent) {
				return false
			}
		}
		if !m.allowed(c, "keys.create", mTarget{account: account}) || m.accounts[account] == nil {
			return false
		}
		m.keys[o.Label] = k
		return true

	case "revoke":
		k := m.keys[o.Key]
		if !m.allowed(c, "keys.revoke", mTarget{account: k.account}) {
			return false
		}
		k.revoked = true
		return true

	case "reserve":
		owner := o.Owner
		if owner == "" {
			owner = self
		}
		if !isLiteral(o.Repo) || !validNameRE.MatchString(owner) {
			return false
		}
		if !m.allowed(c, "repos.reserve", mTarget{account: owner, repository: o.Repo}) {
			return false
		}
		if _, taken := m.owners[o.Repo]; taken || m.accounts[owner] == nil {
			return false
		}
		m.owners[o.Repo] = owner
		return true

	case "release":
		owner, found := m.owners[o.Repo]
		if !m.allowed(c, "repos.release", mTarget{repository: o.Repo, owner: owner}) || !found {
			return false
		}
		// The release takes every grant on exactly that name.
		delete(m.owners, o.Repo)
		for gk := range m.grants {
			if gk.pattern == o.Repo {
				delete(m.grants, gk)
			}
		}
		return true

	case "grant", "ungrant":
		gk := grantKey{subject: "account:" + o.Account, pattern: o.Repo}
		if o.Group != "" {
			gk.subject = "group:" + o.Group
		}
		name := o.Account + o.Group
		if (o.Account == "") == (o.Group == "") || !validNameRE.MatchString(name) || !validPattern(o.Repo) {
			return false
		}
		if (o.Kind == "grant" || len(o.Actions) > 0) && !validActions(o.Actions) {
			return false
		}
		t := mTarget{account: o.Account, group: o.Group, repository: o.Repo, owner: m.ownerOf(o.Repo), actions: o.Actions}
		row, exists := m.grants[gk]
		if o.Kind == "ungrant" {
			// A removal is judged on what it removes: the row's actions when none are named.
			if len(o.Actions) == 0 {
				t.actions = row.actions
			}
			if !m.allowed(c, "grants.remove", t) || !exists {
				return false
			}
			if len(o.Actions) > 0 {
				row.actions = slices.DeleteFunc(slices.Clone(row.actions), func(a string) bool { return slices.Contains(o.Actions, a) })
			}
			if len(o.Actions) == 0 || len(row.actions) == 0 {
				delete(m.grants, gk)
			} else {
				m.grants[gk] = row
			}
			return true
		}
		var end time.Time
		if o.Expires != "" {
			d, _ := time.ParseDuration(o.Expires)
			end = m.now.Add(d)
		}
		if !m.allowed(c, "grants.add", t) || (o.Account != "" && m.accounts[o.Account] == nil) {
			return false
		}
		next := mGrant{actions: sortedSet(o.Actions), end: end}
		if exists {
			// A row has one end: the same end adds actions; another end replaces the row, and
			// only a put naming every action it holds may change it.
			switch {
			case row.end.Equal(end):
				next.actions = sortedSet(append(slices.Clone(row.actions), o.Actions...))
			case slices.ContainsFunc(row.actions, func(a string) bool { return !slices.Contains(o.Actions, a) }):
				return false
			}
		}
		m.grants[gk] = next
		return true
	}
	panic("unknown op " + o.Kind)
}

func allValid(names []string) bool {
	return !slices.ContainsFunc(names, func(n string) bool { return !validNameRE.MatchString(n) })
}

func validActions(acts []string) bool {
	if len(acts) == 0 || len(acts) > 3 {
		return false
	}
	for i, a := range acts {
		if !slices.Contains(actions, a) || slices.Contains(acts[:i], a) {
			return false
		}
	}
	return true
}

func validRestrictions(r mRestrictions) bool {
	if len(r.actions) > 0 && !validActions(r.actions) {
		return false
	}
	for _, p := range r.repos {
		if !validPattern(p) {
			return false
		}
	}
	for _, c := range r.cidrs {
		if _, err := netip.ParsePrefix(c); err != nil {
			return false
		}
	}
	return len(r.repos) <= 16 && len(r.cidrs) <= 16
}

func sortedSet(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// The pools ops draw from: small, so that sequences collide on the same names, and full of the
// names the isolation rules are about.
var (
	accountPool = []string{"adam", "sam", "sara", "bob", "bea", "shopfront", "mal", "alice", "carol", "dan", "gina", "shop", "acme"}
	// profiles are the groups and roles an account usually gets: admins, sellers, buyers, the
	// checkout service, the malicious account, and the teams bundle's people.
	profiles = map[string][2][]string{
		"adam": {nil, {"admin"}}, "sam": {{"sellers"}, nil}, "sara": {{"sellers"}, nil},
		"bob": {{"buyers"}, nil}, "bea": {{"buyers"}, nil}, "shopfront": {nil, {"checkout"}},
		"mal": {{"sellers"}, nil}, "alice": {nil, nil}, "carol": {{"acme.qa"}, nil},
		"dan": {nil, nil}, "gina": {{"globex.owners"}, nil},
	}
	groupPool = []string{"sellers", "buyers", "staff", "acme.backend", "acme.owners", "acme.qa", "globex.dev", "globex.owners", "owners"}
	rolePool  = []string{"admin", "checkout"}
	// universe are the repositories every key's token is asked about after each step.
	universe = []string{
		"shop/app", "shop/premium", "previews/app", "previews/premium",
		"acme/api", "acme/backend-x", "acme/base/img", "acme/releases/v1",
		"globex/tool", "globex/releases/v2", "sam/tool", "mal/tool", "alice/tool", "app", "team/x",
	}
	// patternPool are grant and key patterns: names of the universe, globs, and names no
	// pattern may be (upper case, empty or dot segments).
	patternPool = append(slices.Clone(universe),
		"shop/*", "shop/**", "shop/prem*", "acme/**", "acme/*", "*/tool", "**", "previews/*", "globex/**", "team/*",
		"Shop/app", "shop//premium", "shop/../premium", "./shop/app")
	// reservePool are names to reserve and release: listings, names in organisations and
	// personal namespaces, and pattern-like and case-variant names that must be refused.
	reservePool = []string{"shop/app", "shop/premium", "shop/x", "previews/app", "acme/api", "acme/new", "globex/tool",
		"sam/tool", "mal/tool", "team/x", "app",
		"shop/*", "shop/**", "shop/prem*", "Shop/X", "shop/App", "shop/../premium", "shop//premium"}
	cidrPool    = []string{"127.0.0.0/8", "127.0.0.1/32", "10.0.0.0/8"}
	expiryPool  = []string{"", "", "5m", "1h", "720h"}
	advancePool = []time.Duration{time.Minute, 10 * time.Minute, 2 * time.Hour}
)

// generator draws ops from the model's state, so that most steps name accounts and keys that
// exist.
type generator struct {
	r    *rand.Rand
	next int
}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func (g *generator) subset(pool []string, max int) []string {
	n := g.r.IntN(max + 1)
	var out []string
	for range n {
		if s := pick(g.r, pool); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (g *generator) actions() []string {
	switch g.r.IntN(4) {
	case 0, 1:
		return []string{"pull"}
	case 2:
		return []string{"pull", "push"}
	}
	out := g.subset(actions, 3)
	if len(out) == 0 {
		out = []string{"delete"}
	}
	return out
}

func (g *generator) account(m *model) string {
	if len(m.accounts) > 0 && g.r.IntN(5) > 0 {
		return pick(g.r, sortedKeys(m.accounts))
	}
	return pick(g.r, accountPool)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// op draws the next step.
func (g *generator) op(m *model) op {
	g.next++
	o := op{Actor: "root"}
	labels := sortedKeys(m.keys)
	var live []string
	keyless := map[string]bool{}
	for name := range m.accounts {
		keyless[name] = true
	}
	for _, l := range labels {
		if _, ok := m.authenticate(l); ok {
			live = append(live, l)
			delete(keyless, m.keys[l].account)
		}
	}
	switch n := g.r.IntN(10); {
	case n < 3:
	case n < 9 && len(live) > 0:
		o.Actor = pick(g.r, live)
	default:
		o.Actor = pick(g.r, labels)
	}
	// Early on, mostly create the cast; then give every account a key now and then.
	if len(m.accounts) < 6 && g.r.IntN(3) > 0 {
		o.Actor = "root"
		return g.createAccount(o)
	}
	if len(keyless) > 0 && g.r.IntN(4) == 0 {
		o.Actor, o.Kind, o.Label, o.Account = "root", "key", fmt.Sprintf("k%d", g.next), pick(g.r, sortedKeys(keyless))
		if g.r.IntN(3) == 0 {
			o.Restr = g.restrictions(nil)
		}
		return o
	}
	var p *mPrincipal
	if a, ok := m.authenticate(o.Actor); ok {
		p = a
	}
	mine := g.relevant(m, p)
	n := g.r.IntN(100)
	if len(mine) > 0 && g.r.IntN(3) == 0 {
		// A caller with names of its own often acts on them: sells, refunds, releases.
		n = pick(g.r, []int{40, 50, 70, 90})
	}
	switch {
	case n < 5:
		return g.createAccount(o)
	case n < 13:
		o.Kind, o.Account = "update", g.account(m)
		switch g.r.IntN(3) {
		case 0:
			o.SetGroups, o.Groups = true, g.subset(groupPool, 2)
		case 1:
			o.SetRoles, o.Roles = true, g.subset(rolePool, 1)
		default:
			d := g.r.IntN(2) == 0
			o.Disable = &d
		}
	case n < 25:
		o.Kind, o.Label = "key", fmt.Sprintf("k%d", g.next)
		if g.r.IntN(2) == 0 {
			o.Account = g.account(m)
		}
		o.Expires = pick(g.r, expiryPool)
		if g.r.IntN(2) == 0 {
			o.Restr = g.restrictions(mine)
		}
	case n < 30:
		o.Kind, o.Key = "revoke", pick(g.r, labels)
	case n < 47:
		o.Kind, o.Repo = "reserve", pick(g.r, reservePool)
		if len(mine) > 0 && g.r.IntN(2) == 0 {
			o.Repo = pick(g.r, mine)
		}
		if g.r.IntN(3) == 0 {
			o.Owner = g.account(m)
		}
	case n < 56:
		o.Kind, o.Repo = "release", pick(g.r, reservePool)
		if owned := sortedKeys(m.owners); len(owned) > 0 && g.r.IntN(3) > 0 {
			o.Repo = pick(g.r, owned)
		}
		o.Raw = g.r.IntN(3) == 0
	case n < 82:
		o.Kind = "grant"
		g.grantTarget(m, &o, mine)
		o.Actions = g.actions()
		if g.r.IntN(4) == 0 {
			o.Expires = pick(g.r, []string{"5m", "1h"})
		}
	case n < 96:
		o.Kind = "ungrant"
		g.grantTarget(m, &o, mine)
		if rows := sortedGrants(m); len(rows) > 0 && g.r.IntN(3) > 0 {
			gk := pick(g.r, rows)
			kind, name, _ := strings.Cut(gk.subject, ":")
			o.Account, o.Group, o.Repo = "", "", gk.pattern
			if kind == "group" {
				o.Group = name
			} else {
				o.Account = name
			}
		}
		if g.r.IntN(2) == 0 {
			o.Actions = g.actions()
		}
	default:
		o.Kind, o.Advance = "advance", pick(g.r, advancePool)
	}
	return o
}

// relevant are the names the caller p has a say on, by the documented rules: the names it
// reserved, listings it could reserve as a seller or sell as the checkout service, names in
// the organisations it owns. Steps often pick them, so that the rules about them are reached.
func (g *generator) relevant(m *model, p *mPrincipal) []string {
	if p == nil {
		return nil
	}
	out := m.owned(p)
	if slices.Contains(p.acct.groups, "sellers") {
		out = append(out, "shop/app", "shop/premium", "shop/x", "previews/app")
	}
	if slices.Contains(p.acct.roles, "checkout") {
		for name := range m.owners {
			if strings.HasPrefix(name, "shop/") {
				out = append(out, name)
			}
		}
	}
	for org := range orgs {
		if ownsOrg(p, org) {
			out = append(out, org+"/api", org+"/new", org+"/tool", org+"/**", org+"/releases/v1")
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// restrictions are one kind of key restriction: read-only, repository patterns (some of them
// names the caller has a say on), or a network.
func (g *generator) restrictions(mine []string) mRestrictions {
	var r mRestrictions
	switch g.r.IntN(3) {
	case 0:
		r.actions = []string{"pull"}
	case 1:
		r.repos = g.subset(append(slices.Clone(patternPool), mine...), 2)
	default:
		r.cidrs = []string{pick(g.r, cidrPool)}
	}
	return r
}

func (g *generator) createAccount(o op) op {
	o.Kind, o.Account = "account", pick(g.r, accountPool)
	if p, ok := profiles[o.Account]; ok && g.r.IntN(4) > 0 {
		o.Groups, o.Roles = p[0], p[1]
	} else {
		o.Groups, o.Roles = g.subset(groupPool, 2), g.subset(rolePool, 1)
	}
	return o
}

func (g *generator) grantTarget(m *model, o *op, mine []string) {
	if g.r.IntN(4) == 0 {
		o.Group = pick(g.r, groupPool)
	} else {
		o.Account = g.account(m)
	}
	o.Repo = pick(g.r, patternPool)
	switch owned := sortedKeys(m.owners); {
	case len(mine) > 0 && g.r.IntN(2) == 0:
		o.Repo = pick(g.r, mine)
	case len(owned) > 0 && g.r.IntN(3) == 0:
		o.Repo = pick(g.r, owned)
	}
}

func sortedGrants(m *model) []grantKey {
	out := make([]grantKey, 0, len(m.grants))
	for gk := range m.grants {
		out = append(out, gk)
	}
	slices.SortFunc(out, func(a, b grantKey) int { return strings.Compare(a.subject+" "+a.pattern, b.subject+" "+b.pattern) })
	return out
}
