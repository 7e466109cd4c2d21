package regoauth.authz_test

import data.regoauth.authz

user(name, extra) := object.union(
	{"account": name, "anonymous": false, "groups": [], "roles": [], "key": {"id": "k1"}},
	extra,
)

anonymous := {"anonymous": true, "groups": [], "roles": []}

repo(name, actions) := {"type": "repository", "name": name, "actions": actions}

grant(pattern, actions) := {"subject": "account:user1", "repository": pattern, "actions": actions}

# decide(principal, grants, owned, scopes) is the whole decision.
decide(principal, grants, owned, scopes) := d if {
	d := authz.decision with input as {
		"service": "registry.example.com",
		"client": {"ip": "203.0.113.7"},
		"principal": principal,
		"grants": grants,
		"owned": owned,
		"scopes": scopes,
	}
}

# access(principal, grants, scopes) is the decision's access as {"type:name": actions}.
access(principal, grants, scopes) := {sprintf("%s:%s", [e.type, e.name]): e.actions |
	some e in decide(principal, grants, [], scopes).access
}

reasons(principal, grants, scopes) := decide(principal, grants, [], scopes).reasons

story_grants := [grant("image", ["pull"]), grant("image2", ["pull", "push"])]

test_exact_grant_gives_only_granted_actions if {
	access(user("user1", {}), story_grants, [repo("image", ["pull", "push"])]) == {"repository:image": ["pull"]}
}

test_grant_with_both_actions if {
	access(user("user1", {}), story_grants, [repo("image2", ["pull", "push"])]) == {"repository:image2": ["pull", "push"]}
}

test_no_grant_means_empty_actions_not_absence if {
	access(user("user2", {}), [], [repo("image2", ["pull"])]) == {"repository:image2": []}
}

test_exact_pattern_is_anchored if {
	a := access(user("user1", {}), [grant("image", ["pull"])], [
		repo("myimage", ["pull"]), repo("image2", ["pull"]), repo("image/sub", ["pull"]),
	])
	a == {"repository:myimage": [], "repository:image2": [], "repository:image/sub": []}
}

test_single_star_stays_in_one_segment if {
	a := access(user("user1", {}), [grant("acme/*", ["pull"])], [
		repo("acme/app", ["pull"]), repo("acme/app/sub", ["pull"]), repo("acme", ["pull"]), repo("acmex/app", ["pull"]),
	])
	a == {"repository:acme/app": ["pull"], "repository:acme/app/sub": [], "repository:acme": [], "repository:acmex/app": []}
}

test_double_star_crosses_segments if {
	a := access(user("user1", {}), [grant("acme/**", ["push"])], [repo("acme/app/sub", ["push"]), repo("other/app", ["push"])])
	a == {"repository:acme/app/sub": ["push"], "repository:other/app": []}
}

test_group_grants_apply if {
	g := [{"subject": "group:sellers", "repository": "shop/*", "actions": ["pull", "push"]}]
	access(user("user1", {"groups": ["sellers"]}), g, [repo("shop/app", ["push"])]) == {"repository:shop/app": ["push"]}
}

# The account's own rows, its groups' rows and its pattern rows grant what they hold, each row
# once, and another account's rows nothing.
test_own_and_group_rows_both_grant if {
	g := [
		grant("shop/app", ["pull"]),
		{"subject": "group:sellers", "repository": "shop/app", "actions": ["push"]},
		grant("shop/*", ["delete"]),
		{"subject": "account:user2", "repository": "shop/app", "actions": ["delete"]},
	]
	access(user("user1", {"groups": ["sellers"]}), g, [repo("shop/app", ["delete", "pull", "push"])]) == {"repository:shop/app": ["delete", "pull", "push"]}
	access(user("user2", {}), g, [repo("shop/app", ["delete", "pull", "push"])]) == {"repository:shop/app": ["delete"]}
}

