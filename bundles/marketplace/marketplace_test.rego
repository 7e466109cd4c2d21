package regoauth.extensions.marketplace_test

import data.regoauth.admin
import data.regoauth.authz

# The cases are data: `opa test` checks them here, and the Go tests of package bundles decide
# the same inputs with regoauth's engine and the bundle built by `opa build`.

principal(account, groups, roles) := {
	"account": account, "anonymous": false, "groups": groups, "roles": roles,
	"key": {"id": concat("-", [account, "key"]), "name": "laptop"},
}

anonymous := {"anonymous": true, "groups": [], "roles": []}

repo(name, actions) := {"type": "repository", "name": name, "actions": actions}

token_input(p, grants, owned, scopes) := {
	"service": "registry.example.com",
	"client": {"ip": "198.51.100.7", "id": "docker", "user_agent": "docker/28"},
	"principal": p,
	"grants": grants,
	"owned": owned,
	"scopes": scopes,
}

pull_grant(account, repository) := {"subject": concat(":", ["account", account]), "repository": repository, "actions": ["pull"]}

seller := principal("sam", ["sellers"], [])

buyer := principal("bob", ["buyers"], [])

shop_admin := principal("root", [], ["admin"])

checkout := principal("checkout", [], ["checkout"])

# Token decisions: access is {"TYPE:NAME": [allowed actions]}.
cases := [
	{
		"name": "seller publishes its listing",
		"input": token_input(seller, [], ["shop/app"], [repo("shop/app", ["pull", "push", "delete"])]),
		"access": {"repository:shop/app": ["delete", "pull", "push"]},
	},
	{
		"name": "seller publishes the listing's preview, not another's",
		"input": token_input(seller, [], ["shop/app"], [repo("previews/app", ["pull", "push"]), repo("previews/other", ["push"])]),
		"access": {"repository:previews/app": ["pull", "push"], "repository:previews/other": []},
	},
	{
		"name": "buyer before the purchase",
		"input": token_input(buyer, [], [], [repo("shop/app", ["pull"])]),
		"access": {"repository:shop/app": []},
	},
	{
		"name": "buyer after the purchase pulls, never pushes",
		"input": token_input(buyer, [pull_grant("bob", "shop/app")], [], [repo("shop/app", ["pull", "push"])]),
		"access": {"repository:shop/app": ["pull"]},
	},
	{
		"name": "a push grant does not open someone else's listing",
		"input": token_input(buyer, [{"subject": "account:bob", "repository": "shop/*", "actions": ["pull", "push"]}], [], [repo("shop/app", ["pull", "push"])]),
		"access": {"repository:shop/app": ["pull"]},
	},
	{
		"name": "admins take listings down but never publish to them",
		"input": token_input(shop_admin, [], [], [repo("shop/app", ["pull", "push", "delete"])]),
		"access": {"repository:shop/app": ["delete", "pull"]},
	},
	{
		"name": "anyone pulls previews, anonymous included",
		"input": token_input(anonymous, [], [], [repo("previews/app", ["pull", "push"]), repo("shop/app", ["pull"])]),
		"access": {"repository:previews/app": ["pull"], "repository:shop/app": []},
	},
	{
		"name": "a stored pattern reservation is no listing",
		"input": token_input(seller, [], ["shop/*"], [repo("shop/premium", ["pull", "push"]), repo("previews/premium", ["push"])]),
		"access": {"repository:shop/premium": [], "repository:previews/premium": []},
	},
	{
		"name": "names outside the shop follow the library",
		"input": token_input(buyer, [pull_grant("bob", "tools/cli")], [], [repo("tools/cli", ["pull", "push"])]),
		"access": {"repository:tools/cli": ["pull"]},
	},
]

admin_input(p, operation, target, owned) := {"principal": p, "operation": operation, "target": target, "owned": owned}

