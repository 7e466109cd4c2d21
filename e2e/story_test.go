package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/keystore"
)

// TestStory is the core story on `regoauth dev`: accounts, grants decided by Rego, tokens with
// exactly the intersection, the registry enforcing them, a purchase and a revocation — per
// client. Every refusal is shown where it happened: the registry's own log refusing the token
// for insufficient scope, or the token server's audit log refusing the key.
func TestStory(t *testing.T) {
	t.Parallel()
	for _, client := range []string{"crane", "oras"} {
		t.Run(client, func(t *testing.T) {
			t.Parallel()
			d := startDev(t, "", "--log-level", "debug") // debug: the registry logs its requests
			reg := d.Registry
			user1, user2 := d.account(t, "user1"), d.account(t, "user2")
			d.admin(t, "grants", "add", "--account", "user1", "--repo", "image", "--actions", "pull")
			d.admin(t, "grants", "add", "--account", "user1", "--repo", "image2", "--actions", "push")
			d.admin(t, "grants", "add", "--account", "user1", "--repo", "image2", "--actions", "pull")

			if got := d.actions(t, "user1", user1, "repository:image:push,pull"); !slices.Equal(got, []string{"pull"}) {
				t.Fatalf("user1's token for image push,pull carries %v, want pull only", got)
			}

			seller := newSession(t, client, d, reg, "user1", user1)
			seller.login()
			if r := seller.steps.push(seller, "image2"); r.code != 0 {
				t.Fatalf("user1 pushing image2 was refused:\n%s", r.out)
			}
			_, digest, _ := reg.manifest(t, d, "image2", "1")

			refusedByRegistry := func(what, repo string, r result, since int) {
				t.Helper()
				if r.code == 0 {
					t.Fatalf("%s succeeded:\n%s", what, r.out)
				}
				if !reg.refused(since, repo, "insufficient scope") {
					t.Fatalf("%s: the registry refused nothing on %s for insufficient scope:\n%s\nregistry: %v", what, repo, r.out, reg.requests(since))
				}
			}
			since := reg.mark()
			refusedByRegistry("user1 pushing image, which it may only pull", "image", seller.steps.push(seller, "image"), since)

			buyer := newSession(t, client, d, reg, "user2", user2)
			buyer.login()
			since = reg.mark()
			r, _ := buyer.steps.pull(buyer, "image2")
			refusedByRegistry("user2 pulling image2 before buying it", "image2", r, since)

			d.admin(t, "grants", "add", "--account", "user2", "--repo", "image2", "--actions", "pull") // the purchase
			if r, p := buyer.steps.pull(buyer, "image2"); r.code != 0 || p.digest != digest || p.content != seller.pushed["image2"] {
				t.Fatalf("user2 after the purchase pulled %+v, want digest %s and %q:\n%s", p, digest, seller.pushed["image2"], r.out)
			}

			id, _ := keystore.ParseAPIKey(user2)
			d.admin(t, "keys", "revoke", id)
			auditMark, regMark := d.mark(), reg.mark()
			if r, _ := buyer.steps.pull(buyer, "image2"); r.code == 0 {
				t.Fatalf("user2 pulled with a revoked key:\n%s", r.out)
			}
			refusedKey := slices.ContainsFunc(d.audit(auditMark), func(rec logRecord) bool {
				return rec["status"] == "401" && rec["client_id"] != harnessClientID
			})
			served := slices.ContainsFunc(reg.requests(regMark), func(q registryRequest) bool {
				return strings.Contains(q.path, "/manifests/") && q.status == http.StatusOK
			})
			if !refusedKey || served {
				t.Fatalf("with a revoked key: the token server refused it %v, the registry served a manifest %v", refusedKey, served)
			}
			for _, pass := range []string{user1 + "x", "wrong", ""} {
				r := d.token(tokenRequest{user: "user1", key: pass, scopes: []string{"repository:image:pull"}})
				errs, _ := r.body["errors"].([]any)
				if r.status != http.StatusUnauthorized || r.body["token"] != nil || len(errs) == 0 {
					t.Fatalf("user1:%q got HTTP %d %s, want a 401 JSON error", pass, r.status, r.raw)
				}
			}
		})
	}
}

// TestDevRestartKeepsEverything stops regoauth dev and starts it again on the same folder.
func TestDevRestartKeepsEverything(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	d := startDev(t, data)
	key := d.account(t, "keeper")
	d.admin(t, "grants", "add", "--account", "keeper", "--repo", "keeper/*", "--actions", "pull,push")
	s := newSession(t, "crane", d, d.Registry, "keeper", key)
	s.login()
	if r := s.steps.push(s, "keeper/app"); r.code != 0 {
		t.Fatalf("push: %s", r.out)
	}
	_, digest, _ := d.Registry.manifest(t, d, "keeper/app", "1")
	pushed, adminKey := s.pushed["keeper/app"], d.AdminKey
	d.stop(t)

	if info, err := os.Stat(filepath.Join(data, "admin.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key: %v, want mode 0600", err)
	}
	d = startDev(t, data)
	if d.AdminKey != adminKey {
		t.Fatal("a restart replaced the admin key")
	}
	if out := d.admin(t, "grants", "list", "--account", "keeper"); !strings.Contains(out, "keeper/*") {
		t.Fatalf("grants after restart:\n%s", out)
	}
	// The same client, at the restarted registry: a new port, the same image and key.
	s = newSession(t, "crane", d, d.Registry, "keeper", key)
	s.login()
	if r, p := s.steps.pull(s, "keeper/app"); r.code != 0 || p.digest != digest || p.content != pushed {
		t.Fatalf("the image or the key did not survive a restart (pulled %+v, want %s and %q):\n%s", p, digest, pushed, r.out)
	}
}