test_unknown_actions_are_never_granted if {
	access(user("user1", {}), [grant("image", ["pull"])], [repo("image", ["pull", "fly"])]) == {"repository:image": ["pull"]}
}

test_delete_only_when_granted if {
	access(user("user1", {}), [grant("image", ["pull", "push"])], [repo("image", ["delete"])]) == {"repository:image": []}
	access(user("user1", {}), [grant("image", ["delete"])], [repo("image", ["delete"])]) == {"repository:image": ["delete"]}
}

test_admin_gets_every_repository_action if {
	a := access(user("admin", {"roles": ["admin"]}), [], [repo("any/thing", ["pull", "push", "delete"])])
	a == {"repository:any/thing": ["delete", "pull", "push"]}
}

test_catalog_for_admins_only if {
	catalog := {"type": "registry", "name": "catalog", "actions": ["*"]}
	access(user("admin", {"roles": ["admin"]}), [], [catalog]) == {"registry:catalog": ["*"]}
	access(user("user1", {}), story_grants, [catalog]) == {"registry:catalog": []}
}

test_anonymous_gets_nothing_from_grants_or_roles if {
	a := access(object.union(anonymous, {"roles": ["admin"]}), story_grants, [repo("image", ["pull"])])
	a == {"repository:image": []}
}

test_read_only_key_never_pushes if {
	p := user("admin", {"roles": ["admin"], "key": {"id": "k1", "restrictions": {"actions": ["pull"]}}})
	access(p, [], [repo("image", ["pull", "push"])]) == {"repository:image": ["pull"]}
	"repository:image push: the API key's restrictions forbid it" in reasons(p, [], [repo("image", ["pull", "push"])])
}

test_repository_restricted_key if {
	p := user("user1", {"key": {"id": "k1", "restrictions": {"repositories": ["image*"]}}})
	a := access(p, [grant("**", ["pull"])], [repo("image2", ["pull"]), repo("other", ["pull"])])
	a == {"repository:image2": ["pull"], "repository:other": []}
}

test_repository_restricted_key_gets_no_catalog if {
	p := user("admin", {"roles": ["admin"], "key": {"id": "k1", "restrictions": {"repositories": ["**"]}}})
	access(p, [], [{"type": "registry", "name": "catalog", "actions": ["*"]}]) == {"registry:catalog": []}
}

test_cidr_restricted_key if {
	inside := user("user1", {"key": {"id": "k1", "restrictions": {"cidrs": ["203.0.113.0/24"]}}})
	access(inside, story_grants, [repo("image", ["pull"])]) == {"repository:image": ["pull"]}
	outside := user("user1", {"key": {"id": "k1", "restrictions": {"cidrs": ["10.0.0.0/8", "2001:db8::/32"]}}})
	access(outside, story_grants, [repo("image", ["pull"])]) == {"repository:image": []}
}

test_reasons_name_each_denied_action if {
	r := reasons(user("user1", {}), story_grants, [repo("image", ["pull", "push"]), repo("nope", ["pull"])])
	r == ["repository:image push: no grant or rule permits it", "repository:nope pull: no grant or rule permits it"]
}

test_login_probe_has_empty_access if {
	access(user("user1", {}), story_grants, []) == {}
}

test_owner_has_every_action_on_owned_repositories if {
	d := decide(user("seller", {}), [], ["shop/app"], [repo("shop/app", ["pull", "push", "delete"]), repo("shop/other", ["pull"])])
	d.access == [
		{"type": "repository", "name": "shop/app", "actions": ["delete", "pull", "push"]},
		{"type": "repository", "name": "shop/other", "actions": []},
	]
}

test_anonymous_owns_nothing if {
	d := decide(anonymous, [], ["shop/app"], [repo("shop/app", ["pull"])])
	d.access == [{"type": "repository", "name": "shop/app", "actions": []}]
}

# Configuration through data.regoauth.config.

