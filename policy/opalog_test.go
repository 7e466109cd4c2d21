package policy

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestDebugLogsKeepBundleServiceSecrets: at log level debug OPA's REST client logs every
// request and response to a bundle service. Custom headers of the service configuration (an
// API key), a token in the resource's query, credentials in the URL and the server's
// Set-Cookie must not reach the log; the rest of the line (method, host, path, status,
// harmless headers) stays for debugging.
func TestDebugLogsKeepBundleServiceSecrets(t *testing.T) {
	const secret = "s3cret-value-Zq7"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: secret})
		w.Header().Set("X-Request-Id", "rid-1")
		http.Error(w, "no bundle here", http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	url := strings.Replace(srv.URL, "http://", "http://deploy:"+secret+"@", 1)
	cfg := fmt.Sprintf(`
services:
  bundles:
    url: %s
    headers:
      X-Api-Key: %s
      Private-Token: %s
bundles:
  authz:
    service: bundles
    resource: bundles/authz.tar.gz?access_token=%s&ref=main
    polling: {min_delay_seconds: 1, max_delay_seconds: 1}
`, url, secret, secret, secret)
	var logs logBuffer
	e := started(t, Options{Source: Source{OPAConfig: []byte(cfg)}, Logger: logs.logger()})
	eventually(t, 10*time.Second, "a logged response", func() bool { return len(logs.lines("Received response.")) > 0 })
	e.Stop(ctx)
	out := logs.String()
	if strings.Contains(out, secret) {
		t.Fatalf("a secret reached the debug log:\n%s", out)
	}
	for _, want := range []string{"Sending request.", "/bundles/authz.tar.gz", "404", "rid-1", "no bundle here"} {
		if !strings.Contains(out, want) {
			t.Errorf("the debug log lost %q:\n%s", want, out)
		}
	}
}

// TestBundleErrorsKeepURLSecrets: a bundle service that cannot be reached makes an error that
// names its URL; the bundle's status and the error line keep the host and path and lose the
// password and the query's values.
func TestBundleErrorsKeepURLSecrets(t *testing.T) {
	const secret = "s3cret-value-Zq7"
	cfg, addr := unreachableBundleService(t, secret, "")
	var logs logBuffer
	e := started(t, Options{Source: Source{OPAConfig: []byte(cfg)}, Logger: logs.logger()})
	eventually(t, 10*time.Second, "the refusal", func() bool { return bundleError(e, "authz") != "" })
	e.Stop(ctx)
	status := bundleError(e, "authz")
	for what, s := range map[string]string{"status": status, "log": logs.String()} {
		if strings.Contains(s, secret) {
			t.Errorf("a secret reached the %s:\n%s", what, s)
		}
	}
	if !strings.Contains(status, addr+"/bundles/authz.tar.gz?access_token="+withheld) {
		t.Errorf("the status lost the address of the failing request: %s", status)
	}
}

// unreachableBundleService is an OPA configuration of bundle authz from a service nothing
// answers at (the address it names), with secret as the URL's password and the resource's
// access_token, and extra appended (more OPA configuration).
func unreachableBundleService(t *testing.T, secret, extra string) (cfg, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	return fmt.Sprintf(`
services:
  bundles:
    url: http://deploy:%s@%s
bundles:
  authz:
    service: bundles
    resource: bundles/authz.tar.gz?access_token=%s
    polling: {min_delay_seconds: 1, max_delay_seconds: 1}
`, secret, addr, secret) + extra, addr
}
