package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer collects a process's output while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records returns the JSON log records with message msg.
func (b *syncBuffer) records(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// process is a server started for a test and stopped when it ends.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error
}

func startProcess(t *testing.T, name string, bin string, args ...string) *process {
	t.Helper()
	return startProcessEnv(t, name, nil, bin, args...)
}

// startProcessEnv is startProcess with env added to the environment. When the test fails, the
// end of the process's output goes to the test log.
func startProcessEnv(t *testing.T, name string, env []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(append(os.Environ(), "OTEL_TRACES_EXPORTER=none"), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		defer func() {
			if t.Failed() {
				t.Logf("%s output:\n%s", name, tail(p.out.String(), 60))
			}
		}()
		select {
		case <-p.exited:
			return
		default:
		}
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			t.Errorf("%s did not stop within 20s", name)
		}
	})
	return p
}

// waitFor polls ok until it holds, failing if the process exits or 30 s pass.
func (p *process) waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !ok() {
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%v) before %s:\n%s", p.name, p.err, what, p.out)
		case <-deadline:
			t.Fatalf("%s: no %s within 30s:\n%s", p.name, what, p.out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var (
	buildOnce = map[string]*sync.Once{"registry3": {}, "registry28": {}}
	built     = map[string]string{}
	buildErr  = map[string]error{}
)

// registryBinary builds the test registry of the given version once per run: registry3 from
// this module, registry28 from its own module (so the main module never depends on v2.8).
func registryBinary(t *testing.T, name string) string {
	t.Helper()
	buildOnce[name].Do(func() {
		out := filepath.Join(filepath.Dir(binary), name)
		cmd := exec.Command("go", "build", "-o", out, "./registry3")
		if name == "registry28" {
			cmd = exec.Command("go", "build", "-o", out, ".")
			cmd.Dir = "registry28"
		}
		if msg, err := cmd.CombinedOutput(); err != nil {
			buildErr[name] = fmt.Errorf("building %s: %v\n%s", name, err, msg)
			return
		}
		built[name] = out
	})
	if err := buildErr[name]; err != nil {
		t.Fatal(err)
	}
	return built[name]
}

// registry is a running test registry.
type registry struct {
	Version string // "v3" or "v2.8"
	Addr    string // localhost:PORT, also its service name
}

type registryTrust struct {
	rootCertBundle string
	jwks           string
}

// tokenServer is a running `regoauth serve`.
type tokenServer struct {
	Addr     string
	AdminKey string
	proc     *process
	dir      string
}

type serveOptions struct {
	services []string
	kid      string
	withCert bool   // send x5c
	alg      string // of a generated key; ES256 when empty
	publish  []string
}

// startServe writes a config, bootstraps an admin and runs `regoauth serve`. It returns before
// registries are started, since their service names must be in the config: pass them in.
func startServe(t *testing.T, dir string, o serveOptions) *tokenServer {
	t.Helper()
	return startServeAt(t, dir, freeAddr(t), o)
}

// startServeAt is startServe on a given address (a restart in place).
func startServeAt(t *testing.T, dir, addr string, o serveOptions) *tokenServer {
	t.Helper()
	s := &tokenServer{Addr: addr, dir: dir}
	key, cert := filepath.Join(dir, "signing-key.pem"), filepath.Join(dir, "signing-cert.pem")
	if o.alg == "" {
		o.alg = "ES256"
	}
	if _, err := os.Stat(key); err != nil {
		must(t, nil, binary, "signing", "generate", "--alg", o.alg, "--key", key, "--cert", cert, "--cn", "regoauth-e2e")
	}
	secret := filepath.Join(dir, "refresh-secret")
	os.WriteFile(secret, []byte(strings.Repeat("s3cr3t", 8)), 0o600)
	certLine := ""
	if o.withCert {
		certLine = fmt.Sprintf("cert_file: %q", cert)
	}
	quoted := func(list []string) string {
		out := make([]string, len(list))
		for i, v := range list {
			out[i] = fmt.Sprintf("%q", v)
		}
		return strings.Join(out, ", ")
	}
	if o.kid == "" {
		o.kid = "thumbprint"
	}
	config := fmt.Sprintf(`
issuer: regoauth-e2e
services: [%s]
listen: {addr: %q}
signing:
  key_file: %q
  %s
  kid: %s
  publish: [%s]
refresh_tokens:
  secrets: [{file: %q}]
store: {url: %q}
log: {format: json, level: info}
`, quoted(o.services), s.Addr, key, certLine, o.kid, quoted(o.publish), secret, "bolt://"+filepath.Join(dir, "store.db"))
	configPath := filepath.Join(dir, "regoauth.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s.AdminKey = strings.TrimSpace(must(t, nil, binary, "bootstrap", "--config", configPath))
	s.proc = startProcess(t, "regoauth serve", binary, "serve", "--config", configPath)
	s.proc.waitFor(t, "readiness", func() bool { return ready(s.Addr) })
	return s
}

func (s *tokenServer) realm() string { return "http://" + s.Addr + "/token" }

func (s *tokenServer) cli(t *testing.T, args ...string) string {
	t.Helper()
	return must(t, []string{"REGOAUTH_SERVER=http://" + s.Addr, "REGOAUTH_KEY=" + s.AdminKey}, binary, args...)
}

// account creates an account and returns a new API key for it.
func (s *tokenServer) account(t *testing.T, name string) string {
	t.Helper()
	s.cli(t, "accounts", "create", name)
	return strings.TrimSpace(s.cli(t, "keys", "create", "--account", name))
}

// auditLines returns the token server's audit events logged so far.
func (s *tokenServer) auditLines() []string {
	var out []string
	for _, l := range strings.Split(s.proc.out.String(), "\n") {
		if strings.Contains(l, `"msg":"token request"`) {
			out = append(out, l)
		}
	}
	return out
}

// refreshToken performs docker's login probe and returns the refresh token it yields.
func (s *tokenServer) refreshToken(t *testing.T, service, user, key string) string {
	t.Helper()
	q := url.Values{"account": {user}, "client_id": {"docker"}, "offline_token": {"true"}, "service": {service}}
	req, _ := http.NewRequest("GET", s.realm()+"?"+q.Encode(), nil)
	req.SetBasicAuth(user, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := jsonDecode(resp, &body); err != nil || body.RefreshToken == "" {
		t.Fatalf("login probe returned no refresh token (HTTP %d, %v)", resp.StatusCode, err)
	}
	return body.RefreshToken
}