# Admin API decisions.
admin_cases := [
	{
		"name": "seller reserves a listing for itself",
		"input": admin_input(seller, "repos.reserve", {"account": "sam", "repository": "shop/new"}, ["shop/app"]),
		"allow": true,
	},
	{
		"name": "seller reserves nothing outside the shop",
		"input": admin_input(seller, "repos.reserve", {"account": "sam", "repository": "tools/new"}, []),
		"allow": false,
	},
	{
		"name": "seller reserves nothing for others",
		"input": admin_input(seller, "repos.reserve", {"account": "eve", "repository": "shop/new"}, []),
		"allow": false,
	},
	{
		"name": "buyers do not reserve",
		"input": admin_input(buyer, "repos.reserve", {"account": "bob", "repository": "shop/new"}, []),
		"allow": false,
	},
	{
		"name": "seller releases its listing",
		"input": admin_input(seller, "repos.release", {"repository": "shop/app", "owner": "sam"}, ["shop/app"]),
		"allow": true,
	},
	{
		"name": "seller releases no one else's listing",
		"input": admin_input(seller, "repos.release", {"repository": "shop/other", "owner": "eve"}, []),
		"allow": false,
	},
	{
		"name": "checkout records a purchase",
		"input": admin_input(checkout, "grants.add", {"account": "bob", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, []),
		"allow": true,
	},
	{
		"name": "checkout refunds a purchase",
		"input": admin_input(checkout, "grants.remove", {"account": "bob", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, []),
		"allow": true,
	},
	{
		"name": "a read-only checkout key records nothing",
		"input": admin_input(with_key(checkout, {"actions": ["pull"]}), "grants.add", {"account": "bob", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, []),
		"allow": false,
	},
	{
		"name": "a checkout key for one listing records nothing on another",
		"input": admin_input(with_key(checkout, {"repositories": ["shop/only-this"]}), "grants.add", {"account": "bob", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, []),
		"allow": false,
	},
	{
		"name": "a checkout key limited to other networks records nothing",
		"input": object.union(admin_input(with_key(checkout, {"cidrs": ["10.0.0.0/8"]}), "grants.add", {"account": "bob", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, []), {"client": {"ip": "192.0.2.1"}}),
		"allow": false,
	},
	{
		"name": "a checkout key limited to the shop and its network records purchases",
		"input": object.union(admin_input(with_key(checkout, {"repositories": ["shop/*"], "cidrs": ["192.0.2.0/24"]}), "grants.add", {"account": "bob", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, []), {"client": {"ip": "192.0.2.1"}}),
		"allow": true,
	},
	{
		"name": "checkout removes no push an admin granted",
		"input": admin_input(checkout, "grants.remove", {"account": "bob", "repository": "shop/app", "actions": ["pull", "push"], "owner": "sam"}, []),
		"allow": false,
	},
	{
		"name": "checkout removes nothing of unknown extent",
		"input": admin_input(checkout, "grants.remove", {"account": "bob", "repository": "shop/app", "owner": "sam"}, []),
		"allow": false,
	},
	{
		"name": "checkout sells nothing but pull",
		"input": admin_input(checkout, "grants.add", {"account": "bob", "repository": "shop/app", "actions": ["pull", "push"], "owner": "sam"}, []),
		"allow": false,
	},
	{
		"name": "checkout sells no unreserved name",
		"input": admin_input(checkout, "grants.add", {"account": "bob", "repository": "shop/nobody", "actions": ["pull"]}, []),
		"allow": false,
	},
	{
		"name": "checkout sells to accounts, not groups",
		"input": admin_input(checkout, "grants.add", {"group": "buyers", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, []),
		"allow": false,
	},
	{
		"name": "a pattern is no listing",
		"input": admin_input(seller, "repos.reserve", {"account": "sam", "repository": "shop/*"}, []),
		"allow": false,
	},
	{
		"name": "a name with a glob is no listing",
		"input": admin_input(seller, "repos.reserve", {"account": "sam", "repository": "shop/prem*"}, []),
		"allow": false,
	},
	{
		"name": "the owner of a stored pattern sells nothing",
		"input": admin_input(seller, "grants.add", {"account": "bob", "repository": "shop/*", "actions": ["pull"], "owner": "sam"}, ["shop/*"]),
		"allow": false,
	},
	{
		"name": "checkout sells no pattern",
		"input": admin_input(checkout, "grants.add", {"account": "bob", "repository": "shop/*", "actions": ["pull"], "owner": "sam"}, []),
		"allow": false,
	},
	{
		"name": "the owner of a stored pattern releases nothing through the shop",
		"input": admin_input(seller, "repos.release", {"repository": "shop/**", "owner": "sam"}, ["shop/**"]),
		"allow": false,
	},
	{
		"name": "the seller sells its own listing (library rule)",
		"input": admin_input(seller, "grants.add", {"account": "bob", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, ["shop/app"]),
		"allow": true,
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

test_reserving_is_limited if {
	owned := [sprintf("shop/app%d", [i]) | some i in numbers.range(1, 20)]
	d := admin.decision with input as admin_input(seller, "repos.reserve", {"account": "sam", "repository": "shop/one-more"}, owned)
	d.allow == false
}

test_restricted_keys_do_not_reserve if {
	p := object.union(seller, {"key": {"id": "k", "restrictions": {"actions": ["pull"]}}})
	d := admin.decision with input as admin_input(p, "repos.reserve", {"account": "sam", "repository": "shop/new"}, [])
	d.allow == false
}

test_denial_reasons if {
	d := authz.decision with input as token_input(buyer, [{"subject": "account:bob", "repository": "shop/*", "actions": ["push", "delete"]}], [], [repo("shop/app", ["push", "delete"])])
	d.reasons == [
		"repository:shop/app delete: only the listing's seller or an admin deletes it",
		"repository:shop/app push: only the listing's seller publishes to it",
	]
}

# The limit travels with the decision, so the server checks it in the same write as the
# reservation: concurrent reservations cannot all pass a count taken before any of them.
test_reservation_limit_is_in_the_decision if {
	d := admin.decision with input as admin_input(seller, "repos.reserve", {"account": "sam", "repository": "shop/new"}, [])
	d.allow == true
	d.max_owned == 20
}

restricted_keys := {
	"read-only": {"actions": ["pull"]},
	"limited to another listing": {"repositories": ["shop/only-this"]},
	"limited to other networks": {"cidrs": ["10.0.0.0/8"]},
}

with_key(p, r) := object.union(p, {"key": {"id": "restricted", "restrictions": r}})

# Every admin_allow rule of the bundle, with a write it allows: each holds a key's restrictions
# itself (the library's floor holds them too), so the rule alone allows none of these writes.
allowed_writes := [
	["seller reserves", seller, "repos.reserve", {"account": "sam", "repository": "shop/app"}, []],
	["seller releases", seller, "repos.release", {"repository": "shop/app", "owner": "sam"}, ["shop/app"]],
	["checkout records a purchase", checkout, "grants.add", {"account": "bob", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, []],
	["checkout refunds", checkout, "grants.remove", {"account": "bob", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, []],
]

test_every_admin_allow_rule_holds_key_restrictions if {
	# With an unrestricted key, each rule allows its write...
	every w in allowed_writes {
		data.regoauth.extensions.marketplace.admin_allow with input as object.union(admin_input(w[1], w[2], w[3], w[4]), {"client": {"ip": "127.0.0.1"}})
	}

	# ...and with a restricted key, none does, rule by rule and as a decision.
	leaks := [[name, kind] |
		some [name, p, operation, target, owned] in allowed_writes
		some kind, r in restricted_keys
		call := object.union(admin_input(with_key(p, r), operation, target, owned), {"client": {"ip": "127.0.0.1"}})
		rule_or_decision_allows(call)
	]
	leaks == []
}

rule_or_decision_allows(call) if data.regoauth.extensions.marketplace.admin_allow with input as call

rule_or_decision_allows(call) if admin.decision.allow with input as call

test_checkout_with_a_key_for_the_shop_records_purchases if {
	call := admin_input(with_key(checkout, {"repositories": ["shop/*"]}), "grants.add", {"account": "bob", "repository": "shop/app", "actions": ["pull"], "owner": "sam"}, [])
	admin.decision.allow with input as call
	not admin.decision.allow with input as object.union(call, {"target": {"repository": "tools/x"}})
}
