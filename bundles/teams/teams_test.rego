package regoauth.extensions.teams_test

import data.regoauth.admin
import data.regoauth.authz

# The cases are data: `opa test` checks them here, and the Go tests of package bundles decide
# the same inputs with regoauth's engine and the bundle built by `opa build`.

principal(account, groups, roles) := {
	"account": account, "anonymous": false, "groups": groups, "roles": roles,
	"key": {"id": concat("-", [account, "key"])},
}

repo(name, actions) := {"type": "repository", "name": name, "actions": actions}

token_input(p, scopes) := {
	"service": "registry.example.com",
	"client": {"ip": "198.51.100.7"},
	"principal": p,
	"grants": [],
	"owned": [],
	"scopes": scopes,
}

all := ["delete", "pull", "push"]

cases := [
	{
		"name": "maintainers of a repository",
		"input": token_input(principal("bob", [], []), [repo("acme/api", all)]),
		"access": {"repository:acme/api": ["delete", "pull", "push"]},
	},
	{
		"name": "a write role on a glob",
		"input": token_input(principal("bob", [], []), [repo("acme/backend-worker", all), repo("acme/frontend", ["pull"])]),
		"access": {"repository:acme/backend-worker": ["pull", "push"], "repository:acme/frontend": []},
	},
	{
		"name": "a read role across the organisation",
		"input": token_input(principal("carol", [], []), [repo("acme/api", ["pull", "push"]), repo("globex/app", ["pull"])]),
		"access": {"repository:acme/api": ["pull"], "repository:globex/app": []},
	},
	{
		"name": "membership through a key store group ORG.TEAM",
		"input": token_input(principal("erin", ["acme.qa"], []), [repo("acme/tools/cli", ["pull", "push"])]),
		"access": {"repository:acme/tools/cli": ["pull"]},
	},
	{
		"name": "owners hold the namespace",
		"input": token_input(principal("alice", [], []), [repo("acme/anything/deep", all)]),
		"access": {"repository:acme/anything/deep": ["delete", "pull", "push"]},
	},
	{
		"name": "owners through a key store group ORG.owners",
		"input": token_input(principal("olga", ["acme.owners"], []), [repo("acme/x", ["push"])]),
		"access": {"repository:acme/x": ["push"]},
	},
	{
		"name": "a team's pattern outside its organisation grants nothing",
		"input": token_input(principal("dan", [], []), [repo("acme/api", ["pull"])]),
		"access": {"repository:acme/api": []},
	},
	{
		"name": "a frozen organisation is read-only",
		"input": token_input(principal("dan", [], []), [repo("globex/app", ["pull", "push"])]),
		"access": {"repository:globex/app": ["pull"]},
	},
	{
		"name": "releases are immutable, except for admins",
		"input": token_input(principal("alice", [], []), [repo("acme/releases/v1", all)]),
		"access": {"repository:acme/releases/v1": ["pull", "push"]},
	},
	{
		"name": "admins still delete releases",
		"input": token_input(principal("root", [], ["admin"]), [repo("acme/releases/v1", ["delete"])]),
		"access": {"repository:acme/releases/v1": ["delete"]},
	},
	{
		"name": "personal namespaces, pull and push",
		"input": token_input(principal("bob", [], []), [repo("bob/scratch", all)]),
		"access": {"repository:bob/scratch": ["pull", "push"]},
	},
	{
		"name": "an account named like an organisation has no personal namespace there",
		"input": token_input(principal("acme", [], []), [repo("acme/api", all), repo("acme/scratch", ["pull", "push"])]),
		"access": {"repository:acme/api": [], "repository:acme/scratch": []},
	},
	{
		"name": "no team, no access",
		"input": token_input(principal("mallory", ["acme.nonexistent"], []), [repo("acme/api", ["pull"])]),
		"access": {"repository:acme/api": []},
	},
]

admin_input(p, operation, target) := {"principal": p, "operation": operation, "target": target, "owned": []}

