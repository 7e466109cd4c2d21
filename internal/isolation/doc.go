// Package isolation holds the model-based isolation test: random sequences of admin API calls,
// by admins, sellers, buyers, the checkout role and a malicious account, against a real server
// assembled by package server, on bolt and on Redis, with the built-in library and with each
// shipped bundle. After every step each key's token answer for a small universe of
// repositories is compared with a reference model of the documented rules (docs/isolation.md,
// docs/policy.md), written in plain Go maps apart from the Rego; any difference fails with the
// shortest sequence that shows it. It has no code of its own.
package isolation
