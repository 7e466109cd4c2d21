// Package bundles holds ready policy bundles for real setups: each directory is a bundle with a
// .manifest, data.json, Rego that configures and extends the built-in library (package
// policies) through data.regoauth.config and data.regoauth.extensions, and its `opa test`
// tests. Build one with `opa build -b bundles/NAME --ignore '*_test.rego'`. The Go tests here
// build each with opa, load it into regoauth's engine beside the built-in library, and check
// that regoauth decides every case of the bundle's Rego tests as they say.
package bundles