test_grants_of_other_subjects_do_not_apply if {
	g := [
		{"subject": "account:user2", "repository": "image", "actions": ["pull"]},
		{"subject": "group:other", "repository": "image", "actions": ["push"]},
	]
	access(user("user1", {"groups": ["sellers"]}), g, [repo("image", ["pull", "push"])]) == {"repository:image": []}
}

test_public_repositories_anyone_pulls if {
	cfg := {"public_repositories": ["library/*"]}
	a := access(anonymous, [], [repo("library/alpine", ["pull", "push"]), repo("private/app", ["pull"])]) with data.regoauth.config as cfg
	a == {"repository:library/alpine": ["pull"], "repository:private/app": []}
	b := access(user("user1", {}), [], [repo("library/alpine", ["pull", "delete"])]) with data.regoauth.config as cfg
	b == {"repository:library/alpine": ["pull"]}
}

test_no_public_repositories_by_default if {
	access(anonymous, [], [repo("library/alpine", ["pull"])]) == {"repository:library/alpine": []}
}

test_public_repository_still_obeys_key_restrictions if {
	p := user("user1", {"key": {"id": "k1", "restrictions": {"repositories": ["ci/*"]}}})
	a := access(p, [], [repo("library/alpine", ["pull"])]) with data.regoauth.config as {"public_repositories": ["library/*"]}
	a == {"repository:library/alpine": []}
}

test_personal_namespaces if {
	cfg := {"personal_namespaces": true}
	a := access(user("user1", {}), [], [
		repo("user1/app", ["pull", "push", "delete"]),
		repo("user1/app/nested", ["pull"]),
		repo("user1", ["pull"]),
		repo("user2/app", ["pull"]),
		repo("user1x/app", ["pull"]),
	]) with data.regoauth.config as cfg
	a == {
		"repository:user1/app": ["delete", "pull", "push"],
		"repository:user1/app/nested": [],
		"repository:user1": [],
		"repository:user2/app": [],
		"repository:user1x/app": [],
	}
}

test_personal_namespace_actions_configurable if {
	cfg := {"personal_namespaces": true, "personal_namespace_actions": ["pull", "push"]}
	a := access(user("user1", {}), [], [repo("user1/app", ["pull", "push", "delete"])]) with data.regoauth.config as cfg
	a == {"repository:user1/app": ["pull", "push"]}
}

test_personal_namespaces_off_by_default_and_never_anonymous if {
	access(user("user1", {}), [], [repo("user1/app", ["pull"])]) == {"repository:user1/app": []}
	a := access(anonymous, [], [repo("/app", ["pull"])]) with data.regoauth.config as {"personal_namespaces": true}
	a == {"repository:/app": []}
}

test_account_names_are_not_patterns if {
	a := access(user("*", {}), [], [repo("user2/app", ["pull"])]) with data.regoauth.config as {"personal_namespaces": true}
	a == {"repository:user2/app": []}
}

prod_deny := {"repositories": ["prod/**"], "actions": ["delete"], "reason": "production images are kept"}

test_deny_rule_overrides_grants_and_admins if {
	cfg := {"deny": [prod_deny]}
	admin_p := user("admin", {"roles": ["admin"]})
	a := access(admin_p, [], [repo("prod/app", ["pull", "delete"]), repo("dev/app", ["delete"])]) with data.regoauth.config as cfg
	a == {"repository:prod/app": ["pull"], "repository:dev/app": ["delete"]}
	r := reasons(admin_p, [], [repo("prod/app", ["delete"])]) with data.regoauth.config as cfg
	r == ["repository:prod/app delete: a deny rule forbids it: production images are kept"]
}

test_deny_rule_without_actions_denies_every_action if {
	cfg := {"deny": [{"repositories": ["quarantine/*"]}]}
	a := access(user("user1", {}), [grant("**", ["pull", "push"])], [repo("quarantine/x", ["pull", "push"])]) with data.regoauth.config as cfg
	a == {"repository:quarantine/x": []}
	r := reasons(user("user1", {}), [grant("**", ["pull"])], [repo("quarantine/x", ["pull"])]) with data.regoauth.config as cfg
	r == ["repository:quarantine/x pull: a deny rule forbids it: no reason given"]
}

