# METADATA
# title: Token decision
# description: |
#   Which of the requested actions the principal may have, per requested scope. The server reads
#   data.regoauth.authz.decision and intersects it with the request once more.
#
#   Bundles configure this library with data under data.regoauth.config (see default_config) and
#   extend it with packages under data.regoauth.extensions: a set "permit" of
#   [type, name, action] and a set "deny" of {"type", "name", "action", "reason"} objects.
package regoauth.authz

# The decision document: for every requested scope, the actions allowed on it (possibly none),
# and a reason for every action that was denied.
decision := {
	"access": [entry |
		some i, scope in input.scopes
		entry := {"type": scope.type, "name": scope.name, "actions": sort(allowed[i])}
	],
	"reasons": sort(reasons),
}

# allowed[i] are the actions allowed on the i-th requested scope: those some rule permits and
# no rule denies. Denials always win.
allowed[i] := {action |
	some action in scope.actions
	permitted(scope, action)
	not denied(scope, action)
} if {
	some i, scope in input.scopes
}

# METADATA
# title: Configuration
# description: |
#   data.regoauth.config, over these defaults:
#   public_repositories: patterns anyone, anonymous included, may pull;
#   personal_namespaces: whether every account has personal_namespace_actions on "<account>/*";
#   deny: rules that override every permission, each {"repositories": [patterns],
#   "actions": [actions, all when absent], "subjects": ["account:A", "group:G", "role:R",
#   "anonymous", "*"; everyone when absent], "except": [subjects], "reason": "..."};
#   admin_roles: roles with every action and the admin API; catalog_roles: roles that may list
#   the catalog.
default_config := {
	"public_repositories": [],
	"personal_namespaces": false,
	"personal_namespace_actions": ["delete", "pull", "push"],
	"deny": [],
	"admin_roles": ["admin"],
	"catalog_roles": ["admin"],
}

default configured := {}

configured := data.regoauth.config

config := object.union(default_config, configured)

repository_actions := {"pull", "push", "delete"}

authenticated if input.principal.anonymous == false

# The subjects the principal is: "account:NAME", "group:NAME" for each group, "role:NAME" for
# each role, and "anonymous" when it has no credentials. Grants and deny rules name these.
subjects contains "anonymous" if not authenticated

subjects contains sprintf("account:%s", [input.principal.account]) if authenticated

subjects contains sprintf("group:%s", [group]) if {
	authenticated
	some group in input.principal.groups
}

subjects contains sprintf("role:%s", [role]) if {
	authenticated
	some role in input.principal.roles
}

is_admin if {
	some role in config.admin_roles
	sprintf("role:%s", [role]) in subjects
}

# METADATA
# title: admin
# description: Admins may do anything to any repository.
permitted(scope, action) if {
	is_admin
	scope.type == "repository"
	action in repository_actions
}

# METADATA
# title: catalog
# description: Admins (catalog_roles) may list the catalog; the registry checks the action "*".
permitted(scope, "*") if {
	scope.type == "registry"
	scope.name == "catalog"
	some role in config.catalog_roles
	sprintf("role:%s", [role]) in subjects
}

# METADATA
# title: grant
# description: An ACL row of the principal or one of its groups names the repository exactly.
permitted(scope, action) if {
	scope.type == "repository"
	some grant in exact_rows
	grant.repository == scope.name
	grant.subject in subjects
	action in grant.actions
}

# METADATA
# title: grant
# description: |
#   An ACL row of the principal or one of its groups has a pattern matching the repository: an
#   anchored glob where "*" stays within one path segment and "**" crosses segments.
permitted(scope, action) if {
	scope.type == "repository"
	some grant in pattern_rows
	startswith(scope.name, grant.prefix)
	grant.subject in subjects
	action in grant.actions
	glob.match(grant.repository, ["/"], scope.name)
}

# The rows that can matter to this request: those naming a requested repository exactly, and
# the patterns (each only matched against names that start with its literal prefix). With many
# grants these two passes are most of a decision, so each does the least work per row that
# topdown allows: a lookup in a set bound to a local variable, and one contains. Patterns from
# the key store use only "*" (keystore validates them).
exact_rows := [grant |
	names := requested_names
	grant := input.grants[_]
	names[grant.repository]
]

pattern_rows := [object.union(grant, {"prefix": literal_prefix(grant.repository)}) |
	grant := input.grants[_]
	contains(grant.repository, "*")
]

requested_names := {scope.name | some scope in input.scopes}

literal_prefix(pattern) := substring(pattern, 0, indexof(pattern, "*"))

