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

// TestDocsInstallCommandRenders renders the chart with the arguments of the `helm install` of
// docs/deploy.md: the command a reader copies must install, with the values it sets (TLS
// chosen), and not stop at a refusal such as TestChartRefusesIncompleteValues's.
func TestDocsInstallCommandRenders(t *testing.T) {
	raw, err := os.ReadFile("../../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	var command string
	for _, block := range strings.Split(string(raw), "```sh\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		joined := strings.ReplaceAll(block, "\\\n", " ")
		for _, line := range strings.Split(joined, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "helm install ") {
				if command != "" {
					t.Fatalf("docs/deploy.md has two helm install commands:\n%s\n%s", command, line)
				}
				command = strings.TrimSpace(line)
			}
		}
	}
	words := shellWords(t, command)
	if len(words) < 4 || words[1] != "install" || words[3] != "deploy/helm/regoauth" {
		t.Fatalf("docs/deploy.md: no `helm install RELEASE deploy/helm/regoauth ...` (%q)", command)
	}
	args := append([]string{"template", words[2], chart}, words[4:]...)
	if _, err := runHelm(t, args...); err != nil {
		t.Errorf("the install command of docs/deploy.md does not render: %v", err)
	}
}

// shellWords splits a command line as sh would for words that are plain or in single quotes,
// which is all the documented command uses; anything else fails the test.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var word strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			word.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		case strings.ContainsRune(`"$\`+"`", r):
			t.Fatalf("the command %q needs more of sh than single quotes", line)
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unterminated quote in %q", line)
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}
