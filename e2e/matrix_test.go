package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The compatibility matrix: every client against every registry, through `regoauth serve`.
// Each cell is a step a user takes; a failure names the registry, the client and the step. The
// README's table is generated from this run (REGOAUTH_UPDATE_MATRIX=1) and, in CI, checked
// against it, so the README claims exactly what is proven.

var steps = []string{"login", "push", "pull", "refused push", "cross-repo mount", "delete", "refresh token"}

// mx is one client against one registry.
type mx struct {
	t      *testing.T
	srv    *tokenServer
	reg    registry
	client string
	key    string // alice's API key
	home   string // HOME and config folders of this client
	layer  string // a layer tarball
	file   string // an artifact file
}

// refusedRepo is where the client's refused push goes (helm adds the chart name).
func (m *mx) refusedRepo() string {
	if m.client == "helm" {
		return "shared/helm/hello"
	}
	return "shared/" + m.client
}

func (m *mx) env() []string {
	// skopeo is always given --authfile auth.json (relative to home, its working directory).
	return []string{"HOME=" + m.home, "DOCKER_CONFIG=" + filepath.Join(m.home, ".docker"), "XDG_RUNTIME_DIR=" + m.home}
}

func (m *mx) ref(repo string) string { return m.reg.Addr + "/" + repo + ":1" }

func (m *mx) run(name string, args ...string) result {
	return runIn(m.t, m.home, m.env(), name, args...)
}

// writeIdentityToken stores a refresh token exactly as docker login does, in a fresh home:
// the account name with an empty password, and the token.
func (m *mx) writeIdentityToken(user, token string) {
	m.home = m.t.TempDir()
	entry := map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":")), "identitytoken": token}
	cfg := map[string]any{"auths": map[string]any{m.reg.Addr: entry}}
	raw, _ := json.Marshal(cfg)
	os.MkdirAll(filepath.Join(m.home, ".docker"), 0o700)
	for _, p := range []string{filepath.Join(m.home, ".docker", "config.json"), filepath.Join(m.home, "auth.json")} {
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			m.t.Fatal(err)
		}
	}
}

// clientSteps is how one client performs each step; a nil step is not something it can do.
type clientSteps struct {
	login, push, pull, refusedPush, mount, delete, refresh func(m *mx) result
}