# METADATA
# title: owner
# description: The owner of a reserved repository may pull, push and delete it.
permitted(scope, action) if {
	authenticated
	scope.type == "repository"
	scope.name in input.owned
	action in repository_actions
}

# METADATA
# title: personal namespace
# description: With personal_namespaces on, every account has its namespace "<account>/*".
permitted(scope, action) if {
	config.personal_namespaces == true
	authenticated
	scope.type == "repository"
	action in config.personal_namespace_actions
	in_personal_namespace(scope.name)
}

# A string comparison, not a glob: an account name is never read as a pattern.
in_personal_namespace(name) if {
	prefix := concat("", [input.principal.account, "/"])
	startswith(name, prefix)
	not contains(substring(name, count(prefix), -1), "/")
	count(name) > count(prefix)
}

# METADATA
# title: public repository
# description: Anyone, anonymous included, may pull a repository matching public_repositories.
permitted(scope, "pull") if {
	scope.type == "repository"
	some pattern in config.public_repositories
	glob.match(pattern, ["/"], scope.name)
}

# METADATA
# title: extension
# description: A package under data.regoauth.extensions permits it.
permitted(scope, action) if {
	[scope.type, scope.name, action] in data.regoauth.extensions[_].permit
}

# Key restrictions narrow whatever was permitted. Each is present only when it restricts.
restrictions := object.get(input.principal, ["key", "restrictions"], {})

# METADATA
# title: key restrictions
# description: The API key's restrictions exclude it.
denied(scope, action) if key_denied(scope, action)

# METADATA
# title: key action ceiling
# description: A key with an action ceiling (e.g. read-only) never carries more.
key_denied(_, action) if {
	ceiling := restrictions.actions
	not action in ceiling
}

# METADATA
# title: key repositories
# description: A key limited to some repositories gets nothing elsewhere (the catalog included).
key_denied(scope, _) if {
	patterns := restrictions.repositories
	not repository_matches(scope, patterns)
}

# METADATA
# title: key networks
# description: |
#   A key limited to some networks gets nothing from anywhere else. A malformed network is an
#   evaluation error under strict builtin errors (the server's mode) and a denial otherwise.
key_denied(_, _) if {
	cidrs := restrictions.cidrs
	not address_allowed(cidrs)
}

repository_matches(scope, patterns) if {
	scope.type == "repository"
	matches_any(patterns, scope.name)
}

matches_any(patterns, name) if {
	some pattern in patterns
	glob.match(pattern, ["/"], name)
}

address_allowed(cidrs) if {
	some cidr in cidrs
	net.cidr_contains(cidr, input.client.ip)
}

# METADATA
# title: deny rule
# description: A rule of config.deny matches; it overrides every permission.
denied(scope, action) if {
	some rule in config.deny
	deny_rule_applies(rule, scope, action)
}

# A deny rule is written to fail closed: it applies unless its patterns provably miss the
# repository, so a malformed pattern denies rather than permits.
deny_rule_applies(rule, scope, action) if {
	scope.type == "repository"
	action_listed(rule, action)
	not repositories_miss(rule, scope.name)
	subject_listed(object.get(rule, "subjects", ["*"]))
	not subject_listed(object.get(rule, "except", []))
}

action_listed(rule, _) if not rule.actions

action_listed(rule, action) if action in rule.actions

repositories_miss(rule, name) if {
	every pattern in rule.repositories {
		glob.match(pattern, ["/"], name) == false
	}
}

subject_listed(list) if "*" in list

subject_listed(list) if {
	some subject in list
	subject in subjects
}

# METADATA
# title: extension
# description: A package under data.regoauth.extensions denies it.
denied(scope, action) if {
	some d in data.regoauth.extensions[_].deny
	extension_denies(d, scope, action)
}

extension_denies(d, scope, action) if {
	d.type == scope.type
	d.name == scope.name
	d.action == action
}

reasons contains sprintf("%s:%s %s: %s", [scope.type, scope.name, action, why_denied(scope, action)]) if {
	some i, scope in input.scopes
	some action in scope.actions
	not action in allowed[i]
}

why_denied(scope, action) := "the API key's restrictions forbid it" if {
	key_denied(scope, action)
} else := concat("", ["a deny rule forbids it: ", why]) if {
	why := concat("; ", sort({object.get(rule, "reason", "no reason given") |
		some rule in config.deny
		deny_rule_applies(rule, scope, action)
	}))
	why != ""
} else := why if {
	why := concat("; ", sort({object.get(d, "reason", "an extension denies it") |
		some d in data.regoauth.extensions[_].deny
		extension_denies(d, scope, action)
	}))
	why != ""
} else := "no grant or rule permits it"
