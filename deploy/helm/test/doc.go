// Package helmtest renders the Helm chart in deploy/helm/regoauth with each values file of its
// ci/ folder, decodes every manifest strictly into the Kubernetes API types, and checks what the
// chart promises: restricted security settings, probes on /healthz and /readyz, a disruption
// budget and selectors that match, secrets and configuration mounted where regoauth's
// configuration says. It also holds the shell examples of the pages that install and run
// regoauth (docs/deploy.md, docs/operations.md) to keeping secrets off command lines. It is a
// module of its own so the main module never depends on the Kubernetes API packages.
package helmtest
