# METADATA
# title: Token decision
# description: |
#   Which of the requested actions the principal may have, per requested scope. The server reads
#   data.regoauth.authz.decision and intersects it with the request once more.
#
#   Bundles configure this library with data under data.regoauth.config (see default_config) and
#   extend it with packages under data.regoauth.extensions: a set "permit" of
#   [type, name, action] and a set "deny" of {"type", "name", "action", "reason"} objects.
#
#   Rules are sets of [i, action] pairs, i the index of a requested scope in input.scopes. Each
#   set is computed once per decision: rules read them whole (x in permit, object.get(allowed,
#   i, ...)), which OPA evaluates once and keeps; a lookup by key (allowed[i], deny[i][a])
#   would evaluate the rules again for every key.
package regoauth.authz

# The decision document: for every requested scope, the actions allowed on it (possibly none),
# and a reason for every action that was denied. It is written key by key: the server asks for
# decision.access alone, and OPA then evaluates neither the reasons nor the rules they need;
# decision logs and explanations read the whole document.
decision["access"] := [entry |
	some i, scope in input.scopes
	entry := {"type": scope.type, "name": scope.name, "actions": sort(object.get(allowed, i, set()))}
]

decision["reasons"] := sort(reasons)

# allowed[i] are the actions allowed on the i-th requested scope: those some rule permits and
# no rule denies. Denials always win.
allowed[i] := {action |
	some action in scope.actions
	[i, action] in permit
	not [i, action] in deny
} if {
	some i, scope in input.scopes
}

