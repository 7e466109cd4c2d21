# METADATA
# title: Admin API decision
# description: |
#   Whether an admin API call may proceed. The server reads data.regoauth.admin.decision; anything
#   but {"allow": true} is a refusal.
package regoauth.admin

import data.regoauth.authz

default decision := {"allow": false, "reasons": ["not permitted by the admin policy"]}

decision := object.union({"allow": true, "reasons": []}, limits) if allow

decision := {"allow": false, "reasons": sort(refusals)} if count(refusals) > 0

# An operation is allowed when some rule permits it (a rule below, or an extension's
# admin_allow) and no refusal applies. Refusals are the floor no rule can go below, whoever
# wrote it.
allow if {
	count(refusals) == 0
	permitted
}

authenticated if input.principal.anonymous == false

# METADATA
# title: limits
# description: |
#   Limits an allowed write must keep, which the server checks in the write itself: a count the
#   policy takes before the write would let concurrent calls all pass. An extension sets one
#   with admin_max_owned (the most reservations the target account may then hold); the lowest
#   applies.
limits["max_owned"] := min(caps) if {
	caps := {n | n := data.regoauth.extensions[_].admin_max_owned}
	count(caps) > 0
}

# METADATA
# title: a reservation is one name
# description: |
#   A reservation is one literal repository name (lower case, no glob): the owner of a pattern
#   would sell every name it matches.
refusals contains "a reservation is one literal repository name (lower case, no '*')" if {
	input.operation == "repos.reserve"
	not authz.repository_name(input.target.repository)
}

# The API key's restrictions, each present only when it restricts. They hold on every
# operation, reads included, whatever rule permits it: a key is never worth more on the admin
# API than on the token endpoint.
restrictions := object.get(input.principal, ["key", "restrictions"], {})

# METADATA
# title: key networks
# description: |
#   A key limited to networks gets nothing from any other address (input.client.ip, read with
#   the same trusted proxies as the token endpoint), nor when the address is unknown.
refusals contains sprintf("the API key may not be used from %s", [object.get(input, ["client", "ip"], "an unknown address")]) if {
	restrictions.cidrs
	not address_allowed
}

address_allowed if {
	is_string(input.client.ip)
	input.client.ip != ""
	some cidr in restrictions.cidrs
	net.cidr_contains(cidr, input.client.ip)
}

# METADATA
# title: key repositories
# description: |
#   A key limited to repositories reaches only operations on a repository its patterns cover
#   (a literal name one of them matches, or a pattern equal to one of them): not accounts, keys,
#   listings of everything, or explanations. It may still ask who it is.
refusals contains "the API key is limited to repositories, and this operation is not on one of them" if {
	restrictions.repositories
	input.operation != "whoami"
	not key_covers_target
}

key_covers_target if {
	some pattern in restrictions.repositories
	covers(pattern, input.target.repository)
}

covers(pattern, name) if pattern == name

covers(pattern, name) if {
	authz.repository_name(name)
	glob.match(pattern, ["/"], name)
}

# key_permits_write holds when the API key's restrictions let it make this write: it has no
# action ceiling (a read-only key writes nothing), the client is in its networks, and its
# repository patterns cover the target. An unrestricted key always does. A rule that allows
# a write to a restricted key requires it; the floor (refusals) holds the same whatever rule
# permits.
key_permits_write if {
	not restrictions.actions
	key_networks_hold
	key_repositories_hold
}

key_networks_hold if not restrictions.cidrs

key_networks_hold if address_allowed

key_repositories_hold if not restrictions.repositories

key_repositories_hold if key_covers_target

# METADATA
# title: key action ceiling
# description: A key with an action ceiling (e.g. read-only) only reads.
refusals contains "a key with an action ceiling (read-only) changes nothing" if {
	restrictions.actions
	not input.operation in read_only_operations
}

# METADATA
# title: shared namespaces
# description: |
#   No account is named like a shared namespace (config.reserved_namespaces, or one an extension
#   claims such as an organisation): with personal namespaces on, that account would hold
#   actions in the namespace.
refusals contains sprintf("%s is a shared namespace: no account may be named so", [input.target.account]) if {
	input.operation == "accounts.create"
	authz.shared_namespaces[input.target.account]
}

