package authz

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/authz/input"
	"github.com/regoauth/regoauth/tokens"
)

// parser is a Handler with only what parsing reads.
func parser(withRefresh bool) *Handler {
	h := &Handler{opts: Options{Services: []string{"registry.example.com", "other.example.com"}, MaxScopes: input.DefaultMaxScopes, MaxScopeLength: input.DefaultMaxScopeLength}}
	if withRefresh {
		h.refresh = noRefresh{}
	}
	return h
}

type noRefresh struct{}

func (noRefresh) Issue(string, string, string) (string, error) { return "", errors.New("unused") }
func (noRefresh) Verify(string) (tokens.RefreshClaims, error) {
	return tokens.RefreshClaims{}, errors.New("unused")
}

// checkParsed holds for every request the parser accepts or refuses: a refusal is a client
// error (4xx), never a 5xx; an accepted request names a configured service and at most
// MaxScopes scopes; it is anonymous exactly when it carries no credentials at all.
func checkParsed(t *testing.T, h *Handler, req request, err error) {
	t.Helper()
	if err != nil {
		if p := classify(err); p.status < 400 || p.status >= 500 {
			t.Fatalf("parse error %v is answered %d", err, p.status)
		}
		return
	}
	if req.service != "registry.example.com" && req.service != "other.example.com" {
		t.Fatalf("service %q is not configured", req.service)
	}
	if len(req.scopes) > h.opts.MaxScopes {
		t.Fatalf("%d scopes passed a limit of %d", len(req.scopes), h.opts.MaxScopes)
	}
	if req.anonymous && (req.username != "" || req.password != "" || req.refreshToken != "") {
		t.Fatalf("anonymous request with credentials: %+v", req)
	}
	if req.password != "" && req.refreshToken != "" {
		t.Fatalf("both a password and a refresh token: %+v", req)
	}
	if req.refreshToken != "" && !tokens.IsRefreshToken(req.refreshToken) && req.method == "GET" {
		t.Fatalf("GET took %q for a refresh token", req.refreshToken)
	}
}

// FuzzParseCredentials is the GET form: query and Authorization header, Basic credentials
// with an API key, and containerd's ":<refresh token>" fallback.
func FuzzParseCredentials(f *testing.F) {
	basic := func(user, pass string) string {
		r := httptest.NewRequest("GET", "/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header.Get("Authorization")
	}
	key := "rak_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52)
	for _, s := range []struct{ query, auth, user, pass string }{
		{"service=registry.example.com&scope=repository:a/b:pull", basic("alice", key), "alice", key},
		{"scope=repository:a:pull,push&scope=repository:b:pull", "", "", ""},
		{"service=other.example.com&offline_token=true&client_id=docker", basic("", "rrt_abc.def"), "", "rrt_abc.def"},
		{"service=nope", "Basic " + "!!!", "a:b", "c"},
		{"account=alice", "Bearer " + key, "alice:x", key},
		{"", "Basic", "", ""},
		{"scope=" + strings.Repeat("repository:a:pull+", 40), basic("a", "b"), "a", "b"},
	} {
		f.Add(s.query, s.auth, s.user, s.pass)
	}
	h := parser(true)
	f.Fuzz(func(t *testing.T, query, auth, user, pass string) {
		// The header as the client sent it.
		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/token", RawQuery: query}, Header: http.Header{}}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		req, err := h.parse(httptest.NewRecorder(), r)
		checkParsed(t, h, req, err)
		if err == nil && req.anonymous != (auth == "") {
			t.Fatalf("Authorization %q: anonymous = %v", auth, req.anonymous)
		}

		// Basic credentials as a client encodes them come back unchanged, unless the user
		// holds a colon, which Basic cannot carry.
		r = &http.Request{Method: "GET", URL: &url.URL{Path: "/token", RawQuery: query}, Header: http.Header{}}
		r.SetBasicAuth(user, pass)
		req, err = h.parse(httptest.NewRecorder(), r)
		checkParsed(t, h, req, err)
		if err != nil || strings.Contains(user, ":") {
			return
		}
		if req.anonymous || req.username != user {
			t.Fatalf("Basic %q:%q parsed as user %q (anonymous %v)", user, pass, req.username, req.anonymous)
		}
		if tokens.IsRefreshToken(pass) {
			if req.refreshToken != pass || req.password != "" {
				t.Fatalf("containerd's refresh token %q parsed as %+v", pass, req)
			}
		} else if req.password != pass || req.refreshToken != "" {
			t.Fatalf("password %q parsed as %+v", pass, req)
		}
	})
}

// FuzzParseForm is the POST form (OAuth 2 password and refresh_token grants), with any body
// and content type: a refusal is a 4xx, a body beyond MaxFormBytes is 413, and the grant read
// is the one the form names.
func FuzzParseForm(f *testing.F) {
	for _, s := range []struct {
		body        string
		contentType string
	}{
		{"grant_type=password&username=alice&password=rak_x&service=registry.example.com&scope=repository:a:pull&client_id=docker", "application/x-www-form-urlencoded"},
		{"grant_type=refresh_token&refresh_token=rrt_a.b&service=registry.example.com&access_type=offline", "application/x-www-form-urlencoded"},
		{"grant_type=refresh_token", "application/x-www-form-urlencoded; charset=utf-8"},
		{"grant_type=client_credentials", "application/x-www-form-urlencoded"},
		{"grant_type=password&grant_type=refresh_token", "application/x-www-form-urlencoded"},
		{"%zz", "application/x-www-form-urlencoded"},
		{"{}", "application/json"},
		{"--b\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\npassword\r\n--b--", "multipart/form-data; boundary=b"},
		{"grant_type=password", ""},
		{"a=b", "text/plain; charset="},
	} {
		f.Add([]byte(s.body), s.contentType, false)
	}
	f.Add(bytes.Repeat([]byte("a"), MaxFormBytes+1), "application/x-www-form-urlencoded", true)
	f.Fuzz(func(t *testing.T, body []byte, contentType string, withRefresh bool) {
		h := parser(withRefresh)
		r := httptest.NewRequest("POST", "/token", bytes.NewReader(body))
		r.Header.Del("Content-Type")
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		req, err := h.parse(httptest.NewRecorder(), r)
		checkParsed(t, h, req, err)
		if len(body) > MaxFormBytes && err == nil {
			t.Fatalf("a body of %d bytes was parsed", len(body))
		}
		if err != nil {
			return
		}
		form := r.PostForm
		switch gt := form.Get("grant_type"); gt {
		case "password":
			if req.username != form.Get("username") || req.password != form.Get("password") || req.refreshToken != "" {
				t.Fatalf("password grant parsed as %+v", req)
			}
		case "refresh_token":
			if !withRefresh || req.refreshToken == "" || req.refreshToken != form.Get("refresh_token") || req.password != "" {
				t.Fatalf("refresh grant (enabled %v) parsed as %+v", withRefresh, req)
			}
		default:
			t.Fatalf("grant_type %q was accepted", gt)
		}
		if req.anonymous || !req.oauth {
			t.Fatalf("a POST parsed as anonymous or not OAuth: %+v", req)
		}
	})
}
