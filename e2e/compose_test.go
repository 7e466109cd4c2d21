package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// composeServices are the services of docker-compose.yml the test starts: all but Grafana, which
// has no stand-in here (e2e/compose/standins/build.sh).
var composeServices = []string{"redis-init", "redis", "regoauth-init", "regoauth", "registry", "prometheus"}

// composeStack is the repository's docker-compose.yml, run unchanged under its own project name
// with its published ports moved to free ones.
type composeStack struct {
	t        *testing.T
	compose  []string // the compose command: docker compose, or docker-compose
	project  string
	env      []string
	registry string // localhost:PORT
	token    string
	prom     string
	version  string // the version stamped into the image
}

// composeCommand is `docker compose` when the plugin is installed, else Debian's docker-compose.
func composeCommand(t *testing.T, docker string) []string {
	t.Helper()
	if exec.Command(docker, "compose", "version").Run() == nil {
		return []string{docker, "compose"}
	}
	return []string{tool(t, "docker-compose")}
}

func (c *composeStack) run(args ...string) result {
	c.t.Helper()
	full := append(append([]string{}, c.compose[1:]...), append([]string{"-p", c.project, "-f", "../docker-compose.yml"}, args...)...)
	return run(c.t, c.env, c.compose[0], full...)
}

func (c *composeStack) must(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("compose %s: exit %d\n%s", strings.Join(args, " "), r.code, r.out)
	}
	return r.out
}

// container is the id of a service's container.
func (c *composeStack) container(service string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.must("ps", "-q", service))
	if id == "" {
		c.t.Fatalf("no container for %s", service)
	}
	return id
}