admin_cases := [
	{
		"name": "owners grant in their namespace",
		"input": admin_input(principal("alice", [], []), "grants.add", {"group": "contractors", "repository": "acme/**", "actions": ["pull"]}),
		"allow": true,
	},
	{
		"name": "owners grant nothing elsewhere",
		"input": admin_input(principal("alice", [], []), "grants.add", {"account": "bob", "repository": "globex/app", "actions": ["pull"]}),
		"allow": false,
	},
	{
		"name": "owners reserve names in their namespace",
		"input": admin_input(principal("olga", ["acme.owners"], []), "repos.reserve", {"account": "bob", "repository": "acme/new"}),
		"allow": true,
	},
	{
		"name": "owners reserve no pattern",
		"input": admin_input(principal("alice", [], []), "repos.reserve", {"account": "bob", "repository": "acme/*"}),
		"allow": false,
	},
	{
		"name": "no account is named like an organisation",
		"input": admin_input(principal("root", [], ["admin"]), "accounts.create", {"account": "globex"}),
		"allow": false,
	},
	{
		"name": "no reservation in another account's personal namespace",
		"input": admin_input(principal("root", [], ["admin"]), "repos.reserve", {"account": "alice", "repository": "bob/app"}),
		"allow": false,
	},
	{
		"name": "team members do not manage grants",
		"input": admin_input(principal("bob", [], []), "grants.add", {"account": "bob", "repository": "acme/api", "actions": ["push"]}),
		"allow": false,
	},
	{
		"name": "an owner's restricted key manages nothing",
		"input": admin_input(object.union(principal("alice", [], []), {"key": {"id": "k", "restrictions": {"actions": ["pull"]}}}), "grants.add", {"account": "bob", "repository": "acme/api", "actions": ["pull"]}),
		"allow": false,
	},
]

access(token_input) := {sprintf("%s:%s", [e.type, e.name]): e.actions |
	some e in decision.access
} if {
	decision := authz.decision with input as token_input
}

failing contains c.name if {
	some c in cases
	got := access(c.input)
	got != c.access
	print(c.name, "got", got, "want", c.access)
}

failing contains c.name if {
	some c in admin_cases
	got := admin.decision.allow with input as c.input
	got != c.allow
	print(c.name, "got", got, "want", c.allow)
}

test_cases if count(failing) == 0

test_frozen_reason if {
	d := authz.decision with input as token_input(principal("gina", [], []), [repo("globex/app", ["push"])])
	d.reasons == ["repository:globex/app push: organisation globex is frozen"]
}

# The group ORG.owners is organisation ownership; a team that happens to be named "owners" is
# only a team: its members are not the organisation's owners.
test_a_team_named_owners_is_not_ownership if {
	orgs := {"acme": {"owners": [], "teams": {"owners": {"members": ["tina"], "repositories": {"acme/docs": "read"}}}}}
	tina := principal("tina", [], [])
	a := access(token_input(tina, [repo("acme/docs", ["pull"]), repo("acme/x", ["push"])])) with data.teams.organisations as orgs
	a == {"repository:acme/docs": ["pull"], "repository:acme/x": []}
	not admin.decision.allow with input as admin_input(tina, "grants.add", {"account": "x", "repository": "acme/x", "actions": ["pull"]})
		with data.teams.organisations as orgs
	olga := principal("olga", ["acme.owners"], [])
	b := access(token_input(olga, [repo("acme/x", ["push"])])) with data.teams.organisations as orgs
	b == {"repository:acme/x": ["push"]}
}

restricted_keys := {
	"read-only": {"actions": ["pull"]},
	"limited to another repository": {"repositories": ["acme/only-this"]},
	"limited to other networks": {"cidrs": ["10.0.0.0/8"]},
}

# The bundle's admin_allow rule, for each operation it allows an owner: with a restricted key
# neither the rule nor the decision allows it.
test_admin_allow_holds_key_restrictions if {
	alice := principal("alice", [], [])
	writes := [
		["grants.add", {"account": "bob", "repository": "acme/api", "actions": ["push"]}],
		["grants.remove", {"account": "bob", "repository": "acme/api", "actions": ["push"]}],
		["repos.reserve", {"account": "bob", "repository": "acme/new"}],
		["repos.release", {"repository": "acme/new", "owner": "bob"}],
		["grants.list", {"repository": "acme/api"}],
	]
	every w in writes {
		data.regoauth.extensions.teams.admin_allow with input as admin_input(alice, w[0], w[1])
	}
	leaks := [[operation, kind] |
		some [operation, target] in writes
		some kind, r in restricted_keys
		p := object.union(alice, {"key": {"id": "restricted", "restrictions": r}})
		call := object.union(admin_input(p, operation, target), {"client": {"ip": "127.0.0.1"}})
		allowed_by_rule_or_decision(call)
	]
	leaks == []
}

allowed_by_rule_or_decision(call) if data.regoauth.extensions.teams.admin_allow with input as call

allowed_by_rule_or_decision(call) if admin.decision.allow with input as call
