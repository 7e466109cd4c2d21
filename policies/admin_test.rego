package regoauth.admin_test

import data.regoauth.admin

principal(name, extra) := object.union(
	{"account": name, "anonymous": false, "groups": [], "roles": [], "key": {"id": "k1"}},
	extra,
)

admin_principal := principal("admin", {"roles": ["admin"]})

restricted(p) := object.union(p, {"key": {"id": "k2", "restrictions": {"actions": ["pull"]}}})

allowed(p, operation, target) if {
	d := admin.decision with input as {"principal": p, "operation": operation, "target": target, "owned": []}
	d.allow == true
}

test_admin_may_do_anything if {
	allowed(admin_principal, "accounts.create", {"account": "user1"})
	allowed(admin_principal, "grants.add", {"account": "user1", "repository": "image", "actions": ["push"]})
	allowed(admin_principal, "keys.revoke", {"account": "user1", "key_id": "x"})
}

test_restricted_admin_key_may_only_read if {
	allowed(restricted(admin_principal), "grants.list", {})
	allowed(restricted(admin_principal), "status.read", {})
	not allowed(restricted(admin_principal), "grants.add", {"account": "user1", "repository": "image", "actions": ["pull"]})
	not allowed(restricted(admin_principal), "keys.create", {"account": "admin"})
}

test_accounts_manage_their_own_keys if {
	allowed(principal("user1", {}), "keys.create", {"account": "user1"})
	allowed(principal("user1", {}), "keys.list", {"account": "user1"})
	allowed(principal("user1", {}), "keys.revoke", {"account": "user1", "key_id": "x"})
	allowed(principal("user1", {}), "accounts.get", {"account": "user1"})
}

test_accounts_do_not_touch_other_accounts_keys if {
	not allowed(principal("user1", {}), "keys.create", {"account": "user2"})
	not allowed(principal("user1", {}), "keys.list", {"account": "user2"})
	not allowed(principal("user1", {}), "keys.list", {})
	not allowed(principal("user1", {}), "keys.revoke", {"account": "user2", "key_id": "x"})
}

test_restricted_key_cannot_mint_keys if {
	not allowed(restricted(principal("user1", {})), "keys.create", {"account": "user1"})
	allowed(restricted(principal("user1", {})), "keys.list", {"account": "user1"})
}

test_non_admins_cannot_administer if {
	not allowed(principal("user1", {}), "status.read", {})
	not allowed(principal("user1", {}), "accounts.create", {"account": "user3"})
	not allowed(principal("user1", {}), "grants.add", {"account": "user1", "repository": "image", "actions": ["push"]})
	not allowed(principal("user1", {"groups": ["admin"]}), "grants.add", {"account": "user1", "repository": "x", "actions": ["pull"]})
}

test_anonymous_may_do_nothing if {
	not allowed({"anonymous": true, "groups": [], "roles": ["admin"]}, "accounts.list", {})
}

test_refusal_carries_a_reason if {
	d := admin.decision with input as {"principal": principal("user1", {}), "operation": "accounts.create", "target": {}, "owned": []}
	d == {"allow": false, "reasons": ["not permitted by the admin policy"]}
}

seller := principal("seller", {})

test_owner_grants_and_revokes_pull_on_owned_repository if {
	allowed(seller, "grants.add", {"account": "buyer", "repository": "shop/app", "actions": ["pull"], "owner": "seller"})
	allowed(seller, "grants.remove", {"account": "buyer", "repository": "shop/app", "actions": ["pull"], "owner": "seller"})
}

# The admin API sends the actions a removal actually removes (the row's, when the caller names
# none): a target without actions is a removal of unknown extent, and is refused.
test_owner_removes_only_what_it_may_grant if {
	allowed(seller, "grants.remove", {"account": "buyer", "repository": "shop/app", "actions": [], "owner": "seller"})
	not allowed(seller, "grants.remove", {"account": "buyer", "repository": "shop/app", "owner": "seller"})
	not allowed(seller, "grants.remove", {"account": "buyer", "repository": "shop/app", "actions": ["pull", "push"], "owner": "seller"})
	not allowed(seller, "grants.remove", {"account": "buyer", "repository": "shop/app", "actions": ["delete"], "owner": "seller"})
	not allowed(seller, "grants.add", {"account": "buyer", "repository": "shop/app", "owner": "seller"})
}