# METADATA
# title: personal namespaces
# description: |
#   With personal namespaces on, NAME/x is in the personal namespace of the account NAME: it is
#   reserved for NAME or nobody, or both accounts would hold rights on it (NAME may not even
#   exist yet). Shared namespaces are nobody's.
refusals contains sprintf("%s is in the personal namespace of account %s", [input.target.repository, namespace]) if {
	input.operation == "repos.reserve"
	authz.config.personal_namespaces == true
	[namespace, _] := split(input.target.repository, "/")
	not authz.shared_namespaces[namespace]
	namespace != input.target.account
}

# METADATA
# title: keys outlive nothing
# description: |
#   A key never creates a key that outlives it: with an expiring key (principal.key.expires),
#   the new key must expire (target.expires) no later. The server also inherits the caller's
#   expiry and restrictions into every key it creates; this holds whatever rule permits it.
refusals contains sprintf("a key never creates a key that outlives it: the API key expires at %s", [input.principal.key.expires]) if {
	input.operation == "keys.create"
	input.principal.key.expires
	not expires_by(input.target, input.principal.key.expires)
}

expires_by(target, limit) if time.parse_rfc3339_ns(target.expires) <= time.parse_rfc3339_ns(limit)

# owner_target holds when the target is one literal repository the principal owns: an owner's
# rights never reach past the name it reserved.
owner_target if {
	authz.repository_name(input.target.repository)
	input.target.owner == input.principal.account
}

# A restricted key (read-only, limited repositories or networks) may read but never change
# anything: otherwise a read-only key could mint an unrestricted one.
unrestricted_key if not input.principal.key.restrictions

read_only_operations := {"whoami", "accounts.list", "accounts.get", "keys.list", "grants.list", "repos.list", "policy.explain", "status.read"}

# Admins are the roles of data.regoauth.config.admin_roles (default: admin).
admin if {
	authenticated
	some role in data.regoauth.authz.config.admin_roles
	role in input.principal.roles
}

permitted if {
	admin
	unrestricted_key
}

permitted if {
	admin
	input.operation in read_only_operations
}

# Every account asks who it is (whoami).
permitted if {
	authenticated
	input.operation == "whoami"
	input.target.account == input.principal.account
}

# Every account manages its own keys.
permitted if {
	authenticated
	input.operation in {"keys.create", "keys.revoke"}
	input.target.account == input.principal.account
	unrestricted_key
}

permitted if {
	authenticated
	input.operation in {"keys.list", "accounts.get"}
	input.target.account == input.principal.account
}

# Every account reads its own grants and reservations.
permitted if {
	authenticated
	input.operation in {"grants.list", "repos.list"}
	input.target.account == input.principal.account
	not input.target.group
}

# The owner of a repository sees who holds grants on it.
permitted if {
	authenticated
	input.operation == "grants.list"
	owner_target
	not input.target.account
	not input.target.group
}

# The owner of a repository sells it: it grants and revokes pull on it to other accounts. More
# than pull (push, delete), or grants to groups, stay with admins. A removal is judged on the
# actions it removes (target.actions: the row's when the caller names none), so an owner never
# takes back the push an admin granted.
permitted if {
	authenticated
	unrestricted_key
	input.operation in {"grants.add", "grants.remove"}
	owner_target
	input.target.account
	not input.target.group
	actions := input.target.actions
	every action in actions {
		action == "pull"
	}
}

# Every account may have its own token decisions explained (regoauth policy explain): it shows
# the grants and reservations the account can already list, and why a request was refused.
permitted if {
	authenticated
	input.operation == "policy.explain"
	input.target.account == input.principal.account
}

# The owner of a repository may have anyone's request of that one repository explained ("why
# can't my buyer pull?"). The server then shows, of that account's reservations, only the
# requested repository.
permitted if {
	authenticated
	input.operation == "policy.explain"
	owner_target
}

# METADATA
# title: extension
# description: |
#   A package under data.regoauth.extensions allows the operation with a rule admin_allow, e.g. a
#   marketplace letting sellers reserve names. Extensions widen, never narrow, the rules above.
permitted if {
	some name
	data.regoauth.extensions[name].admin_allow == true
}
