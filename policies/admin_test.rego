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
	allowed(seller, "grants.remove", {"account": "buyer", "repository": "shop/app", "owner": "seller"})
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
