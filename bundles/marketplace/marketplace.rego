# METADATA
# title: Registry marketplace
# description: |
#   Sellers reserve listing names (shop/NAME), publish images to them and a free preview at
#   previews/NAME; buyers get pull on a listing when the marketplace's checkout service records
#   their purchase as a grant. Extends the built-in library (package regoauth.authz) through
#   data.regoauth.extensions; settings are in data.marketplace.
package regoauth.extensions.marketplace

import data.regoauth.authz

settings := data.marketplace

# A listing is one literal repository name directly under the listing namespace: shop/NAME, never
# a pattern such as shop/* (whose seller would sell every listing). The server hands the policy
# only names and patterns it validated, in which '*' is the only glob syntax; a string test keeps
# this cheap on every token decision.
listing(name) if {
	not contains(name, "*")
	parts := split(name, "/")
	count(parts) == 2
	parts[0] == settings.listing_namespace
	parts[1] != ""
}

# The listing a preview belongs to: previews/NAME -> shop/NAME.
listing_of_preview(name) := concat("/", [settings.listing_namespace, parts[1]]) if {
	parts := split(name, "/")
	count(parts) == 2
	parts[0] == settings.preview_namespace
}

authenticated if input.principal.anonymous == false

# The listing and preview namespaces are shared (see the library's shared_namespaces): with
# personal namespaces on, no account named "shop" holds every listing.
namespaces := {settings.listing_namespace, settings.preview_namespace}

seller if {
	authenticated
	settings.seller_group in input.principal.groups
}

unrestricted_key if not input.principal.key.restrictions

# METADATA
# title: seller's preview
# description: The seller of shop/NAME publishes its free preview at previews/NAME.
permit contains ["repository", scope.name, action] if {
	authenticated
	some scope in input.scopes
	scope.type == "repository"
	authz.owned[listing_of_preview(scope.name)]
	some action in scope.actions
	action in {"pull", "push", "delete"}
}

# METADATA
# title: listings belong to their seller
# description: |
#   Only the seller who reserved a listing pushes to it: a push grant, even an admin's, never
#   lets anyone else replace what buyers paid for. Admins may still delete (take down).
#   Shown to the seller explaining a buyer's push: it reads nothing of who the buyer is, only
#   that the buyer does not own the listing. (The rule on deletes reads whether the account is
#   an admin, so it stays withheld.)
# custom:
#   when_account_withheld: shown
deny contains {"type": "repository", "name": scope.name, "action": action, "reason": "only the listing's seller publishes to it"} if {
	some scope in input.scopes
	scope.type == "repository"
	listing(scope.name)
	not authz.owned[scope.name]
	some action in scope.actions
	action == "push"
}

deny contains {"type": "repository", "name": scope.name, "action": "delete", "reason": "only the listing's seller or an admin deletes it"} if {
	some scope in input.scopes
	scope.type == "repository"
	listing(scope.name)
	not authz.owned[scope.name]
	"delete" in scope.actions
	not authz.is_admin
}

# METADATA
# title: sellers reserve listings
# description: A seller reserves listing names for itself, up to max_listings_per_seller.
admin_allow if {
	input.operation == "repos.reserve"
	seller
	unrestricted_key
	input.target.account == input.principal.account
	listing(input.target.repository)
	count(input.owned) < settings.max_listings_per_seller
}

# METADATA
# title: the listing limit
# description: |
#   The limit goes into the decision (max_owned), and the server checks it in the same write as
#   the reservation, so concurrent reservations never exceed it.
admin_max_owned := settings.max_listings_per_seller if {
	input.operation == "repos.reserve"
	seller
	input.target.account == input.principal.account
}

# METADATA
# title: sellers release their listings
admin_allow if {
	input.operation == "repos.release"
	seller
	unrestricted_key
	listing(input.target.repository)
	input.target.owner == input.principal.account
}

# METADATA
# title: checkout records purchases
# description: |
#   The checkout service (role checkout) grants and revokes pull on a reserved listing for one
#   buyer account: the purchase, and its refund. Its key must permit the write: unrestricted, or
#   limited only to networks the call comes from and to repositories covering the listing (e.g.
#   shop/*); a read-only key records nothing.
admin_allow if {
	input.operation in {"grants.add", "grants.remove"}
	authenticated
	settings.checkout_role in input.principal.roles
	data.regoauth.admin.key_permits_write
	listing(input.target.repository)
	input.target.owner != ""
	input.target.account != ""
	not input.target.group
	actions := input.target.actions
	every action in actions {
		action == "pull"
	}
}
