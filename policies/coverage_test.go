package policies_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/internal/opacli"
)

// minCoverage is the share of each library file's lines that `opa test` must run: all of them,
// as docs/policy.md says.
const minCoverage = 100.0

// TestCoverage runs `opa test --coverage` on the library and holds every policy file (tests
// excluded, which would inflate the total) to minCoverage.
func TestCoverage(t *testing.T) {
	out, err := exec.Command(opacli.Path(t), "test", "--coverage", "--format", "json", ".").Output()
	if err != nil {
		t.Fatalf("opa test --coverage: %v\n%s", err, out)
	}
	var report struct {
		Files map[string]struct {
			Coverage float64 `json:"coverage"`
		} `json:"files"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for name, f := range report.Files {
		if strings.HasSuffix(name, "_test.rego") {
			continue
		}
		checked++
		t.Logf("%s: %.1f%%", name, f.Coverage)
		if f.Coverage < minCoverage {
			t.Errorf("%s: coverage %.2f%% is below %.0f%%", name, f.Coverage, minCoverage)
		}
	}
	if checked < 2 {
		t.Fatalf("coverage report covers %d policy files: %v", checked, report.Files)
	}
}