test_owner_cannot_grant_more_than_pull if {
	not allowed(seller, "grants.add", {"account": "buyer", "repository": "shop/app", "actions": ["pull", "push"], "owner": "seller"})
	not allowed(seller, "grants.add", {"account": "buyer", "repository": "shop/app", "actions": ["delete"], "owner": "seller"})
}

test_owner_cannot_grant_to_groups if {
	not allowed(seller, "grants.add", {"group": "everyone", "repository": "shop/app", "actions": ["pull"], "owner": "seller"})
}

test_non_owner_cannot_grant if {
	not allowed(seller, "grants.add", {"account": "buyer", "repository": "other/app", "actions": ["pull"], "owner": "someone"})
	not allowed(seller, "grants.add", {"account": "buyer", "repository": "unowned", "actions": ["pull"]})
}

test_owner_with_restricted_key_cannot_grant if {
	not allowed(restricted(seller), "grants.add", {"account": "buyer", "repository": "shop/app", "actions": ["pull"], "owner": "seller"})
}

test_accounts_read_their_own_grants_and_repositories if {
	allowed(principal("user1", {}), "grants.list", {"account": "user1"})
	allowed(principal("user1", {}), "repos.list", {"account": "user1"})
	not allowed(principal("user1", {}), "grants.list", {"account": "user2"})
	not allowed(principal("user1", {}), "grants.list", {})
	not allowed(principal("user1", {}), "repos.list", {})
}

test_owner_lists_grants_on_owned_repository if {
	allowed(seller, "grants.list", {"repository": "shop/app", "owner": "seller"})
	not allowed(seller, "grants.list", {"repository": "other", "owner": "someone"})
}

test_reserving_is_for_admins if {
	not allowed(seller, "repos.reserve", {"account": "seller", "repository": "shop/new"})
	allowed(admin_principal, "repos.reserve", {"account": "seller", "repository": "shop/new"})
}

test_accounts_explain_their_own_decisions if {
	allowed(principal("user1", {}), "policy.explain", {"account": "user1"})
	allowed(restricted(principal("user1", {})), "policy.explain", {"account": "user1"})
	not allowed(principal("user1", {}), "policy.explain", {"account": "user2"})
	allowed(restricted(admin_principal), "policy.explain", {"account": "user2"})
}

test_owners_explain_requests_of_their_repository if {
	allowed(seller, "policy.explain", {"account": "buyer", "repository": "shop/app", "owner": "seller"})
	not allowed(seller, "policy.explain", {"account": "buyer", "repository": "other/app", "owner": "someone"})
	not allowed(seller, "policy.explain", {"account": "buyer", "repository": "unowned"})
	not allowed(seller, "policy.explain", {"account": "buyer"})
}

test_admin_roles_come_from_configuration if {
	operator := principal("op", {"roles": ["operator"]})
	allowed(operator, "accounts.create", {"account": "x"}) with data.regoauth.config as {"admin_roles": ["operator"]}
	not allowed(admin_principal, "accounts.create", {"account": "x"}) with data.regoauth.config as {"admin_roles": ["operator"]}
}

test_extensions_may_allow_operations if {
	not allowed(seller, "repos.reserve", {"account": "seller", "repository": "shop/new"})
	allowed(seller, "repos.reserve", {"account": "seller", "repository": "shop/new"}) with data.regoauth.extensions as {"shop": {"admin_allow": true}}
	not allowed(seller, "repos.reserve", {"account": "seller", "repository": "shop/new"}) with data.regoauth.extensions as {"shop": {"admin_allow": false}}
}