func matrixClients(t *testing.T) map[string]clientSteps {
	crane := func() string { return tool(t, "crane") }
	oras := func() string { return tool(t, "oras") }
	regctl := func() string { return tool(t, "regctl") }
	skopeo := func() string { return tool(t, "skopeo") }
	docker := func() string { return tool(t, "docker") }
	helm := func() string { return tool(t, "helm") }
	helmChart := func(m *mx) string {
		dir := filepath.Join(m.home, "hello")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte("apiVersion: v2\nname: hello\nversion: 0.1.0\n"), 0o644)
		m.run(helm(), "package", dir)
		return "hello-0.1.0.tgz"
	}
	return map[string]clientSteps{
		"helm": {
			login: func(m *mx) result {
				return m.run(helm(), "registry", "login", m.reg.Addr, "--insecure", "-u", "alice", "-p", m.key)
			},
			push: func(m *mx) result {
				return m.run(helm(), "push", helmChart(m), "oci://"+m.reg.Addr+"/m/helm", "--plain-http")
			},
			pull: func(m *mx) result {
				return m.run(helm(), "pull", "oci://"+m.reg.Addr+"/m/helm/hello", "--version", "0.1.0", "--plain-http")
			},
			refusedPush: func(m *mx) result {
				return m.run(helm(), "push", helmChart(m), "oci://"+m.reg.Addr+"/shared/helm", "--plain-http")
			},
			refresh: func(m *mx) result {
				return m.run(helm(), "pull", "oci://"+m.reg.Addr+"/m/helm/hello", "--version", "0.1.0", "--plain-http",
					"--registry-config", filepath.Join(m.home, ".docker", "config.json"))
			},
		},
		"crane": {
			login:       func(m *mx) result { return m.run(crane(), "auth", "login", m.reg.Addr, "-u", "alice", "-p", m.key) },
			push:        func(m *mx) result { return m.run(crane(), "append", "-f", m.layer, "-t", m.ref("m/crane/src")) },
			pull:        func(m *mx) result { return m.run(crane(), "pull", m.ref("m/crane/src"), "out.tar") },
			refusedPush: func(m *mx) result { return m.run(crane(), "append", "-f", m.layer, "-t", m.ref("shared/crane")) },
			mount:       func(m *mx) result { return m.run(crane(), "copy", m.ref("m/crane/src"), m.ref("m/crane/dst")) },
			delete: func(m *mx) result {
				d := m.run(crane(), "digest", m.ref("m/crane/dst"))
				if d.code != 0 {
					return d
				}
				return m.run(crane(), "delete", m.reg.Addr+"/m/crane/dst@"+strings.TrimSpace(d.out))
			},
			refresh: func(m *mx) result { return m.run(crane(), "pull", m.ref("m/crane/src"), "out.tar") },
		},
		"oras": {
			login: func(m *mx) result {
				return m.run(oras(), "login", "--plain-http", m.reg.Addr, "-u", "alice", "-p", m.key)
			},
			push: func(m *mx) result {
				os.WriteFile(filepath.Join(m.home, "artifact.txt"), []byte("oras"), 0o644)
				return m.run(oras(), "push", "--plain-http", m.ref("m/oras/src"), "artifact.txt")
			},
			pull: func(m *mx) result { return m.run(oras(), "pull", "--plain-http", "-o", "pulled", m.ref("m/oras/src")) },
			refusedPush: func(m *mx) result {
				return m.run(oras(), "push", "--plain-http", m.ref("shared/oras"), "artifact.txt")
			},
			mount: func(m *mx) result {
				return m.run(oras(), "cp", "--from-plain-http", "--to-plain-http", m.ref("m/oras/src"), m.ref("m/oras/dst"))
			},
			delete: func(m *mx) result {
				return m.run(oras(), "manifest", "delete", "--force", "--plain-http", m.ref("m/oras/dst"))
			},
			refresh: func(m *mx) result {
				return m.run(oras(), "pull", "--plain-http", "-o", "pulled", m.ref("m/oras/src"))
			},
		},
		"regctl": {
			login: func(m *mx) result {
				if r := m.run(regctl(), "registry", "set", m.reg.Addr, "--tls", "disabled"); r.code != 0 {
					return r
				}
				return m.run(regctl(), "registry", "login", m.reg.Addr, "-u", "alice", "-p", m.key)
			},
			push: func(m *mx) result {
				os.WriteFile(filepath.Join(m.home, "artifact.txt"), []byte("regctl"), 0o644)
				return m.run(regctl(), "artifact", "put", "--artifact-type", "application/vnd.regoauth.test", "-f", "artifact.txt", m.ref("m/regctl/src"))
			},
			pull: func(m *mx) result { return m.run(regctl(), "artifact", "get", m.ref("m/regctl/src")) },
			refusedPush: func(m *mx) result {
				return m.run(regctl(), "artifact", "put", "--artifact-type", "application/vnd.regoauth.test", "-f", "artifact.txt", m.ref("shared/regctl"))
			},
			mount: func(m *mx) result {
				return m.run(regctl(), "image", "copy", m.ref("m/regctl/src"), m.ref("m/regctl/dst"))
			},
			delete: func(m *mx) result { return m.run(regctl(), "tag", "delete", m.ref("m/regctl/dst")) },
			refresh: func(m *mx) result {
				if r := m.run(regctl(), "registry", "set", m.reg.Addr, "--tls", "disabled"); r.code != 0 {
					return r
				}
				return m.run(regctl(), "artifact", "get", m.ref("m/regctl/src"))
			},
		},
		"skopeo": {
			login: func(m *mx) result {
				return m.run(skopeo(), "login", "--authfile", "auth.json", "--tls-verify=false", m.reg.Addr, "-u", "alice", "-p", m.key)
			},
			push: func(m *mx) result {
				// A docker-archive image made locally by crane (no pull from outside).
				if r := m.run(crane(), "append", "-f", m.layer, "-t", "local/skopeo:1", "-o", "image.tar"); r.code != 0 {
					return r
				}
				return m.run(skopeo(), "copy", "--authfile", "auth.json", "--dest-tls-verify=false", "docker-archive:image.tar", "docker://"+m.ref("m/skopeo/src"))
			},
			pull: func(m *mx) result {
				return m.run(skopeo(), "copy", "--authfile", "auth.json", "--src-tls-verify=false", "docker://"+m.ref("m/skopeo/src"), "oci:pulled:1")
			},
			refusedPush: func(m *mx) result {
				return m.run(skopeo(), "copy", "--authfile", "auth.json", "--dest-tls-verify=false", "docker-archive:image.tar", "docker://"+m.ref("shared/skopeo"))
			},
			mount: func(m *mx) result {
				return m.run(skopeo(), "copy", "--authfile", "auth.json", "--src-tls-verify=false", "--dest-tls-verify=false", "docker://"+m.ref("m/skopeo/src"), "docker://"+m.ref("m/skopeo/dst"))
			},
			delete: func(m *mx) result {
				return m.run(skopeo(), "delete", "--authfile", "auth.json", "--tls-verify=false", "docker://"+m.ref("m/skopeo/dst"))
			},
			refresh: func(m *mx) result {
				return m.run(skopeo(), "copy", "--authfile", "auth.json", "--src-tls-verify=false", "docker://"+m.ref("m/skopeo/src"), "oci:pulled:1")
			},
		},
		"docker": {
			login: func(m *mx) result {
				r := runInWithStdin(m.t, m.home, m.env(), m.key, docker(), "login", m.reg.Addr, "-u", "alice", "--password-stdin")
				if r.code == 0 {
					// With a refresh token in the login response docker stores it, not the key.
					raw, _ := os.ReadFile(filepath.Join(m.home, ".docker", "config.json"))
					if !strings.Contains(string(raw), "identitytoken") || strings.Contains(string(raw), m.key) {
						return result{out: "docker stored no identity token:\n" + string(raw), code: 1}
					}
				}
				return r
			},
			push: func(m *mx) result {
				if r := m.run(docker(), "import", m.layer, m.ref("m/docker/src")); r.code != 0 {
					return r
				}
				return m.run(docker(), "push", m.ref("m/docker/src"))
			},
			pull: func(m *mx) result {
				m.run(docker(), "rmi", m.ref("m/docker/src"))
				return m.run(docker(), "pull", m.ref("m/docker/src"))
			},
			refusedPush: func(m *mx) result {
				if r := m.run(docker(), "tag", m.ref("m/docker/src"), m.ref("shared/docker")); r.code != 0 {
					return r
				}
				return m.run(docker(), "push", m.ref("shared/docker"))
			},
			mount: func(m *mx) result {
				if r := m.run(docker(), "tag", m.ref("m/docker/src"), m.ref("m/docker/dst")); r.code != 0 {
					return r
				}
				return m.run(docker(), "push", m.ref("m/docker/dst"))
			},
			refresh: func(m *mx) result {
				// Every docker step after login already ran on the stored identity token; pull
				// once more from a clean cache to be explicit.
				m.run(docker(), "rmi", m.ref("m/docker/src"), m.ref("m/docker/dst"), m.ref("shared/docker"))
				return m.run(docker(), "pull", m.ref("m/docker/src"))
			},
		},
	}
}

