package admin_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestAChangeWhosePrimaryWasDemotedIsUnconfirmed: a Redis primary made a replica (REPLICAOF, as
// an operator or a hosted service's failover sends it) while a change waits for its replicas
// ends the wait with an error. The change was made on it and no replica confirmed it: the
// answer is the 503 "unconfirmed" that says so, not a 500.
func TestAChangeWhosePrimaryWasDemotedIsUnconfirmed(t *testing.T) {
	s := newStack(t, "redis", stackOptions{ConfirmReplicas: true})
	s.account("alice")
	keys, err := s.admin.ListKeys(t.Context(), "alice")
	s.must(err)

	s.replica.Pause()
	defer s.replica.Resume()
	type answer struct {
		status int
		body   map[string]string
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("DELETE", s.server.URL+admin.Prefix+"/keys/"+keys[0].ID, nil)
		req.Header.Set("Authorization", "Bearer "+s.rootKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- answer{0, map[string]string{"error": err.Error()}}
			return
		}
		defer resp.Body.Close()
		var body map[string]string
		json.NewDecoder(resp.Body).Decode(&body)
		answered <- answer{resp.StatusCode, body}
	}()
	c := s.primary.Client()
	deadline := time.Now().Add(2 * time.Second) // the store's confirm_timeout
	for {
		info, err := c.Info(t.Context(), "clients").Result()
		s.must(err)
		if strings.Contains(info, "blocked_clients:1") {
			break // the revocation was made, its WAIT waits
		}
		if time.Now().After(deadline) {
			t.Fatal("the revocation does not wait for the paused replica")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.must(c.Do(t.Context(), "REPLICAOF", "127.0.0.1", strconv.Itoa(s.replica.Port())).Err())
	a := <-answered
	if a.status != http.StatusServiceUnavailable || a.body["code"] != "unconfirmed" || !strings.Contains(a.body["error"], "may be lost") {
		t.Fatalf("revocation whose primary was made a replica while it waited: %d %v, want 503 unconfirmed saying the change may be lost", a.status, a.body)
	}
}
