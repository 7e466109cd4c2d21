package admin_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/admin"
)

// TestUnconfirmedChangesAreSaidSo: with confirm_replicas, a change the Redis replica did not
// confirm in time is a JSON 503 with code "unconfirmed" that says the change may be lost, not a
// 200 an administrator would trust. The change was made on the primary (the revoked key gets no
// token), and once the replica answers again, the same request is confirmed.
func TestUnconfirmedChangesAreSaidSo(t *testing.T) {
	s := newStack(t, "redis", stackOptions{ConfirmReplicas: true})
	aliceKey := s.account("alice")
	keys, err := s.admin.ListKeys(t.Context(), "alice")
	s.must(err)
	id := keys[0].ID

	send := func(method, path, body string) (int, map[string]string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.server.URL+admin.Prefix+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.rootKey)
		resp, err := http.DefaultClient.Do(req)
		s.must(err)
		defer resp.Body.Close()
		var out map[string]string
		if resp.StatusCode >= 400 {
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("%s %s: %d with Content-Type %q", method, path, resp.StatusCode, ct)
			}
			s.must(json.NewDecoder(resp.Body).Decode(&out))
		}
		return resp.StatusCode, out
	}

	s.replica.Pause()
	status, body := send("DELETE", "/keys/"+id, "")
	if status != http.StatusServiceUnavailable || body["code"] != "unconfirmed" || !strings.Contains(body["error"], "may be lost") {
		t.Fatalf("revocation the replica did not confirm: %d %v, want 503 unconfirmed saying the change may be lost", status, body)
	}
	if status, _ := s.token("alice", aliceKey, "repository:alice/app:pull"); status != http.StatusUnauthorized {
		t.Fatalf("token request with the revoked key: %d, want 401", status)
	}
	status, body = send("POST", "/grants", `{"account": "alice", "repository": "shop/app", "actions": ["pull"]}`)
	if status != http.StatusServiceUnavailable || body["code"] != "unconfirmed" {
		t.Fatalf("grant the replica did not confirm: %d %v", status, body)
	}

	s.replica.Resume()
	if status, body := send("DELETE", "/keys/"+id, ""); status != http.StatusOK {
		t.Fatalf("the revocation repeated with the replica answering: %d %v", status, body)
	}
}
