// Package opacli finds the opa program for tests, which build, sign and test bundles with it the
// way operators do. Without opa a test is skipped on a developer machine and fails when
// REGOAUTH_E2E=1 (CI, whose .ci/run installs opa at the version go.mod pins). It knows nothing
// of regoauth.
package opacli

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Path returns the opa program, from PATH or $HOME/go/bin, or ends the test without it.
func Path(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("opa"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "opa")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv("REGOAUTH_E2E") == "1" {
		t.Fatal("opa is not installed, and REGOAUTH_E2E=1 requires it")
	}
	t.Skip("opa is not installed")
	return ""
}
