# METADATA
# title: Admin API decision
# description: |
#   Whether an admin API call may proceed. The server reads data.regoauth.admin.decision; anything
#   but {"allow": true} is a refusal.
package regoauth.admin

default decision := {"allow": false, "reasons": ["not permitted by the admin policy"]}

decision := {"allow": true, "reasons": []} if allow

authenticated if input.principal.anonymous == false

# A restricted key (read-only, limited repositories or networks) may read but never change
# anything: otherwise a read-only key could mint an unrestricted one.
unrestricted_key if not input.principal.key.restrictions

read_only_operations := {"accounts.list", "accounts.get", "keys.list", "grants.list", "repos.list", "policy.explain", "status.read"}

# Admins are the roles of data.regoauth.config.admin_roles (default: admin).
admin if {
	authenticated
	some role in data.regoauth.authz.config.admin_roles
	role in input.principal.roles
}

allow if {
	admin
	unrestricted_key
}

allow if {
	admin
	input.operation in read_only_operations
}

# Every account manages its own keys.
allow if {
	authenticated
	input.operation in {"keys.create", "keys.revoke"}
	input.target.account == input.principal.account
	unrestricted_key
}

allow if {
	authenticated
	input.operation in {"keys.list", "accounts.get"}
	input.target.account == input.principal.account
}

# Every account reads its own grants and reservations.
allow if {
	authenticated
	input.operation in {"grants.list", "repos.list"}
	input.target.account == input.principal.account
	not input.target.group
}

# The owner of a repository sees who holds grants on it.
allow if {
	authenticated
	input.operation == "grants.list"
	input.target.repository
	input.target.owner == input.principal.account
	not input.target.account
	not input.target.group
}

# The owner of a repository sells it: it grants and revokes pull on it to other accounts. More
# than pull (push, delete), or grants to groups, stay with admins.
allow if {
	authenticated
	unrestricted_key
	input.operation in {"grants.add", "grants.remove"}
	input.target.owner == input.principal.account
	input.target.account
	not input.target.group
	every action in object.get(input.target, "actions", ["pull"]) {
		action == "pull"
	}
}

# Every account may have its own token decisions explained (regoauth policy explain): it shows
# the grants and reservations the account can already list, and why a request was refused.
allow if {
	authenticated
	input.operation == "policy.explain"
	input.target.account == input.principal.account
}

# The owner of a repository may have anyone's request of that one repository explained ("why
# can't my buyer pull?"). The server then shows, of that account's reservations, only the
# requested repository.
allow if {
	authenticated
	input.operation == "policy.explain"
	input.target.repository
	input.target.owner == input.principal.account
}

# METADATA
# title: extension
# description: |
#   A package under data.regoauth.extensions allows the operation with a rule admin_allow, e.g. a
#   marketplace letting sellers reserve names. Extensions widen, never narrow, the rules above.
allow if {
	some name
	data.regoauth.extensions[name].admin_allow == true
}
