// Package policies is the Rego library shipped as regoauth's default policy. Each rule has its
// tests beside it; run them with `opa test policies`.
package policies

import "embed"

// FS holds the default policy, test files included; the engine skips *_test.rego.
//
//go:embed *.rego
var FS embed.FS
