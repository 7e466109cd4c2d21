// Package bundles holds ready policy bundles for real setups. Each directory is an ordinary OPA
// bundle: a .manifest whose roots hold its data, its extension package under
// data.regoauth.extensions and that package's tests (package regoauth.extensions.NAME_test),
// data.json, and Rego that configures and extends the built-in library (package policies)
// through data.regoauth.config and data.regoauth.extensions. `opa build -b bundles/NAME` builds
// one as it is, tests included; `regoauth dev --policy bundles/NAME` loads it. The Go tests
// here load each, as a directory and as the tarball opa builds, into regoauth's engine beside
// the built-in library, and check that regoauth decides every case of the bundle's Rego tests
// as they say. The bundles know the library's input and extension points, nothing of Go.
package bundles
