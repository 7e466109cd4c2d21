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
