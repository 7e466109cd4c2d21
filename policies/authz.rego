# METADATA
# title: Token decision
# description: |
#   Which of the requested actions the principal may have, per requested scope. The server reads
#   data.regoauth.authz.decision and intersects it with the request once more.
package regoauth.authz

# The decision document: for every requested scope, the actions allowed on it (possibly none),
# and a reason for every action that was denied.
decision := {
	"access": [entry |
		some scope in input.scopes
		entry := {"type": scope.type, "name": scope.name, "actions": sort(allowed(scope))}
	],
	"reasons": sort(reasons),
}

# An action is allowed when some rule permits it and no rule denies it: denials always win.
allowed(scope) := {action |
	some action in scope.actions
	permitted(scope, action)
	not denied(scope, action)
}

repository_actions := {"pull", "push", "delete"}

authenticated if input.principal.anonymous == false

is_admin if {
	authenticated
	"admin" in input.principal.roles
}

# Admins may do anything to any repository.
permitted(scope, action) if {
	is_admin
	scope.type == "repository"
	action in repository_actions
}

# Admins may list the catalog (the registry checks the action "*").
permitted(scope, "*") if {
	is_admin
	scope.type == "registry"
	scope.name == "catalog"
}

# ACL rows: the grant's pattern is an exact name or an anchored glob where "*" stays within
# one path segment and "**" crosses segments.
permitted(scope, action) if {
	authenticated
	scope.type == "repository"
	some grant in input.grants
	action in grant.actions
	glob.match(grant.repository, ["/"], scope.name)
}

# Owners of a reserved repository may pull, push and delete it.
permitted(scope, action) if {
	authenticated
	scope.type == "repository"
	scope.name in input.owned
	action in repository_actions
}

# Key restrictions narrow whatever was permitted. Each is present only when it restricts.
restrictions := object.get(input.principal, ["key", "restrictions"], {})

# A key with an action ceiling (e.g. read-only) never carries more.
denied(_, action) if {
	ceiling := restrictions.actions
	not action in ceiling
}

# A key limited to some repositories gets nothing elsewhere (the catalog included).
denied(scope, _) if {
	patterns := restrictions.repositories
	not repository_matches(scope, patterns)
}

repository_matches(scope, patterns) if {
	scope.type == "repository"
	matches_any(patterns, scope.name)
}

# A key limited to some networks gets nothing from anywhere else.
denied(_, _) if {
	cidrs := restrictions.cidrs
	not address_allowed(cidrs)
}

matches_any(patterns, name) if {
	some pattern in patterns
	glob.match(pattern, ["/"], name)
}

address_allowed(cidrs) if {
	some cidr in cidrs
	net.cidr_contains(cidr, input.client.ip)
}

reasons contains sprintf("%s:%s %s: %s", [scope.type, scope.name, action, why_denied(scope, action)]) if {
	some scope in input.scopes
	some action in scope.actions
	not action in allowed(scope)
}

why_denied(scope, action) := "the API key's restrictions forbid it" if {
	denied(scope, action)
} else := "no grant or rule permits it"
