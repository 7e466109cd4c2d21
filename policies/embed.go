// Package policies is the Rego library shipped as regoauth's built-in policy: the token
// decision (authz.rego) and the admin decision (admin.rego), configured by data under
// data.regoauth.config and extended by packages under data.regoauth.extensions. Its .manifest
// claims only the roots regoauth/authz and regoauth/admin (and their test packages), so bundles
// that configure or extend it load beside it. Each rule has its tests beside it; run them with
// `opa test policies`. It knows the policy input, nothing of the Go code that builds it.
package policies

import "embed"

// FS holds the library, test files included (loaders skip *_test.rego), and its .manifest.
//
//go:embed *.rego .manifest
var FS embed.FS