# A deny rule whose reason is empty still denies; the reason falls back to the general one.
test_deny_rule_with_an_empty_reason if {
	cfg := {"deny": [{"repositories": ["quarantine/*"], "reason": ""}]}
	r := reasons(user("user1", {}), [grant("**", ["pull"])], [repo("quarantine/x", ["pull"])]) with data.regoauth.config as cfg
	r == ["repository:quarantine/x pull: no grant or rule permits it"]
}

test_deny_rule_subjects_and_exceptions if {
	rule := {"repositories": ["**"], "actions": ["push"], "subjects": ["group:contractors"], "except": ["account:lead"]}
	cfg := {"deny": [rule]}
	g := [{"subject": "group:contractors", "repository": "**", "actions": ["pull", "push"]}]
	contractor := user("c1", {"groups": ["contractors"]})
	access(contractor, g, [repo("app", ["pull", "push"])]) == {"repository:app": ["pull"]} with data.regoauth.config as cfg
	lead := user("lead", {"groups": ["contractors"]})
	access(lead, g, [repo("app", ["pull", "push"])]) == {"repository:app": ["pull", "push"]} with data.regoauth.config as cfg
	employee := user("e1", {"groups": ["staff"]})
	staff := [{"subject": "group:staff", "repository": "**", "actions": ["push"]}]
	access(employee, staff, [repo("app", ["push"])]) == {"repository:app": ["push"]} with data.regoauth.config as cfg
}

test_deny_rule_for_anonymous_and_roles if {
	cfg := {"public_repositories": ["**"], "deny": [
		{"repositories": ["internal/**"], "subjects": ["anonymous"]},
		{"repositories": ["**"], "actions": ["delete"], "subjects": ["role:auditor"]},
	]}
	access(anonymous, [], [repo("internal/x", ["pull"]), repo("x", ["pull"])]) == {"repository:internal/x": [], "repository:x": ["pull"]} with data.regoauth.config as cfg
	auditor := user("a1", {"roles": ["auditor"]})
	access(auditor, [grant("**", ["delete"])], [repo("x", ["delete"])]) == {"repository:x": []} with data.regoauth.config as cfg
}

test_malformed_deny_pattern_fails_closed if {
	# Without strict builtin errors (as here) the bad pattern denies; the server, with strict
	# errors, refuses to decide at all.
	cfg := {"deny": [{"repositories": ["[unclosed"], "actions": ["pull"]}]}
	access(user("user1", {}), story_grants, [repo("image", ["pull"])]) == {"repository:image": []} with data.regoauth.config as cfg
}

test_malformed_key_cidr_fails_closed if {
	p := user("user1", {"key": {"id": "k1", "restrictions": {"cidrs": ["not-a-network"]}}})
	access(p, story_grants, [repo("image", ["pull"])]) == {"repository:image": []}
}

test_malformed_key_pattern_fails_closed if {
	p := user("user1", {"key": {"id": "k1", "restrictions": {"repositories": ["[unclosed"]}}})
	access(p, story_grants, [repo("image", ["pull"])]) == {"repository:image": []}
}

test_admin_and_catalog_roles_configurable if {
	cfg := {"admin_roles": ["operator"], "catalog_roles": ["operator", "indexer"]}
	catalog := {"type": "registry", "name": "catalog", "actions": ["*"]}
	op := user("o1", {"roles": ["operator"]})
	access(op, [], [repo("x", ["push"]), catalog]) == {"repository:x": ["push"], "registry:catalog": ["*"]} with data.regoauth.config as cfg
	indexer := user("i1", {"roles": ["indexer"]})
	access(indexer, [], [repo("x", ["push"]), catalog]) == {"repository:x": [], "registry:catalog": ["*"]} with data.regoauth.config as cfg
	old_admin := user("admin", {"roles": ["admin"]})
	access(old_admin, [], [repo("x", ["push"]), catalog]) == {"repository:x": [], "registry:catalog": []} with data.regoauth.config as cfg
}

