package admin_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/tokens"
)

// TestOnlyAPIKeysOpenTheAdminAPI: what a client holds besides its API key — the registry token
// GET /token gave it, or a refresh token — is no admin credential, even when it is valid and
// names the key's own account and id. A stolen registry token or refresh token opens nothing on
// the admin API (nor, through it, the console's operations). Run on bolt and Redis.
func TestOnlyAPIKeysOpenTheAdminAPI(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		s := newStack(t, backend, stackOptions{})
		key := s.role("boss", "admin")
		id, _ := keystore.ParseAPIKey(key)
		if _, err := s.client(key).ListAccounts(t.Context()); err != nil {
			t.Fatalf("the admin's own key: %v", err)
		}

		code, body := s.token("boss", key, "repository:app:pull")
		if code != http.StatusOK || body.Token == "" {
			t.Fatalf("token request: HTTP %d %+v", code, body)
		}
		codec, err := tokens.NewRefreshCodec([][]byte{bytes.Repeat([]byte("r"), 32)}, time.Hour, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		refresh, err := codec.Issue("boss", id, service)
		if err != nil {
			t.Fatal(err)
		}
		for name, credential := range map[string]string{"registry token": body.Token, "refresh token": refresh} {
			t.Run(name, func(t *testing.T) {
				_, err := s.client(credential).ListAccounts(t.Context())
				if status(err) != http.StatusUnauthorized {
					t.Fatalf("as a bearer credential: %v, want HTTP 401", err)
				}
				req, _ := http.NewRequestWithContext(t.Context(), "GET", s.server.URL+admin.Prefix+"/accounts", nil)
				req.SetBasicAuth("boss", credential)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("as a Basic password: HTTP %d, want 401", resp.StatusCode)
				}
			})
		}
	})
}