# A reservation is one literal name: an owner record that reads as a pattern (written by an
# earlier version) makes its "owner" the seller of nothing.
test_owner_rights_stop_at_the_literal_name if {
	count([[operation, name] |
		some name in ["shop/*", "shop/**", "shop/prem*", "*", "Shop/app", "shop//app"]
		some [operation, target] in [
			["grants.add", {"account": "buyer", "repository": name, "actions": ["pull"], "owner": "seller"}],
			["grants.remove", {"account": "buyer", "repository": name, "actions": ["pull"], "owner": "seller"}],
			["grants.list", {"repository": name, "owner": "seller"}],
		]
		allowed(seller, operation, target)
	]) == 0
}

test_nobody_reserves_a_pattern if {
	count([name |
		some name in ["team/*", "team/**", "team/x*", "Team/x", "team//x"]
		allowed(admin_principal, "repos.reserve", {"account": "seller", "repository": name})
	]) == 0
	allowed(admin_principal, "repos.reserve", {"account": "seller", "repository": "team/x"})
}

with_restrictions(p, r) := object.union(p, {"key": {"id": "k3", "restrictions": r}})

allowed_from(p, ip, operation, target) if {
	d := admin.decision with input as {"principal": p, "client": {"ip": ip}, "operation": operation, "target": target, "owned": []}
	d.allow == true
}

# Every operation of the admin API, with a target it could have.
every_operation := [
	["whoami", {}],
	["accounts.list", {}],
	["accounts.get", {"account": "admin"}],
	["accounts.create", {"account": "x"}],
	["accounts.update", {"account": "x"}],
	["keys.list", {"account": "admin"}],
	["keys.create", {"account": "admin"}],
	["keys.revoke", {"account": "admin", "key_id": "k1"}],
	["grants.list", {}],
	["grants.list", {"repository": "shop/app"}],
	["grants.add", {"account": "x", "repository": "shop/app", "actions": ["pull"]}],
	["grants.remove", {"account": "x", "repository": "shop/app", "actions": ["pull"]}],
	["repos.list", {"account": "admin", "owner": "admin"}],
	["repos.reserve", {"account": "x", "repository": "shop/app"}],
	["repos.release", {"repository": "shop/app", "owner": "x"}],
	["policy.explain", {"account": "admin"}],
]

test_every_operation_is_allowed_to_an_admin_in_its_network if {
	p := with_restrictions(admin_principal, {"cidrs": ["10.0.0.0/8"]})
	count([op | some [op, target] in every_operation; not allowed_from(admin_principal, "127.0.0.1", op, target)]) == 0
	count([op |
		some [op, target] in every_operation
		op in admin.read_only_operations
		not allowed_from(p, "10.1.2.3", op, target)
	]) == 0
}

test_network_limited_keys_get_nothing_from_elsewhere if {
	p := with_restrictions(admin_principal, {"cidrs": ["10.0.0.0/8", "2001:db8::/32"]})
	count([op | some [op, target] in every_operation; allowed_from(p, "127.0.0.1", op, target)]) == 0
	count([op | some [op, target] in every_operation; allowed_from(p, "2001:db9::1", op, target)]) == 0
	allowed_from(p, "2001:db8::1", "accounts.list", {})

	# Without a client address, a network-limited key gets nothing either.
	count([op | some [op, target] in every_operation; allowed(p, op, target)]) == 0
	user := with_restrictions(principal("admin", {}), {"cidrs": ["10.0.0.0/8"]})
	count([op | some [op, target] in every_operation; allowed_from(user, "127.0.0.1", op, target)]) == 0
}