// up starts the services and waits until regoauth is healthy, the registry asks for tokens and
// Prometheus is ready. It returns how long that took.
func (c *composeStack) up() time.Duration {
	c.t.Helper()
	start := time.Now()
	c.must(append([]string{"up", "-d"}, composeServices...)...)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		health := strings.TrimSpace(run(c.t, nil, "docker", "inspect", "-f", "{{.State.Health.Status}}", c.container("regoauth")).out)
		if health == "healthy" && registryUp(c.registry) && httpOK("http://"+c.prom+"/-/ready") {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the stack was not up within 3 minutes (regoauth %s)\n%s", health, c.run("logs", "--tail", "50").out)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func httpOK(u string) bool {
	resp, err := http.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// cli runs the admin CLI inside the regoauth container, as the compose file's header shows.
func (c *composeStack) cli(args ...string) string {
	c.t.Helper()
	return strings.TrimSpace(c.must(append([]string{"exec", "-T", "regoauth", "regoauth"}, args...)...))
}

// promQuery returns the result vector of an instant query.
func (c *composeStack) promQuery(q string) ([]struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`
}, error) {
	resp, err := http.Get("http://" + c.prom + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: status %s", q, body.Status)
	}
	return body.Data.Result, nil
}

// TestCompose proves docker-compose.yml as a user runs it: first start with no manual step, an
// account and key made with the CLI in the container, docker login, push, a push the registry
// refuses, pull by digest, Prometheus scraping regoauth with the project's rules, and every key,
// grant and image kept across `down` and `up`; in between, a reload on SIGHUP and a graceful stop
// with exit status 0.
func TestCompose(t *testing.T) {
	t.Parallel()
	docker := tool(t, "docker")
	if out, err := exec.Command(docker, "info").CombinedOutput(); err != nil {
		if strict() {
			t.Fatalf("the Docker Engine does not answer:\n%s", out)
		}
		t.Skipf("the Docker Engine does not answer")
	}
	c := &composeStack{
		t: t, compose: composeCommand(t, docker),
		project:  fmt.Sprintf("deploy-compose-%d", os.Getpid()),
		registry: freeAddr(t), token: freeAddr(t), prom: freeAddr(t),
		version: fmt.Sprintf("e2e-compose-%d", os.Getpid()),
	}
	image := "deploy-regoauth:" + c.version
	port := func(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
	c.env = []string{
		"REGOAUTH_IMAGE=" + image,
		"REGISTRY_PORT=" + port(c.registry), "REGOAUTH_PORT=" + port(c.token),
		"PROMETHEUS_PORT=" + port(c.prom), "GRAFANA_PORT=" + port(freeAddr(t)),
	}

	start := time.Now()
	// A static, trimmed build compiles the whole module again: minutes on a busy machine with a
	// cold cache.
	if r := runLimited(t, 15*time.Minute, "", nil, "", "make", "-C", "..", "image", "IMAGE="+image, "VERSION="+c.version); r.code != 0 {
		t.Fatalf("make image:\n%s", r.out)
	}
	t.Cleanup(func() { run(t, nil, docker, "rmi", "-f", image) })
	t.Logf("make image: %s", time.Since(start).Round(time.Second))
	start = time.Now()
	if r := runLimited(t, 15*time.Minute, "", nil, "", "bash", "compose/standins/build.sh"); r.code != 0 {
		t.Fatalf("building the stand-in images:\n%s", r.out)
	} else {
		t.Logf("stand-in images: %s\n%s", time.Since(start).Round(time.Second), strings.TrimSpace(r.out))
	}
	size := strings.TrimSpace(run(t, nil, docker, "image", "inspect", "-f", "{{.Size}}", image).out)
	t.Logf("image %s: %s bytes", image, size)

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("compose logs:\n%s", c.run("logs", "--tail", "100").out)
		}
		if r := c.run("down", "-v", "--remove-orphans"); r.code != 0 {
			t.Errorf("compose down -v: %s", r.out)
		}
	})
	t.Logf("cold start to healthy: %s", c.up().Round(100*time.Millisecond))

	// The image as built: a numeric non-root user, and its own health check without a shell.
	regoauth := c.container("regoauth")
	if u := strings.TrimSpace(run(t, nil, docker, "inspect", "-f", "{{.Config.User}}", regoauth).out); u != "65532:65532" {
		t.Errorf("regoauth runs as %q, want 65532:65532", u)
	}
	// It runs as the Helm chart's pods do: read-only root, no capabilities, no escalation.
	hc := strings.TrimSpace(run(t, nil, docker, "inspect", "-f", "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}", regoauth).out)
	if hc != "true [ALL] [no-new-privileges:true]" {
		t.Errorf("regoauth's container settings: %s", hc)
	}
	if out := c.must("exec", "-T", "regoauth", "regoauth", "healthcheck"); strings.TrimSpace(out) != "ok" {
		t.Errorf("the image's default health check: %q", out)
	}
	if r := c.run("exec", "-T", "regoauth", "sh", "-c", "true"); r.code == 0 {
		t.Errorf("the image has a shell")
	}
	if out := c.must("run", "--rm", "--no-deps", "regoauth", "--version"); !strings.Contains(out, c.version) {
		t.Errorf("--version = %q, want the stamped %s", out, c.version)
	}
	// init made the admin key; it is the admin's (the CLI authenticates with it) and only the
	// regoauth containers see it.
	if who := c.cli("whoami"); !strings.Contains(who, "admin") {
		t.Fatalf("whoami with the generated admin key: %s", who)
	}
	registryVolumes := run(t, nil, docker, "inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", c.container("registry")).out
	if !strings.Contains(registryVolumes, c.project+"_regoauth-public") || strings.Contains(registryVolumes, c.project+"_regoauth-data") {
		t.Errorf("the registry should mount regoauth-public and not regoauth's private volume: %s", registryVolumes)
	}

	// Redis answers regoauth's own user only: a client without its password — any container on
	// the compose network, any user of the host, who reaches the container's address — can
	// neither read nor write the records that decide every token. The password is in no
	// container's environment.
	for _, cmd := range [][]string{{"SET", "{regoauth}:probe", "1"}, {"KEYS", "*"}, {"ACL", "SETUSER", "default", "+@all"}} {
		if out := c.run(append([]string{"exec", "-T", "redis", "redis-cli"}, cmd...)...).out; !strings.Contains(out, "NOAUTH") {
			t.Errorf("redis-cli %s without a password: %q, want NOAUTH", strings.Join(cmd, " "), out)
		}
	}
	for _, service := range []string{"regoauth", "redis"} {
		if env := run(t, nil, docker, "inspect", "-f", "{{range .Config.Env}}{{.}} {{end}}", c.container(service)).out; strings.Contains(env, "redis://") {
			t.Errorf("the %s container's environment holds the store URL: %s", service, env)
		}
	}

	// A seller with a namespace, as the docs show.
	c.cli("accounts", "create", "alice")
	key := c.cli("keys", "create", "--account", "alice", "--name", "laptop")
	if !strings.HasPrefix(key, "rak_") {
		t.Fatalf("keys create printed %q", key)
	}
	c.cli("grants", "add", "--account", "alice", "--repo", "alice/*", "--actions", "pull,push")

	home := t.TempDir()
	denv := []string{"DOCKER_CONFIG=" + filepath.Join(home, ".docker")}
	dockerRun := func(stdin string, args ...string) result {
		return runIn(t, home, denv, stdin, docker, args...)
	}
	if r := dockerRun(key, "login", c.registry, "-u", "alice", "--password-stdin"); r.code != 0 || !strings.Contains(r.out, "Login Succeeded") {
		t.Fatalf("docker login:\n%s", r.out)
	}
	// With refresh tokens configured, docker keeps a refresh token, not the key.
	if raw, _ := os.ReadFile(filepath.Join(home, ".docker", "config.json")); !strings.Contains(string(raw), "identitytoken") || strings.Contains(string(raw), key) {
		t.Errorf("docker login did not store a refresh token instead of the key:\n%s", raw)
	}

	ref := c.registry + "/alice/app:1"
	if r := dockerRun("", "import", layerTar(t, "compose"), ref); r.code != 0 {
		t.Fatalf("docker import:\n%s", r.out)
	}
	t.Cleanup(func() { dockerRun("", "rmi", "-f", ref, c.registry+"/bob/app:1") })
	r := dockerRun("", "push", ref)
	digest := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindStringSubmatch(r.out)
	if r.code != 0 || digest == nil {
		t.Fatalf("docker push:\n%s", r.out)
	}
	// Outside alice's namespace the token carries no push, and the registry itself says no.
	if r := dockerRun("", "tag", ref, c.registry+"/bob/app:1"); r.code != 0 {
		t.Fatal(r.out)
	}
	if r := dockerRun("", "push", c.registry+"/bob/app:1"); r.code == 0 || !strings.Contains(r.out, "denied") {
		t.Fatalf("push to bob/app was not refused by the registry:\n%s", r.out)
	}
	pull := func() {
		t.Helper()
		dockerRun("", "rmi", "-f", ref)
		if r := dockerRun("", "pull", ref); r.code != 0 || !strings.Contains(r.out, digest[1]) {
			t.Fatalf("docker pull (want %s):\n%s", digest[1], r.out)
		}
		got := dockerRun("", "image", "inspect", "-f", "{{range .RepoDigests}}{{.}} {{end}}", ref).out
		if !strings.Contains(got, "alice/app@"+digest[1]) {
			t.Fatalf("pulled image digests %q, pushed %s", got, digest[1])
		}
	}
	pull()

	// Prometheus scrapes regoauth on the compose network, with the project's rules loaded.
	deadline := time.Now().Add(90 * time.Second)
	for {
		var missing []string
		for _, q := range []string{
			`up{job="regoauth"} == 1`,
			fmt.Sprintf(`regoauth_build_info{job="regoauth",version=%q} == 1`, c.version),
			`regoauth_token_requests_total{job="regoauth",outcome="issued"} > 0`,
			`regoauth:token_requests:rate5m`,
		} {
			if res, err := c.promQuery(q); err != nil || len(res) == 0 {
				missing = append(missing, q)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus has no result for %v", missing)
		}
		time.Sleep(2 * time.Second)
	}

	// SIGHUP reaches regoauth as the container's first process and reloads its configuration.
	c.must("kill", "-s", "HUP", "regoauth")
	deadline = time.Now().Add(30 * time.Second)
	for logs := ""; !strings.Contains(logs, `"msg":"configuration reloaded"`); logs = c.run("logs", "regoauth").out {
		if strings.Contains(logs, `"msg":"configuration reload refused`) || time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", tail(logs, 20))
		}
		time.Sleep(250 * time.Millisecond)
	}
	// SIGTERM: regoauth drains, says so, and exits 0 well within compose's stop_grace_period.
	start = time.Now()
	c.must("stop", "regoauth")
	stopped := time.Since(start)
	if code := strings.TrimSpace(run(t, nil, docker, "inspect", "-f", "{{.State.ExitCode}}", regoauth).out); code != "0" {
		t.Fatalf("regoauth exited with status %s after docker compose stop", code)
	}
	if logs := c.run("logs", "regoauth").out; !strings.Contains(logs, "every request in flight was answered") {
		t.Fatalf("no graceful stop in regoauth's log:\n%s", tail(logs, 20))
	}
	t.Logf("docker compose stop regoauth: %s, exit status 0", stopped.Round(100*time.Millisecond))

	// down and up keep the signing key (the registry still trusts it), the store (alice's key
	// and grant) and the registry's storage.
	c.must("down")
	t.Logf("warm start to healthy: %s", c.up().Round(100*time.Millisecond))
	initLog := c.run("logs", "regoauth-init").out
	if strings.Contains(initLog, "created") {
		t.Errorf("init created something on the second start:\n%s", initLog)
	}
	if r := dockerRun(key, "login", c.registry, "-u", "alice", "--password-stdin"); r.code != 0 {
		t.Fatalf("docker login after down and up:\n%s", r.out)
	}
	pull()
}