// cell is the result of one step.
type cell string

const (
	pass    cell = "✓"
	failed  cell = "✗"
	notDone cell = "n/a"
)

type matrixResults struct {
	mu    sync.Mutex
	cells map[string]map[string]cell // "client / registry" -> step -> result
}

func (r *matrixResults) set(row, step string, c cell) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cells[row] == nil {
		r.cells[row] = map[string]cell{}
	}
	r.cells[row][step] = c
}

func (r *matrixResults) markdown() string {
	var b strings.Builder
	b.WriteString("| client | registry | " + strings.Join(steps, " | ") + " |\n")
	b.WriteString("|---|---|" + strings.Repeat("---|", len(steps)) + "\n")
	rows := make([]string, 0, len(r.cells))
	for row := range r.cells {
		rows = append(rows, row)
	}
	sort.Strings(rows)
	for _, row := range rows {
		client, reg, _ := strings.Cut(row, " / ")
		b.WriteString("| " + client + " | " + reg + " |")
		for _, s := range steps {
			c := r.cells[row][s]
			if c == "" {
				c = "–"
			}
			b.WriteString(" " + string(c) + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestMatrix(t *testing.T) {
	dir := t.TempDir()
	// The registries' service names must be in the token server's config before it starts,
	// and the registries need its address: reserve both addresses first.
	v3Addr, v28Addr := freeAddr(t), freeAddr(t)
	srv := startServe(t, dir, serveOptions{services: []string{v3Addr, v28Addr}, withCert: true})
	trust := registryTrust{rootCertBundle: filepath.Join(dir, "signing-cert.pem")}
	regs := []registry{
		startRegistryAt(t, "v3", v3Addr, srv.realm(), "regoauth-e2e", trust),
		startRegistryAt(t, "v2.8", v28Addr, srv.realm(), "regoauth-e2e", trust),
	}

	key := srv.account(t, "alice")
	srv.cli(t, "grants", "add", "--account", "alice", "--repo", "m/**", "--actions", "pull,push,delete")
	srv.cli(t, "grants", "add", "--account", "alice", "--repo", "shared/**", "--actions", "pull")

	results := &matrixResults{cells: map[string]map[string]cell{}}
	layer := layerTar(t, "matrix")
	clients := matrixClients(t)
	names := make([]string, 0, len(clients))
	for n := range clients {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, reg := range regs {
		for _, name := range names {
			c := clients[name]
			row := name + " / distribution " + reg.Version
			t.Run(reg.Version+"/"+name, func(t *testing.T) {
				m := &mx{t: t, srv: srv, reg: reg, client: name, key: key, home: t.TempDir(), layer: layer}
				runSteps(t, m, c, row, results)
			})
		}
	}

	table := results.markdown()
	t.Logf("compatibility matrix:\n%s", table)
	checkREADMEMatrix(t, table)
}

func startRegistryAt(t *testing.T, version, addr, realm, issuer string, trust registryTrust) registry {
	t.Helper()
	r := registry{Version: version, Addr: addr}
	name := map[string]string{"v3": "registry3", "v2.8": "registry28"}[version]
	args := []string{"-addr", addr, "-root", t.TempDir(), "-realm", realm, "-service", addr, "-issuer", issuer, "-rootcertbundle", trust.rootCertBundle}
	if trust.jwks != "" {
		args = append(args, "-jwks", trust.jwks)
	}
	p := startProcess(t, "registry "+version, registryBinary(t, name), args...)
	p.waitFor(t, "a 401 on /v2/", func() bool { return registryUp(addr) })
	return r
}

// runSteps performs every step of one client on one registry, recording each result, and
// checking in the token server's audit log what the step must have asked for.
func runSteps(t *testing.T, m *mx, c clientSteps, row string, results *matrixResults) {
	step := func(name string, fn func(m *mx) result, wantOK bool, check func(before int) string) bool {
		if fn == nil {
			results.set(row, name, notDone)
			return true
		}
		before := len(m.srv.auditLines())
		r := fn(m)
		ok := (r.code == 0) == wantOK
		msg := ""
		if !ok {
			msg = fmt.Sprintf("exit %d, want success=%v:\n%s", r.code, wantOK, r.out)
		} else if check != nil {
			msg = check(before)
		}
		if msg != "" {
			msg += "\ntoken requests during the step:\n" + strings.Join(m.srv.auditLines()[before:], "\n")
		}
		if msg != "" {
			results.set(row, name, failed)
			t.Errorf("%s, step %q: %s", row, name, msg)
			return false
		}
		results.set(row, name, pass)
		return true
	}
	seen := func(before int, want ...string) string {
		for _, l := range m.srv.auditLines()[before:] {
			all := true
			for _, w := range want {
				all = all && strings.Contains(l, w)
			}
			if all {
				return ""
			}
		}
		return fmt.Sprintf("no token request with %q in the audit log", want)
	}
	if !step("login", c.login, true, nil) {
		return
	}
	if !step("push", c.push, true, nil) {
		return
	}
	step("pull", c.pull, true, nil)
	step("refused push", c.refusedPush, false, func(before int) string {
		return seen(before, `"requested":"repository:`+m.refusedRepo()+`:pull,push"`, `"granted":"repository:`+m.refusedRepo()+`:pull"`)
	})
	step("cross-repo mount", c.mount, true, func(before int) string {
		// The mount asks for both repositories in one token request.
		return seen(before, `repository:m/`+m.client+`/dst:pull,push`, `repository:m/`+m.client+`/src:pull`)
	})
	step("delete", c.delete, true, nil)
	if m.client != "docker" {
		m.writeIdentityToken("alice", m.srv.refreshToken(t, m.reg.Addr, "alice", m.key))
	}
	step("refresh token", c.refresh, true, func(before int) string {
		return seen(before, `"grant":"refresh_token"`, `"status":200`)
	})
}

const matrixStart, matrixEnd = "<!-- matrix:start -->\n", "<!-- matrix:end -->"

// checkREADMEMatrix rewrites the README's table with REGOAUTH_UPDATE_MATRIX=1 and, in CI, fails
// when the README claims something other than what this run proved.
func checkREADMEMatrix(t *testing.T, table string) {
	path := filepath.Join("..", "README.md")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	start, end := strings.Index(readme, matrixStart), strings.Index(readme, matrixEnd)
	if start < 0 || end < start {
		t.Fatalf("README.md has no %q … %q section", strings.TrimSpace(matrixStart), matrixEnd)
	}
	current := readme[start+len(matrixStart) : end]
	switch {
	case os.Getenv("REGOAUTH_UPDATE_MATRIX") == "1":
		updated := readme[:start+len(matrixStart)] + table + readme[end:]
		if err := os.WriteFile(path, []byte(updated), 0o644); err != nil {
			t.Fatal(err)
		}
	case strict() && current != table:
		t.Errorf("README.md's compatibility table differs from this run; regenerate it with\n"+
			"  REGOAUTH_UPDATE_MATRIX=1 go test ./e2e -run TestMatrix\nREADME:\n%s\nthis run:\n%s", current, table)
	}
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
