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
