package e2e

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	disttoken "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/tokens"
)

// client pushes and pulls one image as one account, the way a user's registry client does.
type client interface {
	name() string
	push(t *testing.T, ref, user, key string) result
	pull(t *testing.T, ref, user, key string) result
}

type crane struct{ bin, layer string }

func (c crane) name() string { return "crane" }

// login stores credentials in a per-user config, as `crane auth login` does for a person.
func (c crane) env(t *testing.T, registry, user, key string) []string {
	cfg := filepath.Join(t.TempDir(), "docker-config")
	env := []string{"DOCKER_CONFIG=" + cfg}
	must(t, env, c.bin, "auth", "login", registry, "-u", user, "-p", key)
	return env
}

func (c crane) push(t *testing.T, ref, user, key string) result {
	return run(t, c.env(t, strings.Split(ref, "/")[0], user, key), c.bin, "append", "-f", c.layer, "-t", ref)
}

func (c crane) pull(t *testing.T, ref, user, key string) result {
	return run(t, c.env(t, strings.Split(ref, "/")[0], user, key), c.bin, "pull", ref, filepath.Join(t.TempDir(), "image.tar"))
}

type oras struct{ bin, file string }

func (o oras) name() string { return "oras" }

func (o oras) push(t *testing.T, ref, user, key string) result {
	// A relative file name, as a person would push it: oras refuses absolute paths on pull.
	return runIn(t, filepath.Dir(o.file), nil, o.bin, "push", "--plain-http", "-u", user, "-p", key, ref+":v1", filepath.Base(o.file))
}

func (o oras) pull(t *testing.T, ref, user, key string) result {
	return run(t, nil, o.bin, "pull", "--plain-http", "-u", user, "-p", key, "-o", t.TempDir(), ref+":v1")
}

// TestStory is the core story: accounts, grants decided by Rego, tokens with exactly the
// intersection, a real registry enforcing them, a purchase and a revocation — per client.
func TestStory(t *testing.T) {
	clients := map[string]func(t *testing.T) client{
		"crane": func(t *testing.T) client { return crane{bin: tool(t, "crane"), layer: layerTar(t, "story")} },
		"oras": func(t *testing.T) client {
			f := filepath.Join(t.TempDir(), "artifact.txt")
			os.WriteFile(f, []byte("story"), 0o644)
			return oras{bin: tool(t, "oras"), file: f}
		},
	}
	for name, mk := range clients {
		t.Run(name, func(t *testing.T) {
			c := mk(t)
			d := startDev(t, "")
			user1, user2 := d.account(t, "user1"), d.account(t, "user2")
			d.cli(t, d.AdminKey, "grants", "add", "--account", "user1", "--repo", "image", "--actions", "pull")
			d.cli(t, d.AdminKey, "grants", "add", "--account", "user1", "--repo", "image2", "--actions", "push")
			d.cli(t, d.AdminKey, "grants", "add", "--account", "user1", "--repo", "image2", "--actions", "pull")

			access := d.tokenAccess(t, "user1", user1, "repository:image:push,pull")
			want := []tokens.Access{{Type: "repository", Name: "image", Actions: []string{"pull"}}}
			if !reflect.DeepEqual(access, want) {
				t.Fatalf("user1's token for image push,pull carries %+v, want %+v", access, want)
			}

			image, image2 := d.Registry+"/image", d.Registry+"/image2"
			if r := c.push(t, image2, "user1", user1); r.code != 0 {
				t.Fatalf("%s: user1 pushing image2 was refused:\n%s", c.name(), r.out)
			}
			if r := c.push(t, image, "user1", user1); r.code == 0 {
				t.Fatalf("%s: user1 pushed image, which it may only pull", c.name())
			}
			if r := c.pull(t, image2, "user2", user2); r.code == 0 {
				t.Fatalf("%s: user2 pulled image2 before buying it", c.name())
			}
			d.cli(t, d.AdminKey, "grants", "add", "--account", "user2", "--repo", "image2", "--actions", "pull") // the purchase
			if r := c.pull(t, image2, "user2", user2); r.code != 0 {
				t.Fatalf("%s: user2 could not pull image2 after the purchase:\n%s", c.name(), r.out)
			}
			d.cli(t, d.AdminKey, "keys", "revoke", keyID(user2))
			if r := c.pull(t, image2, "user2", user2); r.code == 0 {
				t.Fatalf("%s: user2 pulled with a revoked key", c.name())
			}
			for _, pass := range []string{user1 + "x", "wrong", ""} {
				d.wantUnauthorized(t, "user1", pass)
			}
		})
	}
}

func keyID(key string) string { return strings.Split(key, "_")[1] }

// tokenAccess asks the running token server for a token and verifies it with distribution's own
// token code against the certificate regoauth dev generated, returning its access claim.
func (d *devStack) tokenAccess(t *testing.T, user, key string, scopes ...string) []tokens.Access {
	t.Helper()
	q := url.Values{"service": {d.Registry}, "scope": scopes}
	req, _ := http.NewRequest("GET", "http://"+d.Token+"/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		t.Fatalf("token request: HTTP %d", resp.StatusCode)
	}
	certPEM, err := os.ReadFile(filepath.Join(d.Data, "signing-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := tokens.ParseCertificatesPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[0])
	tk, err := disttoken.NewToken(body.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := tk.Verify(disttoken.VerifyOptions{TrustedIssuers: []string{"regoauth-dev"}, AcceptedAudiences: []string{d.Registry}, Roots: roots})
	if err != nil {
		t.Fatalf("distribution rejected the token: %v", err)
	}
	out := []tokens.Access{}
	for _, a := range claims.Access {
		out = append(out, tokens.Access{Type: a.Type, Class: a.Class, Name: a.Name, Actions: a.Actions})
	}
	return out
}

// wantUnauthorized checks that user:pass gets a 401 with a JSON error and no token.
func (d *devStack) wantUnauthorized(t *testing.T, user, pass string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+d.Token+"/token?service="+url.QueryEscape(d.Registry)+"&scope=repository:image:pull", nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/json" ||
		json.NewDecoder(resp.Body).Decode(&body) != nil || body["token"] != nil || body["errors"] == nil {
		t.Fatalf("%s:%q got HTTP %d %s %v, want a 401 JSON error", user, pass, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestDevRestartKeepsEverything stops regoauth dev and starts it again on the same folder.
func TestDevRestartKeepsEverything(t *testing.T) {
	c := crane{bin: tool(t, "crane"), layer: layerTar(t, "kept")}
	data := t.TempDir()
	d := startDev(t, data)
	key := d.account(t, "keeper")
	d.cli(t, d.AdminKey, "grants", "add", "--account", "keeper", "--repo", "keeper/*", "--actions", "pull,push")
	if r := c.push(t, d.Registry+"/keeper/app", "keeper", key); r.code != 0 {
		t.Fatalf("push: %s", r.out)
	}
	adminKey := d.AdminKey
	d.Stop(t)

	info, err := os.Stat(filepath.Join(data, "admin.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key: %v, mode %v; want 0600", err, info.Mode().Perm())
	}
	d = startDev(t, data)
	if d.AdminKey != adminKey {
		t.Fatal("a restart replaced the admin key")
	}
	if out := d.cli(t, d.AdminKey, "grants", "list", "--account", "keeper"); !strings.Contains(out, "keeper/*") {
		t.Fatalf("grants after restart:\n%s", out)
	}
	if r := c.pull(t, d.Registry+"/keeper/app", "keeper", key); r.code != 0 {
		t.Fatalf("the image or the key did not survive a restart:\n%s", r.out)
	}
}