// TestComposeGrafanaProvisioning checks, without Grafana, that the dashboard and data source
// the compose file provisions are where Grafana is told to look, and that nobody can sign in
// (Grafana's first admin login is admin/admin, which any user of the host could claim first).
func TestComposeGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	env := compose.Services["grafana"].Environment
	if env["GF_AUTH_DISABLE_LOGIN_FORM"] != "true" || env["GF_AUTH_BASIC_ENABLED"] != "false" {
		t.Errorf("grafana can be signed in to (GF_AUTH_DISABLE_LOGIN_FORM %q, GF_AUTH_BASIC_ENABLED %q): its admin/admin login is anyone's who comes first",
			env["GF_AUTH_DISABLE_LOGIN_FORM"], env["GF_AUTH_BASIC_ENABLED"])
	}
	mounts := map[string]string{} // container path → repository path
	for _, v := range compose.Services["grafana"].Volumes {
		parts := strings.Split(v, ":")
		if strings.HasPrefix(parts[0], "./") {
			if _, err := os.Stat(filepath.Join("..", parts[0])); err != nil {
				t.Errorf("grafana mounts %s: %v", parts[0], err)
			}
			mounts[parts[1]] = filepath.Join("..", parts[0])
		}
	}
	var provider struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	prov, err := os.ReadFile(filepath.Join(mounts["/etc/grafana/provisioning"], "dashboards", "regoauth.yml"))
	if err != nil {
		t.Fatalf("dashboard provider: %v (mounts %v)", err, mounts)
	}
	if err := yaml.Unmarshal(prov, &provider); err != nil || len(provider.Providers) != 1 {
		t.Fatalf("dashboard provider: %v", err)
	}
	dashboard := mounts[provider.Providers[0].Options.Path+"/regoauth.json"]
	var d struct {
		UID    string `json:"uid"`
		Panels []any  `json:"panels"`
	}
	if raw, err := os.ReadFile(dashboard); err != nil || json.Unmarshal(raw, &d) != nil || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("the provider's folder %s does not hold the dashboard (mounted from %q): %v", provider.Providers[0].Options.Path, dashboard, err)
	}
	var ds struct {
		Datasources []struct {
			Type      string `yaml:"type"`
			URL       string `yaml:"url"`
			IsDefault bool   `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	dsRaw, err := os.ReadFile(filepath.Join(mounts["/etc/grafana/provisioning"], "datasources", "prometheus.yml"))
	if err != nil || yaml.Unmarshal(dsRaw, &ds) != nil || len(ds.Datasources) != 1 {
		t.Fatalf("data source: %v", err)
	}
	if s := ds.Datasources[0]; s.Type != "prometheus" || !s.IsDefault || s.URL != "http://prometheus:9090" || compose.Services["prometheus"].Image == "" {
		t.Errorf("the default data source is not the compose stack's Prometheus: %+v", s)
	}
}
