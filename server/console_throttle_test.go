package server

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestConsoleSignInsSpendTheTokenEndpointsBudgets: the server gives the console the failure
// budgets of /token and the admin API, so guessing keys at the console's sign-in is limited as at
// /token, and failures at one spend the budget of the other.
func TestConsoleSignInsSpendTheTokenEndpointsBudgets(t *testing.T) {
	cfg := testConfig(t)
	cfg.Console.Enabled = true
	cfg.Limits.AuthFailures.AccountAddress = FailureBudget{Burst: 3, Every: Duration(time.Hour)}
	h, err := newServer(t, cfg).Handler()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	signin := func() int {
		t.Helper()
		resp, err := browser.Get(srv.URL + "/console/signin")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrf.FindSubmatch(page)
		if m == nil {
			t.Fatalf("no sign-in form: HTTP %d", resp.StatusCode)
		}
		form := url.Values{"csrf": {string(m[1])}, "account": {"alice"}, "key": {"rak_aaaaaaaaaaaaaaaa_" + strings.Repeat("a", 43)}}
		req, _ := http.NewRequest("POST", srv.URL+"/console/signin", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err = browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	token := func() int {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/token?service=registry.example.com&scope=repository:a:pull", nil)
		req.SetBasicAuth("alice", "rak_bbbbbbbbbbbbbbbb_"+strings.Repeat("b", 43))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// Two failures at the console and one at /token spend alice's budget at this address.
	for i, try := range []func() int{signin, signin, token} {
		if code := try(); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: HTTP %d, want 401", i+1, code)
		}
	}
	if code := signin(); code != http.StatusTooManyRequests {
		t.Fatalf("a sign-in after the budget was spent: HTTP %d, want 429", code)
	}
	if code := token(); code != http.StatusTooManyRequests {
		t.Fatalf("a token request after the budget was spent: HTTP %d, want 429", code)
	}
}