test_repository_limited_keys_reach_only_their_repositories if {
	p := with_restrictions(admin_principal, {"repositories": ["shop/app", "team/*"]})
	allowed(p, "grants.list", {"repository": "shop/app"})
	allowed(p, "grants.list", {"repository": "team/x"})
	allowed(p, "grants.list", {"repository": "team/*"})
	allowed(p, "whoami", {})
	not allowed(p, "grants.list", {"repository": "team/**"})
	not allowed(p, "grants.list", {"repository": "other"})
	not allowed(p, "grants.list", {})
	not allowed(p, "grants.list", {"account": "user1"})
	not allowed(p, "accounts.list", {})
	not allowed(p, "keys.list", {"account": "admin"})
	not allowed(p, "repos.list", {"account": "admin", "owner": "admin"})
	not allowed(p, "policy.explain", {"account": "admin"})
}

test_refusals_say_why if {
	p := with_restrictions(admin_principal, {"cidrs": ["10.0.0.0/8"]})
	d := admin.decision with input as {"principal": p, "client": {"ip": "127.0.0.1"}, "operation": "accounts.list", "target": {}, "owned": []}
	d == {"allow": false, "reasons": ["the API key may not be used from 127.0.0.1"]}
}

# Account names and shared namespaces never alias: no account is named like a namespace the
# configuration reserves or an extension claims.
test_no_account_is_named_like_a_shared_namespace if {
	not allowed(admin_principal, "accounts.create", {"account": "team"}) with data.regoauth.config as {"reserved_namespaces": ["team"]}
	not allowed(admin_principal, "accounts.create", {"account": "acme"}) with data.regoauth.extensions as {"orgs": {"namespaces": {"acme"}}}
	allowed(admin_principal, "accounts.create", {"account": "bob"}) with data.regoauth.config as {"reserved_namespaces": ["team"]}
}

# With personal namespaces on, NAME/x belongs to the account NAME: reserving it for another
# account would give both rights on it (and NAME may not exist yet).
test_no_reservation_in_another_accounts_personal_namespace if {
	cfg := {"personal_namespaces": true, "reserved_namespaces": ["team"]}
	not allowed(admin_principal, "repos.reserve", {"account": "alice", "repository": "bob/app"}) with data.regoauth.config as cfg
	allowed(admin_principal, "repos.reserve", {"account": "bob", "repository": "bob/app"}) with data.regoauth.config as cfg
	allowed(admin_principal, "repos.reserve", {"account": "alice", "repository": "team/app"}) with data.regoauth.config as cfg
	allowed(admin_principal, "repos.reserve", {"account": "alice", "repository": "bob/app/deeper"}) with data.regoauth.config as cfg
	allowed(admin_principal, "repos.reserve", {"account": "alice", "repository": "app"}) with data.regoauth.config as cfg
	allowed(admin_principal, "repos.reserve", {"account": "alice", "repository": "bob/app"})
}

expiring(p, at) := object.union(p, {"key": {"id": "k4", "expires": at}})

# The admin policy sees the caller key's expiry (principal.key.expires) and the new key's
# (target.expires): a key never creates a key that outlives it, whatever rule permits it.
test_a_key_never_creates_a_key_that_outlives_it if {
	user := expiring(principal("user1", {}), "2026-03-01T12:02:00Z")
	allowed(user, "keys.create", {"account": "user1", "expires": "2026-03-01T12:01:00Z"})
	allowed(user, "keys.create", {"account": "user1", "expires": "2026-03-01T12:02:00Z"})
	not allowed(user, "keys.create", {"account": "user1", "expires": "2026-03-01T12:02:01Z"})
	not allowed(user, "keys.create", {"account": "user1"})
	temp_admin := expiring(admin_principal, "2026-03-01T12:02:00Z")
	not allowed(temp_admin, "keys.create", {"account": "user2"})
	not allowed(temp_admin, "keys.create", {"account": "user2", "expires": "2027-01-01T00:00:00Z"})
	allowed(principal("user1", {}), "keys.create", {"account": "user1"})
}

restricted_keys := {
	"read-only": {"actions": ["pull"]},
	"limited to another repository": {"repositories": ["elsewhere"]},
	"limited to other networks": {"cidrs": ["10.0.0.0/8"]},
}

