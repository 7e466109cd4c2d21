# METADATA
# title: Organisations, teams and roles
# description: |
#   Each organisation owns the namespace ORG/**. Its teams hold a role (data.teams.roles: read,
#   write, maintain) on repository patterns inside that namespace; its owners hold every action
#   on it and manage its grants and reservations. Membership is static data (members, owners)
#   or, dynamically, account groups named ORG.TEAM and ORG.owners in the key store. Extends the
#   built-in library through data.regoauth.extensions.
package regoauth.extensions.teams

orgs := data.teams.organisations

# Every organisation's name is a shared namespace (see the library's shared_namespaces): no
# account's personal namespace, and no account may be named so.
namespaces contains org if some org, _ in orgs

authenticated if input.principal.anonymous == false

# [org, team] for every team the principal belongs to.
memberships contains [org, team] if {
	authenticated
	some org, team
	input.principal.account in orgs[org].teams[team].members
}

memberships contains [org, team] if {
	authenticated
	some group in input.principal.groups
	[org, team] := split(group, ".")
	orgs[org].teams[team]
}

owned_orgs contains org if {
	authenticated
	some org
	input.principal.account in orgs[org].owners
}

owned_orgs contains org if {
	authenticated
	some group in input.principal.groups
	[org, "owners"] = split(group, ".")
	orgs[org]
}

# A name is in an organisation's namespace when it starts with ORG/. A team's pattern outside
# its organisation's namespace grants nothing, whatever the data says.
in_namespace(org, name) if startswith(name, concat("", [org, "/"]))

repository_actions := {"pull", "push", "delete"}

# METADATA
# title: team role
# description: A team's role on a pattern in its organisation's namespace.
permit contains ["repository", scope.name, action] if {
	some scope in input.scopes
	scope.type == "repository"
	some [org, team] in memberships
	some pattern, role in orgs[org].teams[team].repositories
	in_namespace(org, pattern)
	glob.match(pattern, ["/"], scope.name)
	some action in scope.actions
	action in data.teams.roles[role]
}

# METADATA
# title: organisation owner
# description: The owners of an organisation hold every action in its namespace.
permit contains ["repository", scope.name, action] if {
	some scope in input.scopes
	scope.type == "repository"
	some org in owned_orgs
	in_namespace(org, scope.name)
	some action in scope.actions
	action in repository_actions
}

# METADATA
# title: frozen organisation
# description: A frozen organisation (e.g. an unpaid plan) is read-only for everyone.
# custom:
#   when_account_withheld: shown
deny contains {"type": "repository", "name": scope.name, "action": action, "reason": sprintf("organisation %s is frozen", [org])} if {
	some scope in input.scopes
	scope.type == "repository"
	some org, settings in orgs
	settings.frozen == true
	in_namespace(org, scope.name)
	some action in scope.actions
	action != "pull"
}

# METADATA
# title: owners manage their organisation
# description: |
#   Owners reserve names and grant or revoke any action on repositories of their namespace, to
#   accounts and groups, and list those grants.
admin_allow if {
	input.operation in {"grants.add", "grants.remove", "grants.list", "repos.reserve", "repos.release"}
	not input.principal.key.restrictions
	some org in owned_orgs
	in_namespace(org, input.target.repository)
	reservation_is_a_name
}

# Grants may name patterns inside the namespace; a reservation is one literal name.
reservation_is_a_name if not input.operation in {"repos.reserve", "repos.release"}

# One literal repository name, in the library's grammar (read as data: a bundle is built on its
# own, so it cannot call the library's functions).
reservation_is_a_name if {
	count(input.target.repository) <= 255
	regex.match(data.regoauth.authz.repository_name_pattern, input.target.repository)
}