# METADATA
# title: Configuration
# description: |
#   data.regoauth.config, over these defaults:
#   public_repositories: patterns anyone, anonymous included, may pull;
#   personal_namespaces: whether every account has personal_namespace_actions on "<account>/*";
#   reserved_namespaces: first path segments that are no account's personal namespace (shared
#   namespaces; extensions claim theirs with a set "namespaces");
#   deny: rules that override every permission, each {"repositories": [patterns],
#   "actions": [actions, all when absent], "subjects": ["account:A", "group:G", "role:R",
#   "anonymous", "*"; everyone when absent], "except": [subjects], "reason": "..."};
#   admin_roles: roles with every action and the admin API; catalog_roles: roles that may list
#   the catalog.
default_config := {
	"public_repositories": [],
	"personal_namespaces": false,
	"personal_namespace_actions": ["delete", "pull", "push"],
	"reserved_namespaces": [],
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

has_role(roles) if {
	authenticated
	some role in roles
	role in input.principal.roles
}

is_admin if has_role(config.admin_roles)

# METADATA
# title: admin
# description: Admins may do anything to any repository.
permit contains [i, action] if {
	is_admin
	some i, scope in input.scopes
	scope.type == "repository"
	some action in repository_actions
}

# METADATA
# title: catalog
# description: Admins (catalog_roles) may list the catalog; the registry checks the action "*".
permit contains [i, "*"] if {
	some i, scope in input.scopes
	scope.type == "registry"
	scope.name == "catalog"
	has_role(config.catalog_roles)
}

# METADATA
# title: grant
# description: |
#   An ACL row of the principal or one of its groups whose pattern matches the repository: an
#   exact name, or an anchored glob where "*" stays within one path segment and "**" crosses
#   segments. (The server passes only the rows that can match a requested repository.) An
#   explanation for whoever may not read the account names this rule only where a row of the
#   account itself names the repository exactly with the action ("own row"): which other rows
#   an account holds is its own business.
# custom:
#   when_account_withheld: own row
permit contains [i, action] if {
	some grant in input.grants
	grant.subject in subjects
	some i, scope in input.scopes
	scope.type == "repository"
	glob.match(grant.repository, ["/"], scope.name)
	some action in grant.actions
}

# repository_name(name) holds for one literal repository name: distribution's grammar in lower
# case (path components of a-z 0-9 joined by ".", "_", "__" or "-" runs, separated by "/",
# optionally after a host with dots and a :port), at most 255 characters. No glob syntax passes,
# so a rule comparing such a name with a requested one never reaches another repository. The
# server validates reservations and scopes with the same grammar.
repository_name(name) if {
	is_string(name)
	count(name) <= 255
	regex.match(repository_name_pattern, name)
}

repository_name_pattern := `^(?:(?:(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])(?:\.(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9]))*|\[(?:[a-f0-9:]+)\])(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$`

# owned are the repositories the principal reserved: literal names only. A reservation is one
# name; a record that reads as a pattern (an earlier version stored them; '*' is the only glob
# syntax one can hold) is ownership of nothing. Every rule that asks "does the principal own
# this?" reads this set, not input.owned. (A string test, not repository_name: this set is
# computed for every token decision.)
owned contains name if {
	authenticated
	some name in input.owned
	not contains(name, "*")
}

# METADATA
# title: owner
# description: The owner of a reserved repository may pull, push and delete it.
# custom:
#   when_account_withheld: shown
permit contains [i, action] if {
	some i, scope in input.scopes
	scope.type == "repository"
	scope.name in owned
	some action in repository_actions
}

# shared_namespaces are first path segments that belong to no account: those the configuration
# reserves and those extensions claim (a set "namespaces" in their package, e.g. organisations).
# Account names and namespaces must not alias: the personal namespace rule never reaches into
# one, and the admin policy refuses an account named like one.
shared_namespaces contains ns if some ns in config.reserved_namespaces

shared_namespaces contains ns if some ns in data.regoauth.extensions[_].namespaces

# METADATA
# title: personal namespace
# description: |
#   With personal_namespaces on, every account has its namespace "<account>/*", unless its name
#   is a shared namespace (reserved_namespaces, or claimed by an extension).
permit contains [i, action] if {
	config.personal_namespaces == true
	authenticated
	not shared_namespaces[input.principal.account]
	some i, scope in input.scopes
	scope.type == "repository"
	in_personal_namespace(scope.name)
	some action in config.personal_namespace_actions
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
# custom:
#   when_account_withheld: shown
permit contains [i, "pull"] if {
	some i, scope in input.scopes
	scope.type == "repository"
	some pattern in config.public_repositories
	glob.match(pattern, ["/"], scope.name)
}

# METADATA
# title: extension
# description: A package under data.regoauth.extensions permits it.
# custom:
#   when_account_withheld: as extension
permit contains [i, action] if {
	some [typ, name, action] in data.regoauth.extensions[_].permit
	some i, scope in input.scopes
	scope.type == typ
	scope.name == name
}

# Key restrictions narrow whatever was permitted. Each is present only when it restricts.
restrictions := object.get(input.principal, ["key", "restrictions"], {})

# METADATA
# title: key restrictions
# description: The API key's restrictions exclude it.
deny contains pair if {
	some pair in key_deny
}

# METADATA
# title: key action ceiling
# description: A key with an action ceiling (e.g. read-only) never carries more.
key_deny contains [i, action] if {
	ceiling := restrictions.actions
	some i, scope in input.scopes
	some action in scope.actions
	not action in ceiling
}

# METADATA
# title: key repositories
# description: A key limited to some repositories gets nothing elsewhere (the catalog included).
key_deny contains [i, action] if {
	patterns := restrictions.repositories
	some i, scope in input.scopes
	not repository_matches(scope, patterns)
	some action in scope.actions
}

# METADATA
# title: key networks
# description: |
#   A key limited to some networks gets nothing from anywhere else. A malformed network is an
#   evaluation error under strict builtin errors (the server's mode) and a denial otherwise.
key_deny contains [i, action] if {
	cidrs := restrictions.cidrs
	not address_allowed(cidrs)
	some i, scope in input.scopes
	some action in scope.actions
}

repository_matches(scope, patterns) if {
	scope.type == "repository"
	some pattern in patterns
	glob.match(pattern, ["/"], scope.name)
}

address_allowed(cidrs) if {
	some cidr in cidrs
	net.cidr_contains(cidr, input.client.ip)
}

# METADATA
# title: deny rule
# description: A rule of config.deny matches; it overrides every permission.
deny contains pair if {
	some r, _ in deny_rules
	some pair in rule_denials[r]
}

# deny_rules are the config.deny rules that apply to this principal, by index.
deny_rules[r] := rule if {
	some r, rule in config.deny
	subject_listed(object.get(rule, "subjects", ["*"]))
	not subject_listed(object.get(rule, "except", []))
}

# rule_denials[r] are the [i, action] pairs deny rule r covers. A deny rule is written to fail
# closed: it applies unless its patterns provably miss the repository, so a malformed pattern
# denies rather than permits.
rule_denials[r] := {[i, action] |
	some i, scope in input.scopes
	scope.type == "repository"
	not repositories_miss(rule, scope.name)
	some action in scope.actions
	action_listed(rule, action)
} if {
	some r, rule in deny_rules
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
	subjects[subject]
}

# METADATA
# title: extension
# description: A package under data.regoauth.extensions denies it.
# custom:
#   when_account_withheld: as extension
deny contains [i, d.action] if {
	some [i, d] in extension_denials
}

extension_denials contains [i, d] if {
	some d in data.regoauth.extensions[_].deny
	some i, scope in input.scopes
	d.type == scope.type
	d.name == scope.name
}

reasons contains sprintf("%s:%s %s: %s", [scope.type, scope.name, action, why_denied(i, action)]) if {
	some i, scope in input.scopes
	some action in scope.actions
	not action in object.get(allowed, i, set())
}

# why_denied(i, action) says why action on the i-th scope is not allowed. An action no rule
# denies was simply not permitted: that is settled first, since every reason below comes from
# one of deny's own rules, and looking through them all to find none costs most of a decision.
why_denied(i, action) := "no grant or rule permits it" if {
	not [i, action] in deny
} else := "the API key's restrictions forbid it" if {
	[i, action] in key_deny
} else := concat("", ["a deny rule forbids it: ", why]) if {
	why := concat("; ", sort({object.get(config.deny[r], "reason", "no reason given") |
		some r
		rule_denials[r][[i, action]]
	}))
	why != ""
} else := why if {
	why := concat("; ", sort({object.get(d, "reason", "an extension denies it") |
		some denial in extension_denials
		denial[0] == i
		d := denial[1]
		d.action == action
	}))
	why != ""
} else := "no grant or rule permits it"
