package main

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthcheck(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"status":"ok"}`)) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/healthz", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()

	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/healthz"
	l.Close()

	for _, c := range []struct {
		name string
		args []string
		env  string
		want string // "" for success, else a part of the error
	}{
		{"healthy", []string{"--url", srv.URL + "/healthz"}, "", ""},
		{"from the environment", nil, srv.URL + "/healthz", ""},
		{"flag over environment", []string{"--url", srv.URL + "/readyz"}, srv.URL + "/healthz", "503"},
		{"not ready", []string{"--url", srv.URL + "/readyz"}, "", "503 Service Unavailable"},
		{"not found", []string{"--url", srv.URL + "/nothing"}, "", "404"},
		{"a redirect is not health", []string{"--url", srv.URL + "/moved"}, "", "302"},
		{"nothing listening", []string{"--url", closed}, "", "refused"},
		{"too slow", []string{"--url", srv.URL + "/slow", "--timeout", "200ms"}, "", "Timeout"},
		{"tls verified by default", []string{"--url", tlsSrv.URL + "/healthz"}, "", "certificate"},
		{"tls with --insecure", []string{"--url", tlsSrv.URL + "/healthz", "--insecure"}, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("REGOAUTH_HEALTHCHECK_URL", c.env)
			out, _, err := runCLI(t, "", append([]string{"healthcheck"}, c.args...)...)
			if c.want == "" {
				if err != nil || strings.TrimSpace(out) != "ok" {
					t.Fatalf("healthcheck = %q, %v; want ok", out, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("healthcheck error = %v; want one containing %q", err, c.want)
			}
			var ue usageError
			if errors.As(err, &ue) {
				t.Fatalf("a failed probe is not a usage error: %v", err)
			}
		})
	}
}

func TestHealthcheckRejectsBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "ftp://127.0.0.1/healthz"},
		{"--url", "127.0.0.1:5001/healthz"},
		{"--url", "http:///healthz"},
		{"--timeout", "0s"},
	} {
		_, _, err := runCLI(t, "", append([]string{"healthcheck"}, args...)...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("healthcheck %v: error %v, want a usage error", args, err)
		}
	}
}
