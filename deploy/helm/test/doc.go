// Package helmtest renders the Helm chart in deploy/helm/regoauth with each values file of its
// ci/ folder, decodes every manifest strictly into the Kubernetes API types (cert-manager's for
// its Certificate), and checks what the chart promises: restricted security settings, probes on
// /healthz and /readyz, a disruption budget and selectors that match, secrets and configuration
// mounted where regoauth's configuration says, TLS from exactly one chosen source (plain HTTP
// only when asked for), and regoauth itself loading and serving the rendered configuration. It
// also holds the shell examples of the pages that install and run regoauth (docs/deploy.md,
// docs/operations.md) to keeping secrets off command lines, and the documented install command to
// rendering. It is a module of its own so the main module never depends on the Kubernetes API
// packages.
package helmtest