# Every rule of the library that allows a write, with a write it allows: with a restricted key,
# none is allowed — the rule itself requires an unrestricted key, and the floor holds the key's
# restrictions whatever rule (or extension) permits.
test_every_write_rule_holds_key_restrictions if {
	writes := [
		["admin writes", admin_principal, "accounts.create", {"account": "x"}],
		["admin grants", admin_principal, "grants.add", {"account": "x", "repository": "shop/app", "actions": ["push"]}],
		["own key", principal("user1", {}), "keys.create", {"account": "user1"}],
		["own key revoked", principal("user1", {}), "keys.revoke", {"account": "user1", "key_id": "k9"}],
		["owner sells", seller, "grants.add", {"account": "buyer", "repository": "shop/app", "actions": ["pull"], "owner": "seller"}],
		["owner refunds", seller, "grants.remove", {"account": "buyer", "repository": "shop/app", "actions": ["pull"], "owner": "seller"}],
	]
	every w in writes {
		allowed_from(w[1], "127.0.0.1", w[2], w[3])
	}
	leaks := [[name, kind] |
		some [name, p, operation, target] in writes
		some kind, r in restricted_keys
		allowed_from(with_restrictions(p, r), "127.0.0.1", operation, target)
	]
	leaks == []
}

# An extension's rule that allows a write to any key is still held to the key's restrictions,
# except where they cover the write: the floor.
test_the_floor_holds_extension_rules_to_key_restrictions if {
	ext := {"careless": {"admin_allow": true}}
	target := {"account": "x", "repository": "shop/app", "actions": ["pull"]}
	not allowed_from(with_restrictions(seller, {"actions": ["pull"]}), "127.0.0.1", "grants.add", target) with data.regoauth.extensions as ext
	not allowed_from(with_restrictions(seller, {"repositories": ["elsewhere"]}), "127.0.0.1", "grants.add", target) with data.regoauth.extensions as ext
	not allowed_from(with_restrictions(seller, {"cidrs": ["10.0.0.0/8"]}), "127.0.0.1", "grants.add", target) with data.regoauth.extensions as ext
	allowed_from(with_restrictions(seller, {"repositories": ["shop/*"], "cidrs": ["127.0.0.0/8"]}), "127.0.0.1", "grants.add", target) with data.regoauth.extensions as ext
	admin.key_permits_write with input as {"principal": with_restrictions(seller, {"repositories": ["shop/*"]}), "client": {"ip": "127.0.0.1"}, "operation": "grants.add", "target": target, "owned": []}
	not admin.key_permits_write with input as {"principal": with_restrictions(seller, {"actions": ["pull"]}), "client": {"ip": "127.0.0.1"}, "operation": "grants.add", "target": target, "owned": []}
}

test_every_account_asks_who_it_is if {
	allowed(principal("user1", {}), "whoami", {"account": "user1"})
	not allowed(principal("user1", {}), "whoami", {"account": "user2"})
}

# Extensions' limits travel with the decision; the lowest applies.
test_limits_are_in_the_decision if {
	ext := {"a": {"admin_allow": true, "admin_max_owned": 20}, "b": {"admin_max_owned": 5}}
	d := admin.decision with input as {"principal": seller, "operation": "repos.reserve", "target": {"account": "seller", "repository": "shop/x"}, "owned": []}
		with data.regoauth.extensions as ext
	d == {"allow": true, "reasons": [], "max_owned": 5}
	plain := admin.decision with input as {"principal": admin_principal, "operation": "accounts.list", "target": {}, "owned": []}
	plain == {"allow": true, "reasons": []}
}

test_a_key_limited_to_networks_writes_from_inside_them if {
	call := {"principal": with_restrictions(seller, {"cidrs": ["10.0.0.0/8"]}), "operation": "grants.add", "target": {"account": "x", "repository": "shop/app", "actions": ["pull"]}, "owned": []}
	admin.key_permits_write with input as object.union(call, {"client": {"ip": "10.1.2.3"}})
	not admin.key_permits_write with input as object.union(call, {"client": {"ip": "192.0.2.1"}})
}
