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
