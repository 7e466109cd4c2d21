package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestExitCodes: a mistake in how a command is called exits 2 whatever cobra's message says;
// anything else that fails exits 1.
func TestExitCodes(t *testing.T) {
	t.Setenv("REGOAUTH_KEY", "")
	t.Setenv("REGOAUTH_KEY_FILE", "")
	t.Setenv("REGOAUTH_STORE_URL", "")
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	for _, tt := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate" for "regoauth"`},
		{"unknown command with a suggestion", []string{"serv"}, 2, "Did you mean this?"},
		{"unknown flag", []string{"serve", "--frob"}, 2, "unknown flag"},
		{"unknown shorthand flag", []string{"keys", "list", "-z"}, 2, "unknown shorthand flag"},
		{"flag without its value", []string{"serve", "--config"}, 2, "flag needs an argument"},
		{"flag value of the wrong type", []string{"import", "--workers", "many"}, 2, "invalid argument"},
		{"missing argument", []string{"accounts", "create"}, 2, "accepts 1 arg"},
		{"extra argument", []string{"whoami", "extra"}, 2, "unknown command"},
		{"unknown command of a group", []string{"accounts", "udpate", "sam"}, 2, `unknown command "udpate" for "regoauth accounts"`},
		{"unknown command of a group, suggested", []string{"keys", "revok", "x"}, 2, "Did you mean this?\n\trevoke"},
		{"unknown command of a nested group", []string{"signing", "frob"}, 2, `unknown command "frob" for "regoauth signing"`},
		{"missing required flag", []string{"serve"}, 2, "--config is required"},
		{"init without its configuration", []string{"init"}, 2, "--config is required"},
		{"healthcheck of a URL that is not http", []string{"healthcheck", "--url", "ftp://x/healthz"}, 2, "want an http"},
		{"no API key", []string{"accounts", "list"}, 2, "no API key"},
		{"unsupported store URL", []string{"export", "--store", "mysql://x"}, 2, "unsupported store URL"},
		{"missing configuration file", []string{"serve", "--config", missing}, 1, "no such file"},
		{"bad signing algorithm", []string{"signing", "generate", "--key", filepath.Join(t.TempDir(), "k.pem"), "--alg", "none"}, 2, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCLI(t, "", tt.args...)
			if err == nil || exitCode(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v (exit %d), want exit %d with %q", err, exitCode(err), tt.code, tt.msg)
			}
		})
	}
	for _, group := range [][]string{nil, {"accounts"}, {"policy"}} {
		if _, _, err := runCLI(t, "", group...); err != nil {
			t.Fatalf("regoauth %v with no command: %v, want the help", group, err)
		}
	}
}
