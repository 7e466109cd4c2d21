package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

// A failure is reported in one line that says what went wrong, whatever the server at --server
// answers: a page that is not the admin API's, an error page of a proxy, or an error whose text
// carries control characters (which would otherwise reach the terminal: colours, a cursor
// moved, a line rewritten, text reordered).
func TestFailuresAreOneClearLine(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/html/"):
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<!doctype html>\n<html><body>Welcome to nginx!</body></html>\n"))
		case strings.HasPrefix(r.URL.Path, "/proxy/"):
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n</html>\r\n"))
		case strings.HasPrefix(r.URL.Path, "/escapes/"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":"no\u001b[2K\u001b[1Gall fine\r\u202eevil\u009b","code":"forbidden"}`))
		}
	}))
	defer srv.Close()
	t.Setenv("REGOAUTH_KEY", "rak_aaaaaaaaaaaaaaaa_secret")
	for _, tt := range []struct{ path, want string }{
		{"/html", srv.URL + "/html answered HTTP 200 with text/html, not the admin API's JSON (is it a regoauth server, and is it up?): <!doctype html> <html><body>Welcome to nginx!</body></html>"},
		{"/proxy", srv.URL + "/proxy answered HTTP 502 with text/html, not the admin API's JSON (is it a regoauth server, and is it up?): <html> <head><title>502 Bad Gateway</title></head> </html>"},
		{"/escapes", `regoauth: no\x1b[2K\x1b[1Gall fine\r\u202eevil\u009b (HTTP 403)`},
	} {
		_, _, err := runCLI(t, "", "whoami", "--server", srv.URL+tt.path)
		if err == nil {
			t.Fatalf("%s: no error", tt.path)
		}
		line := errorLine(err)
		if !strings.Contains(line, tt.want) || strings.ContainsFunc(line, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }) {
			t.Errorf("%s: reported as %q, want one line of printable text with %q", tt.path, line, tt.want)
		}
	}
}

// An API key file that holds nothing is named as the problem, not reported as a key missing.
func TestEmptyKeyFile(t *testing.T) {
	t.Setenv("REGOAUTH_KEY", "")
	t.Setenv("REGOAUTH_KEY_FILE", "")
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(" \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := runCLI(t, "", "whoami", "--key-file", path)
	if err == nil || exitCode(err) != 2 || err.Error() != "the API key file "+path+" is empty" {
		t.Fatalf("whoami with an empty key file: %v (exit %d)", err, exitCode(err))
	}
}

// An API key file others can read works, with a warning naming the fix; a file holding more
// than the key is named as the problem, not sent as a key that fails with 401.
func TestKeyFileChecks(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"account":{"name":"sam","created":"2026-01-01T00:00:00Z"},"key":{"id":"aaaaaaaaaaaaaaaa","account":"sam","created":"2026-01-01T00:00:00Z"}}`))
	}))
	defer srv.Close()
	t.Setenv("REGOAUTH_KEY", "")
	t.Setenv("REGOAUTH_KEY_FILE", "")
	dir := t.TempDir()
	private, shared, twoLines := filepath.Join(dir, "private"), filepath.Join(dir, "shared"), filepath.Join(dir, "two")
	for path, body := range map[string]string{private: "rak_aaaaaaaaaaaaaaaa_secret\r\n", shared: "rak_aaaaaaaaaaaaaaaa_secret\n", twoLines: "rak_aaaaaaaaaaaaaaaa_secret\nrak_bbbbbbbbbbbbbbbb_other\n"} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(shared, 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCLI(t, "", "whoami", "--server", srv.URL, "--key-file", private)
	if err != nil || !strings.Contains(out, "sam") || stderr != "" {
		t.Fatalf("whoami with a private key file (CRLF): %v, %q, %q", err, out, stderr)
	}
	out, stderr, err = runCLI(t, "", "whoami", "--server", srv.URL, "--key-file", shared)
	if err != nil || !strings.Contains(out, "sam") || stderr != "regoauth: warning: the API key file "+shared+" can be read or changed by other users (mode 0644); chmod 600 "+shared+"\n" {
		t.Fatalf("whoami with a key file of mode 0644: %v, %q, %q", err, out, stderr)
	}
	_, _, err = runCLI(t, "", "whoami", "--server", srv.URL, "--key-file", twoLines)
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "holds more than one word") {
		t.Fatalf("whoami with two keys in the file: %v", err)
	}
}