# Extensions under data.regoauth.extensions.

test_extension_permits if {
	ext := {"shop": {"permit": {["repository", "shop/demo", "pull"]}}}
	a := access(anonymous, [], [repo("shop/demo", ["pull", "push"]), repo("shop/other", ["pull"])]) with data.regoauth.extensions as ext
	a == {"repository:shop/demo": ["pull"], "repository:shop/other": []}
}

# An extension's permit is a permission like a grant: the key's restrictions still deny what
# they exclude, and deny rules still override it.
test_extension_permit_obeys_key_restrictions_and_deny_rules if {
	ext := {"shop": {"permit": {["repository", "shop/demo", "pull"], ["repository", "shop/demo", "push"]}}}
	limited := user("user1", {"key": {"id": "k1", "restrictions": {"repositories": ["ci/*"]}}})
	access(limited, [], [repo("shop/demo", ["pull"])]) == {"repository:shop/demo": []} with data.regoauth.extensions as ext
	read_only := user("user1", {"key": {"id": "k2", "restrictions": {"actions": ["pull"]}}})
	access(read_only, [], [repo("shop/demo", ["pull", "push"])]) == {"repository:shop/demo": ["pull"]} with data.regoauth.extensions as ext
	cfg := {"deny": [{"repositories": ["shop/**"], "actions": ["push"]}]}
	access(user("user1", {}), [], [repo("shop/demo", ["pull", "push"])]) == {"repository:shop/demo": ["pull"]} with data.regoauth.extensions as ext with data.regoauth.config as cfg
}

test_extension_denies_with_reason if {
	ext := {"shop": {"deny": {{"type": "repository", "name": "image", "action": "pull", "reason": "listing suspended"}}}}
	access(user("user1", {}), story_grants, [repo("image", ["pull"])]) == {"repository:image": []} with data.regoauth.extensions as ext
	r := reasons(user("user1", {}), story_grants, [repo("image", ["pull"])]) with data.regoauth.extensions as ext
	r == ["repository:image pull: listing suspended"]
}

test_unknown_scope_types_get_nothing if {
	access(user("admin", {"roles": ["admin"]}), [], [{"type": "plugin", "name": "x", "actions": ["pull"]}]) == {"plugin:x": []}
}

# An owned name that reads as a pattern (a record from an earlier version) is ownership of
# nothing: the owner rule compares literal names only.
test_owned_patterns_own_nothing if {
	d := decide(user("user1", {}), [], ["shop/*", "shop/**", "shop/prem*"], [repo("shop/premium", ["pull", "push"]), repo("shop/*", ["pull"])])
	{e.name: e.actions | some e in d.access} == {"shop/premium": [], "shop/*": []}
}

# A shared namespace — listed in config.reserved_namespaces or claimed by an extension (an
# organisation, a marketplace's shop) — is nobody's personal namespace, even an account's named
# like it.
test_shared_namespaces_are_nobodys_personal_namespace if {
	scopes := [repo("team/app", ["pull", "push"]), repo("acme/api", ["push"])]
	cfg := {"personal_namespaces": true, "reserved_namespaces": ["team"]}
	ext := {"orgs": {"namespaces": {"acme"}}}
	team := access(user("team", {}), [], scopes) with data.regoauth.config as cfg with data.regoauth.extensions as ext
	team == {"repository:team/app": [], "repository:acme/api": []}
	acme := access(user("acme", {}), [], scopes) with data.regoauth.config as cfg with data.regoauth.extensions as ext
	acme == {"repository:team/app": [], "repository:acme/api": []}
	bob := access(user("bob", {}), [], [repo("bob/app", ["push"])]) with data.regoauth.config as cfg with data.regoauth.extensions as ext
	bob == {"repository:bob/app": ["push"]}
}
