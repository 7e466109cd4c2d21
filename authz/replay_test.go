package authz_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/authz/input"
	"github.com/regoauth/regoauth/tokens"
)

// observed is one token request a real client sent (testdata/observed-token-requests.jsonl:
// crane, oras, regctl, skopeo and docker logging in, pushing, pulling, mounting across
// repositories, being refused and using a stored identity token).
type observed struct {
	Client      string              `json:"client"`
	UserAgent   string              `json:"user_agent"`
	Method      string              `json:"method"`
	Query       map[string][]string `json:"query"`
	Form        map[string][]string `json:"form"`
	ContentType string              `json:"content_type"`
	BasicUser   string              `json:"basic_auth_user"`
}

// replayGrants are exact names, so the expected access of every request is a lookup.
var replayGrants = map[string]map[string][]string{
	"alice": {
		"foo/bar": {"pull"}, "foo/baz": {"pull", "push"},
		"oras/art": {"pull", "push"}, "oras/copied": {"pull", "push"},
		"reg/art": {"pull", "push"}, "reg/copied": {"pull", "push"},
		"sk/pushed": {"pull", "push"}, "sk/copied": {"pull", "push"},
		"ms/crane": {"pull", "push"}, "ms/oras": {"pull", "push"}, "ms/skopeo": {"pull", "push"}, "ms/regctl": {"pull", "push"},
	},
	"pullonly": {"foo/bar": {"pull"}, "sk/copied": {"pull"}, "sk/pushed": {"pull"}},
}

// TestReplayObservedRequests replays every recorded request: each must parse, and with the
// right credentials yield a 200 whose token carries exactly requested ∩ granted.
func TestReplayObservedRequests(t *testing.T) {
	e := newEnv(t)
	e.account("alice")
	e.account("pullonly")
	for user, repos := range replayGrants {
		for repo, actions := range repos {
			e.Grant(user, repo, actions...)
		}
	}
	refresh := e.login("alice", e.keys["alice"])

	f, err := os.Open("testdata/observed-token-requests.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	n := 0
	for lines.Scan() {
		var o observed
		if err := json.Unmarshal(lines.Bytes(), &o); err != nil {
			t.Fatal(err)
		}
		n++
		t.Run(strings.Join([]string{o.Client, o.Method, o.BasicUser}, "_"), func(t *testing.T) {
			r, user := o.request(e, refresh)
			res := e.do(r)
			got := e.access(res)

			values := o.Query["scope"]
			if o.Method == "POST" {
				values = o.Form["scope"]
			}
			requested, err := input.ParseScopes(values, input.DefaultMaxScopes, input.DefaultMaxScopeLength)
			if err != nil {
				t.Fatal(err)
			}
			want := []tokens.Access{}
			for _, s := range requested {
				granted := []string{}
				for _, a := range s.Actions {
					if slices.Contains(replayGrants[user][s.Name], a) {
						granted = append(granted, a)
					}
				}
				want = append(want, tokens.Access{Type: s.Type, Name: s.Name, Actions: granted})
			}
			wantAccess(t, got, want...)
			if o.Query["offline_token"] != nil && res.body["refresh_token"] == nil {
				t.Fatal("login probe with offline_token=true got no refresh token")
			}
		})
	}
	if n < 50 {
		t.Fatalf("replayed only %d requests", n)
	}
}

// request rebuilds the recorded request with real credentials, returning it and the account
// it acts as.
func (o observed) request(e *env, refresh string) (*http.Request, string) {
	var r *http.Request
	user := o.BasicUser
	if o.Method == "POST" {
		form := url.Values(o.Form)
		if form.Get("refresh_token") != "" {
			form.Set("refresh_token", refresh)
			user = "alice"
		}
		r = httptest.NewRequest("POST", "/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", o.ContentType)
	} else {
		r = httptest.NewRequest("GET", "/token?"+url.Values(o.Query).Encode(), nil)
	}
	if o.BasicUser != "" {
		r.SetBasicAuth(o.BasicUser, e.keys[o.BasicUser])
	}
	r.Header.Set("User-Agent", o.UserAgent)
	return r, user
}
