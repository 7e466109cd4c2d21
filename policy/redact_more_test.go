package policy

import (
	"strings"
	"testing"
	"time"
)

// TestStatusConsoleLogKeepsURLSecrets: with OPA's status plugin logging to the console, each
// status update is a log line that carries every bundle's message and errors; a bundle service
// that cannot be reached puts its URL there, and its password and query values must not
// reach the log.
func TestStatusConsoleLogKeepsURLSecrets(t *testing.T) {
	const secret = "s3cret-value-Zq7"
	cfg, _ := unreachableBundleService(t, secret, "status:\n  console: true\n")
	var logs logBuffer
	e := started(t, Options{Source: Source{OPAConfig: []byte(cfg)}, Logger: logs.logger()})
	eventually(t, 10*time.Second, "a status line with the bundle's error", func() bool {
		return strings.Contains(logs.String(), "Status Log") && strings.Contains(logs.String(), "bundles/authz.tar.gz")
	})
	e.Stop(ctx)
	if out := logs.String(); strings.Contains(out, secret) {
		t.Fatalf("a secret reached the status log line:\n%s", out)
	}
}

// TestRedactTextWithholdsURLUserTokens: a service URL may carry its credential as the user
// name alone (https://TOKEN@host), which Go's HTTP client sends as Basic authentication; it
// is as secret as a password.
func TestRedactTextWithholdsURLUserTokens(t *testing.T) {
	const secret = "s3cret-value-Zq7"
	for _, in := range []string{
		`Get "https://` + secret + `@bundles.example.com/b.tar.gz": dial tcp: refused`,
		`https://` + secret + `:@bundles.example.com/b.tar.gz`,
	} {
		if out := redactText(in); strings.Contains(out, secret) {
			t.Errorf("redactText(%q) = %q keeps the secret", in, out)
		}
	}
}
