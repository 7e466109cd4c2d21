package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

// bodyRoutes are the admin endpoints that read a request body.
var bodyRoutes = []struct{ method, path string }{
	{"POST", "/accounts"}, {"PATCH", "/accounts/sam"}, {"POST", "/keys"}, {"POST", "/grants"},
	{"DELETE", "/grants"}, {"POST", "/repositories"}, {"POST", "/policy/explain"},
}

// send makes one admin request as key with a raw body and returns its status and decoded
// body when it is an object, failing the test unless the answer is JSON.
func (s *stack) send(key, method, path, body string) (int, map[string]any) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), method, s.server.URL+"/admin/v1"+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out any
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" || json.Unmarshal(raw, &out) != nil {
		s.t.Fatalf("%s %s %.80q: HTTP %d, %s %.200q is no JSON", method, path, body, resp.StatusCode, ct, raw)
	}
	obj, _ := out.(map[string]any) // nil for a listing
	return resp.StatusCode, obj
}

// Every endpoint that reads a body takes one JSON object in valid UTF-8, each name once, and
// nothing else: anything else is 400 invalid with a message saying what is wrong, and changes
// nothing. encoding/json alone would read {"name":"a","name":"b"} as b (a proxy or a log reads
// a), store "\xff" as U+FFFD (another name than the one sent) and null as an empty request.
func TestMalformedBodiesAreRefused(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{})
		s.account("sam")
		before := take(t, s.store)
		for _, tt := range []struct{ name, body, want string }{
			{"empty", "", "request body is empty"},
			{"null", "null", "a JSON object is required"},
			{"array", `[{"name":"eve"}]`, "a JSON object is required"},
			{"string", `"eve"`, "a JSON object is required"},
			{"not JSON", `name=eve`, "a JSON object is required"},
			{"a name twice", `{"name":"eve","account":"sam","account":"root","repository":"r","repository":"x"}`, "duplicate object member name"},
			{"a name twice, nested", `{"account":"sam","restrictions":{"actions":["pull"],"actions":[]}}`, "duplicate object member name"},
			{"invalid UTF-8", "{\"name\":\"ev\xffe\",\"account\":\"sam\",\"repository\":\"r\xff\"}", "invalid UTF-8"},
			{"lone surrogate", `{"name":"\ud800","account":"\ud800","repository":"\ud800"}`, "invalid surrogate"},
			{"cut short", `{"name":"eve"`, "unexpected EOF"},
			{"two values", `{} {}`, "more than one JSON value"},
			{"unknown field", `{"nonesuch":"x"}`, `unknown field "nonesuch"`},
			{"too large", `{"name":"` + strings.Repeat("a", 70<<10) + `"}`, "request body over 65536 bytes"},
			{"deeply nested", strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000), ""},
		} {
			for _, rt := range bodyRoutes {
				status, body := s.send(s.rootKey, rt.method, rt.path, tt.body)
				msg, _ := body["error"].(string)
				if status != http.StatusBadRequest || body["code"] != "invalid" || !strings.Contains(msg, tt.want) {
					t.Errorf("%s: %s %s: HTTP %d %v, want 400 invalid saying %q", tt.name, rt.method, rt.path, status, body, tt.want)
				}
			}
		}
		// A value of the wrong type, in each body.
		for _, rt := range []struct{ method, path, body string }{
			{"POST", "/accounts", `{"name":7}`}, {"PATCH", "/accounts/sam", `{"disabled":"yes"}`},
			{"POST", "/keys", `{"expires_in":30}`}, {"POST", "/grants", `{"account":"sam","repository":"r","actions":"pull"}`},
			{"DELETE", "/grants", `{"account":["sam"]}`}, {"POST", "/repositories", `{"repository":{}}`},
			{"POST", "/policy/explain", `{"account":"sam","scopes":"repository:r:pull"}`},
		} {
			status, body := s.send(s.rootKey, rt.method, rt.path, rt.body)
			if msg, _ := body["error"].(string); status != http.StatusBadRequest || !strings.Contains(msg, "cannot unmarshal") {
				t.Errorf("%s %s %s: HTTP %d %v, want 400 saying what cannot be read", rt.method, rt.path, rt.body, status, body)
			}
		}
		if after := take(t, s.store); !after.same(before) {
			t.Fatalf("refused requests changed the store:\n%+v\n%+v", before, after)
		}
	})
}

// snapshot is what the store holds, for comparing before and after.
type snapshot struct {
	accounts, keys, grants, owned int
	names                         string
}

func take(t *testing.T, s keystore.Store) snapshot {
	t.Helper()
	accounts, err1 := s.ListAccounts(t.Context())
	keys, err2 := s.ListKeys(t.Context(), "")
	grants, err3 := s.ListGrants(t.Context(), keystore.GrantFilter{})
	owned, err4 := s.ListOwnership(t.Context(), "")
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for _, a := range accounts {
		names = append(names, a.Name+"/"+strings.Join(a.Groups, ",")+"/"+strings.Join(a.Roles, ","))
	}
	for _, k := range keys {
		names = append(names, k.ID+"/"+k.Name)
	}
	return snapshot{len(accounts), len(keys), len(grants), len(owned), strings.Join(names, " ")}
}

