package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// citingPages are the pages that prove their claims by naming tests; each name they cite must
// be a test of the repository.
var citingPages = []string{"security.md", "isolation.md"}

var (
	citedGoTest   = regexp.MustCompile(`\b(?:Test|Benchmark|Fuzz)[A-Z0-9_][A-Za-z0-9_]*`)
	citedRegoTest = regexp.MustCompile(`\btest_[a-z0-9_]+`)
	// citedWithFile is a run of cited names followed by the file that declares them:
	// "`TestA`, `TestB` (`admin/api_test.go`)". Only the first file in the parentheses counts.
	citedWithFile = regexp.MustCompile("((?:`(?:Test|Benchmark|Fuzz|test_)[A-Za-z0-9_]*`(?:,\\s+|\\s+and\\s+|\\s+or\\s+)?)+)\\s+\\(`([^`]+\\.(?:go|rego))`")
	quoted        = regexp.MustCompile("`([^`]+)`")
	goTestFunc    = regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz)[A-Z0-9_][A-Za-z0-9_]*)\(`)
	regoTestRule  = regexp.MustCompile(`(?m)^(test_[a-z0-9_]+)\b`)
)

// TestCitedTestsExist fails when a page that names the tests behind its claims names one that
// does not exist: a Go test, benchmark or fuzz target must be declared as a function in some
// _test.go file of the repository, and a Rego test must be a rule of some .rego file. Where a
// page names the file beside the test, the test must be declared in that file. The tree is read
// at test time, so a page and the tests it cites change together.
func TestCitedTestsExist(t *testing.T) {
	// declared maps each test name to the files (relative to the repository) declaring it.
	goTests, regoTests := map[string][]string{}, map[string][]string{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != ".." && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		var decl *regexp.Regexp
		names := goTests
		switch {
		case strings.HasSuffix(path, "_test.go"):
			decl = goTestFunc
		case strings.HasSuffix(path, ".rego"):
			decl, names = regoTestRule, regoTests
		default:
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel("..", path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(raw), -1) {
			names[m[1]] = append(names[m[1]], filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(goTests) == 0 || len(regoTests) == 0 {
		t.Fatalf("found %d Go and %d Rego tests in the repository: the patterns no longer match the tests", len(goTests), len(regoTests))
	}
	paired := 0
	for _, page := range citingPages {
		raw, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		text := string(raw)
		cited := 0
		for _, check := range []struct {
			cite  *regexp.Regexp
			names map[string][]string
			kind  string
		}{{citedGoTest, goTests, "Go test"}, {citedRegoTest, regoTests, "Rego test"}} {
			for _, name := range check.cite.FindAllString(text, -1) {
				cited++
				if len(check.names[name]) == 0 {
					t.Errorf("%s cites the %s %s, which no file of the repository declares", page, check.kind, name)
				}
			}
		}
		if cited == 0 {
			t.Errorf("%s cites no test: the pattern no longer matches the page", page)
		}
		for _, m := range citedWithFile.FindAllStringSubmatch(text, -1) {
			file := m[2]
			for _, name := range quoted.FindAllStringSubmatch(m[1], -1) {
				paired++
				files := goTests[name[1]]
				if strings.HasPrefix(name[1], "test_") {
					files = regoTests[name[1]]
				}
				if len(files) > 0 && !slices.Contains(files, file) {
					t.Errorf("%s cites %s in %s, but it is declared in %s", page, name[1], file, strings.Join(files, ", "))
				}
			}
		}
	}
	if paired == 0 {
		t.Error("no test is cited with its file: the pattern no longer matches the pages")
	}
}
