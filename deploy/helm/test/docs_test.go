package helmtest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsKeepSecretsOffCommandLines holds the shell examples of the pages that install and run
// regoauth to reading secrets from files or the environment: a secret in a command's arguments
// is in the process list of the machine, and one typed out stays in the shell's history.
// Comments (after " #") may show what a file holds.
func TestDocsKeepSecretsOffCommandLines(t *testing.T) {
	leaks := []struct {
		re   *regexp.Regexp
		what string
	}{
		{regexp.MustCompile(`[a-z+]+://[^\s/@'"]*:[^\s/@'"]+@`), "a URL with a password"},
		{regexp.MustCompile(`--from-literal\b`), "a Secret's value as an argument (kubectl create secret --from-literal)"},
		{regexp.MustCompile(`\bredis-cli\b.*\s(-a|--pass)\s`), "a password as an argument of redis-cli (REDISCLI_AUTH reads it from the environment)"},
		{regexp.MustCompile(`--store[\s=]+["']?\$`), "a store URL expanded into an argument (--store reads $REGOAUTH_STORE_URL by itself)"},
	}
	for _, page := range []string{"deploy.md", "operations.md"} {
		raw, err := os.ReadFile(filepath.Join("../../../docs", page))
		if err != nil {
			t.Fatal(err)
		}
		inShell := false
		for i, line := range strings.Split(string(raw), "\n") {
			if fence, ok := strings.CutPrefix(strings.TrimSpace(line), "```"); ok {
				inShell = !inShell && (fence == "sh" || fence == "bash" || fence == "shell" || fence == "console")
				continue
			}
			if !inShell {
				continue
			}
			code := line
			if strings.HasPrefix(strings.TrimSpace(code), "#") {
				continue
			}
			if j := strings.Index(code, " #"); j >= 0 {
				code = code[:j]
			}
			for _, l := range leaks {
				if l.re.MatchString(code) {
					t.Errorf("docs/%s:%d puts %s on a command line:\n\t%s", page, i+1, l.what, strings.TrimSpace(line))
				}
			}
		}
	}
}