func (a snapshot) same(b snapshot) bool { return a == b }

// FuzzRequestBodies sends arbitrary bodies to every endpoint that reads one, as an admin: the
// answer is always JSON, never a 5xx, and a refusal says why. `go test` runs the seeds;
// `go test -fuzz FuzzRequestBodies ./admin` explores.
func FuzzRequestBodies(f *testing.F) {
	s := newStack(f, "bolt", stackOptions{})
	s.account("sam")
	for _, seed := range []string{
		"", "null", "{}", `{"name":"eve","groups":["a"],"roles":["b"]}`, `{"name":"a","name":"b"}`, "{\"name\":\"\xff\"}",
		`{"account":"sam","name":"ci","expires_in":"30d","restrictions":{"actions":["pull"],"repositories":["a/*"],"cidrs":["10.0.0.0/8"]}}`,
		`{"account":"sam","repository":"shop/app","actions":["pull"],"expires":"2030-01-01T00:00:00Z"}`,
		`{"account":"sam","repository":"shop/app","actions":["pull"],"expires":"0000-01-01T00:00:00Z"}`,
		`{"account":"sam","repository":"shop/app","actions":["pull"],"expires_in":"-1s"}`,
		`{"repository":"shop/app","owner":"sam"}`, `{"groups":null,"disabled":true}`,
		`{"account":"sam","scopes":["repository:shop/app:pull,push"],"client_ip":"10.0.0.1"}`,
		strings.Repeat("[", 1000),
	} {
		for i := range bodyRoutes {
			f.Add(uint8(i), seed)
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		rt := bodyRoutes[int(route)%len(bodyRoutes)]
		req, err := http.NewRequestWithContext(t.Context(), rt.method, s.server.URL+"/admin/v1"+rt.path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+s.rootKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("%s %s %q: HTTP %d, no JSON object: %q", rt.method, rt.path, body, resp.StatusCode, raw)
		}
		if msg, _ := out["error"].(string); resp.StatusCode >= 500 || resp.StatusCode >= 400 && msg == "" {
			t.Fatalf("%s %s %q: HTTP %d %s", rt.method, rt.path, body, resp.StatusCode, raw)
		}
	})
}

// A query is read as sent or refused: a parameter the endpoint does not read (a misspelt
// ?acount=sam would list every account's keys to an admin; ?limit=-1 pages nothing), one
// given twice (the endpoint would read the first, a proxy or a log the last), or one that is
// not URL-encoded is 400 invalid naming it.
func TestQueriesAreReadAsSent(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{})
		sam := s.account("sam")
		for _, tt := range []struct{ key, path, want string }{
			{s.rootKey, "/keys?acount=sam", `query parameter "acount": this endpoint takes account`},
			{sam, "/keys?account=sam&account=root", `query parameter "account" is given 2 times`},
			{s.rootKey, "/grants?account=sam&repository=a&repository=b", `query parameter "repository" is given 2 times`},
			{s.rootKey, "/grants?subject=sam", `this endpoint takes account, group, repository`},
			{s.rootKey, "/repositories?owner=sam&limit=-1", `query parameter "limit"`},
			{s.rootKey, "/accounts?offset=abc", `query parameter "offset": this endpoint takes none`},
			{s.rootKey, "/whoami?x=1", `query parameter "x": this endpoint takes none`},
			{s.rootKey, "/keys?account=%zz", "invalid URL escape"},
		} {
			status, body := s.send(tt.key, "GET", tt.path, "")
			if msg, _ := body["error"].(string); status != http.StatusBadRequest || body["code"] != "invalid" || !strings.Contains(msg, tt.want) {
				t.Errorf("GET %s: HTTP %d %v, want 400 invalid saying %q", tt.path, status, body, tt.want)
			}
		}
		for _, path := range []string{"/keys?account=sam", "/grants?account=sam&repository=shop/app", "/repositories?owner=sam", "/accounts", "/keys?account="} {
			if status, body := s.send(s.rootKey, "GET", path, ""); status != http.StatusOK {
				t.Errorf("GET %s: HTTP %d %v", path, status, body)
			}
		}
	})
}

// A method the path does not take is 405 as JSON, with the methods it takes in Allow.
func TestMethodNotAllowedSaysWhichAre(t *testing.T) {
	s := newStack(t, "bolt", stackOptions{})
	for _, tt := range []struct{ method, path, allow string }{
		{"PUT", "/accounts", "GET, POST"},
		{"POST", "/accounts/sam", "GET, PATCH"},
		{"GET", "/keys/abc", "DELETE"},
		{"PATCH", "/grants", "GET, POST, DELETE"},
		{"HEAD", "/whoami", "GET"},
		{"GET", "/policy/explain", "POST"},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tt.method, s.server.URL+"/admin/v1"+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+s.rootKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tt.allow || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: HTTP %d, Allow %q, %s; want 405, Allow %q, JSON", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Allow"), resp.Header.Get("Content-Type"), tt.allow)
		}
	}
}
