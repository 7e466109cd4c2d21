package e2e

import (
	"bufio"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	disttoken "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/tokens"
)

// server is a running regoauth token server: `regoauth serve` with a configuration written by
// startServer, or `regoauth dev` with its embedded registry.
type server struct {
	Addr     string // localhost:PORT: /token, the admin API, /metrics, /readyz
	AdminKey string
	Dir      string   // its configuration, signing files and bolt store; dev's data folder
	Issuer   string   // the iss of its tokens
	Services []string // the audiences it issues tokens for; the first is the default
	// Trust is the certificate file registries put in their rootcertbundle: the signing
	// certificate, or the authority that issued it.
	Trust string
	// Registry is regoauth dev's embedded registry (nil for serve).
	Registry *registry

	keyFile, certFile string
	kid               tokens.KIDMode
	proc              *process
	// config is what the configuration file was written from, for rewrite.
	config serveConfig

	verifyOnce sync.Once
	verifyOpts disttoken.VerifyOptions
	verifyErr  error
}

const (
	serveIssuer  = "regoauth-e2e"
	serveService = "registry.example.com"
)

// serveConfig is what a test chooses of `regoauth serve`'s configuration; the rest is fixed.
type serveConfig struct {
	dir      string   // configuration, signing files and bolt store; a new folder when empty
	addr     string   // listen address; a free one when empty (a restart in place passes the old one)
	services []string // serveService when empty
	alg      string   // algorithm of a generated signing key: ES256 when empty
	kid      string   // kid mode: thumbprint when empty
	x5c      bool     // configure the certificate, so that tokens carry x5c
	caIssued bool     // a certificate authority (ca-cert.pem beside it) issues the certificate
	publish  []string // more certificates for the JWKS
	// keyFile and certFile are signing files shared with other replicas (with the refresh
	// token secret beside them); generated in dir when empty.
	keyFile, certFile string
	storeURL          string // bolt in dir when empty; given through the environment, as a secret
	cache             string // the store.cache section, e.g. "{ttl: 1m, size: 1000}"
	policy            string // the policy section
	noAdmin           bool   // do not bootstrap an admin (the store is down)
	anyReadiness      bool   // return once /readyz answers, ready or not
	// refreshSecrets are the refresh token secret files, the first signing; the one beside the
	// signing key when empty.
	refreshSecrets []string
	extra          string // more top-level keys, e.g. "shutdown: {drain_delay: 1s}"
}

// startServer writes a configuration, bootstraps an admin and runs `regoauth serve`.
// Registries need the server's address and the server needs their service names: reserve their
// addresses with freeAddr first and pass them as services.
func startServer(t *testing.T, c serveConfig) *server {
	t.Helper()
	if c.dir == "" {
		c.dir = t.TempDir()
	}
	if c.addr == "" {
		c.addr = freeAddr(t)
	}
	if len(c.services) == 0 {
		c.services = []string{serveService}
	}
	if c.kid == "" {
		c.kid = string(tokens.KIDThumbprint)
	}
	s := &server{Addr: c.addr, Dir: c.dir, Issuer: serveIssuer, Services: c.services, kid: tokens.KIDMode(c.kid),
		keyFile: c.keyFile, certFile: c.certFile}
	if s.keyFile == "" {
		s.keyFile, s.certFile = filepath.Join(c.dir, "signing-key.pem"), filepath.Join(c.dir, "signing-cert.pem")
		if _, err := os.Stat(s.keyFile); err != nil {
			generateSigningKey(t, c.dir, c.alg, c.caIssued)
		}
	}
	s.Trust = s.certFile
	if ca := filepath.Join(filepath.Dir(s.certFile), "ca-cert.pem"); isFile(ca) {
		s.Trust = ca
	}
	if len(c.refreshSecrets) == 0 {
		secret := filepath.Join(filepath.Dir(s.keyFile), "refresh-secret")
		if !isFile(secret) {
			writeFile(t, secret, strings.Repeat("s3cr3t", 8), 0o600)
		}
		c.refreshSecrets = []string{secret}
	}
	if c.storeURL == "" {
		c.storeURL = "bolt://" + filepath.Join(c.dir, "store.db")
	}
	c.keyFile, c.certFile = s.keyFile, s.certFile
	s.config = c
	env := []string{"REGOAUTH_E2E_STORE_URL=" + c.storeURL}
	path := writeFile(t, s.configFile(), c.yaml(), 0o600)
	if !c.noAdmin {
		s.AdminKey = strings.TrimSpace(must(t, env, binary, "bootstrap", "--config", path))
	}
	s.proc = startProcess(t, "regoauth serve "+s.Addr, env, binary, "serve", "--config", path)
	s.proc.graceful = true
	s.proc.waitFor(t, "readiness", func() bool {
		code, _ := s.readyz()
		return s.listening() && (code == http.StatusOK || (c.anyReadiness && code != 0))
	})
	return s
}

// configFile is the path of a serve's configuration file.
func (s *server) configFile() string { return filepath.Join(s.Dir, "regoauth.yaml") }

// rewrite writes the configuration file again from the one the server started with, changed by
// edit, and puts it in place by rename, as a deploy does; SIGHUP then reloads it. (The server's
// own verify keeps trusting the key it started with.)
func (s *server) rewrite(t *testing.T, edit func(c *serveConfig)) {
	t.Helper()
	c := s.config
	c.services = slices.Clone(c.services)
	c.publish = slices.Clone(c.publish)
	c.refreshSecrets = slices.Clone(c.refreshSecrets)
	edit(&c)
	tmp := writeFile(t, s.configFile()+".new", c.yaml(), 0o600)
	if err := os.Rename(tmp, s.configFile()); err != nil {
		t.Fatal(err)
	}
}

// yaml is the configuration file: the one place the harness writes one.
func (c serveConfig) yaml() string {
	var b strings.Builder
	list := func(values []string) string {
		quoted := make([]string, len(values))
		for i, v := range values {
			quoted[i] = fmt.Sprintf("%q", v)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	fmt.Fprintf(&b, "issuer: %s\nservices: %s\nlisten: {addr: %q}\n", serveIssuer, list(c.services), c.addr)
	fmt.Fprintf(&b, "signing:\n  key_file: %q\n  kid: %s\n  publish: %s\n", c.keyFile, c.kid, list(c.publish))
	if c.x5c {
		fmt.Fprintf(&b, "  cert_file: %q\n", c.certFile)
	}
	secrets := make([]string, len(c.refreshSecrets))
	for i, f := range c.refreshSecrets {
		secrets[i] = fmt.Sprintf("{file: %q}", f)
	}
	fmt.Fprintf(&b, "refresh_tokens: {secrets: [%s]}\n", strings.Join(secrets, ", "))
	b.WriteString("store:\n  url: {env: REGOAUTH_E2E_STORE_URL}\n")
	if c.cache != "" {
		fmt.Fprintf(&b, "  cache: %s\n", c.cache)
	}
	b.WriteString("log: {format: json, level: info}\n")
	if c.extra != "" {
		b.WriteString(strings.TrimRight(c.extra, "\n") + "\n")
	}
	if c.policy != "" {
		b.WriteString("policy:\n")
		for line := range strings.SplitSeq(strings.TrimRight(c.policy, "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	return b.String()
}

// generateSigningKey makes signing-key.pem and signing-cert.pem in dir with `regoauth signing
// generate`: self-signed, or issued by a new authority whose certificate is ca-cert.pem.
func generateSigningKey(t *testing.T, dir, alg string, caIssued bool) {
	t.Helper()
	if alg == "" {
		alg = "ES256"
	}
	args := []string{"signing", "generate", "--alg", alg, "--key", filepath.Join(dir, "signing-key.pem"),
		"--cert", filepath.Join(dir, "signing-cert.pem"), "--cn", "regoauth-e2e"}
	if caIssued {
		caKey, caCert := filepath.Join(dir, "ca-key.pem"), filepath.Join(dir, "ca-cert.pem")
		must(t, nil, binary, "signing", "generate", "--key", caKey, "--cert", caCert, "--cn", "regoauth-e2e CA")
		args = append(args, "--ca-key", caKey, "--ca-cert", caCert)
	}
	must(t, nil, binary, args...)
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// startDev runs `regoauth dev` on free ports with a data folder (a new one when data is ""),
// with more arguments if given.
func startDev(t *testing.T, data string, args ...string) *server {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	regAddr := freeAddr(t)
	s := &server{Addr: freeAddr(t), Dir: data, Issuer: "regoauth-dev", Services: []string{regAddr}, kid: tokens.KIDThumbprint,
		keyFile: filepath.Join(data, "signing-key.pem"), certFile: filepath.Join(data, "signing-cert.pem")}
	s.Trust = s.certFile
	s.proc = startProcess(t, "regoauth dev", nil, binary,
		append([]string{"dev", "--data", data, "--registry-addr", regAddr, "--token-addr", s.Addr}, args...)...)
	s.proc.graceful = true
	s.Registry = &registry{Version: "v3", Addr: regAddr, proc: s.proc}
	s.proc.waitFor(t, "readiness", func() bool {
		code, _ := s.readyz()
		return s.listening() && code == http.StatusOK && registryUp(regAddr)
	})
	s.AdminKey = strings.TrimSpace(string(mustRead(t, filepath.Join(data, "admin.key"))))
	return s
}

// stop interrupts the server like Ctrl-C and requires a clean exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.proc.stop(t)
}

// listening reports whether the process logged that it listens: the server that answers on its
// address is this one, not another that took the port.
func (s *server) listening() bool {
	return slices.ContainsFunc(s.proc.out.records(0, "listening"), func(rec logRecord) bool { return rec["listener"] == "token" })
}

func (s *server) realm() string { return "http://" + s.Addr + "/token" }

// logs is everything the server wrote so far.
func (s *server) logs() string { return s.proc.out.String() }

// mark is where the server's log ends now, for audit.
func (s *server) mark() int { return s.proc.out.mark() }

// audit returns the token server's audit records ("token request") logged since mark, up to
// this moment: a server logs a request before it answers, but the test reads its log through a
// pipe, so audit first asks a token of its own and waits for that request's line.
func (s *server) audit(since int) []logRecord {
	nonce := fmt.Sprintf("repository:log-barrier-%d:pull", barriers.Add(1))
	if r := s.token(tokenRequest{scopes: []string{nonce}}); r.err == nil {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && !slices.ContainsFunc(s.proc.out.records(since, "token request"), func(rec logRecord) bool {
			return rec["requested"] == nonce
		}) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	var out []logRecord
	for _, rec := range s.proc.out.records(since, "token request") {
		if rec["requested"] != nonce {
			out = append(out, rec)
		}
	}
	return out
}

// barriers numbers the requests made to find where a log ends.
var barriers atomic.Int64

// readyz returns /readyz's status and body; 0 when the server does not answer.
func (s *server) readyz() (int, map[string]any) {
	resp, err := http.Get("http://" + s.Addr + "/readyz")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// metric returns the sum of the samples of a metric family whose labels contain every one of
// the given label pairs.
func (s *server) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return sumSamples(resp.Body, name, labels...)
}

// sumSamples is the sum of the samples of the metric family name, in the Prometheus text
// format, whose labels contain every one of the given label pairs.
func sumSamples(metrics io.Reader, name string, labels ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(metrics)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(line, l) }) {
			continue
		}
		var v float64
		fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
		sum += v
	}
	return sum
}

// cliEnv is the environment of the regoauth CLI acting as the holder of key.
func (s *server) cliEnv(key string) []string {
	return []string{"REGOAUTH_SERVER=http://" + s.Addr, "REGOAUTH_KEY=" + key, "REGOAUTH_KEY_FILE="}
}

// cli runs the regoauth CLI against the server as the holder of key; it must succeed.
func (s *server) cli(t *testing.T, key string, args ...string) string {
	t.Helper()
	return must(t, s.cliEnv(key), binary, args...)
}

// admin runs the CLI as the admin.
func (s *server) admin(t *testing.T, args ...string) string {
	t.Helper()
	return s.cli(t, s.AdminKey, args...)
}

// account creates an account and returns a new API key for it.
func (s *server) account(t *testing.T, name string) string {
	t.Helper()
	s.admin(t, "accounts", "create", name)
	return strings.TrimSpace(s.admin(t, "keys", "create", "--account", name))
}

// harnessClientID names the harness's own token requests in the audit log, apart from the
// clients'.
const harnessClientID = "regoauth-e2e"

// tokenRequest is one request to the token endpoint, as a docker client makes it.
type tokenRequest struct {
	user, key string   // Basic credentials; none when both are empty
	service   string   // the server's first service when empty
	scopes    []string // none: a login probe
	offline   bool     // docker's login: offline_token=true, so a refresh token comes back
	refresh   string   // a refresh token: POST grant_type=refresh_token instead of GET
	client    *http.Client
}

// tokenResponse is what the token endpoint answered.
type tokenResponse struct {
	status       int
	raw          string
	body         map[string]any
	refreshToken string
	// access is what the token grants, "type:name" → actions, read from a token that
	// distribution's own code verified against the server's key.
	access     map[string][]string
	decisionID string
	err        error // transport, body or verification failure
}

// token is the one way tests ask the token endpoint for a token. It never fails the test (load
// generators call it from goroutines): errors are in the response.
func (s *server) token(r tokenRequest) tokenResponse {
	service := r.service
	if service == "" {
		service = s.Services[0]
	}
	var req *http.Request
	if r.refresh != "" {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.refresh}, "service": {service}, "client_id": {harnessClientID}, "scope": r.scopes}
		req, _ = http.NewRequest("POST", s.realm(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		q := url.Values{"service": {service}, "client_id": {harnessClientID}}
		if len(r.scopes) > 0 {
			q["scope"] = r.scopes
		}
		if r.offline {
			q.Set("offline_token", "true")
			q.Set("account", r.user)
		}
		req, _ = http.NewRequest("GET", s.realm()+"?"+q.Encode(), nil)
	}
	if r.user != "" || r.key != "" {
		req.SetBasicAuth(r.user, r.key)
	}
	req.Header.Set("User-Agent", "docker/28.2.2 go/go1.24.3")
	client := r.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return tokenResponse{err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	res := tokenResponse{status: resp.StatusCode, raw: string(raw), decisionID: resp.Header.Get("Regoauth-Decision-Id")}
	if err := json.Unmarshal(raw, &res.body); err != nil {
		res.err = fmt.Errorf("the answer is not JSON (HTTP %d): %s", resp.StatusCode, raw)
		return res
	}
	res.refreshToken, _ = res.body["refresh_token"].(string)
	if resp.StatusCode == http.StatusOK {
		tok, _ := res.body["token"].(string)
		res.access, res.err = s.verify(tok, service)
	}
	return res
}

// actions asks for one scope and returns the actions the token grants on it, failing the test
// unless a token was issued.
func (s *server) actions(t *testing.T, user, key, scope string) []string {
	t.Helper()
	r := s.token(tokenRequest{user: user, key: key, scopes: []string{scope}})
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("token for %s as %s: HTTP %d %v %s", scope, user, r.status, r.err, r.raw)
	}
	typ, rest, _ := strings.Cut(scope, ":")
	typ, _, _ = strings.Cut(typ, "(")
	return r.access[typ+":"+rest[:strings.LastIndex(rest, ":")]]
}

// verify checks a token as a registry does, with distribution's own code: through x5c when the
// token has it, else by kid. It returns the access the token carries.
func (s *server) verify(raw, service string) (map[string][]string, error) {
	s.verifyOnce.Do(func() { s.verifyOpts, s.verifyErr = s.verifyOptions() })
	if s.verifyErr != nil {
		return nil, s.verifyErr
	}
	tk, err := disttoken.NewToken(raw, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256})
	if err != nil {
		return nil, err
	}
	opts := s.verifyOpts
	opts.AcceptedAudiences = []string{service}
	claims, err := tk.Verify(opts)
	if err != nil {
		return nil, fmt.Errorf("distribution rejected the token: %w", err)
	}
	access := map[string][]string{}
	for _, a := range claims.Access {
		access[a.Type+":"+a.Name] = append([]string{}, a.Actions...)
	}
	return access, nil
}

func (s *server) verifyOptions() (disttoken.VerifyOptions, error) {
	key, err := tokens.LoadKeyFiles(s.keyFile, "", s.kid)
	if err != nil {
		return disttoken.VerifyOptions{}, err
	}
	roots := x509.NewCertPool()
	if raw, err := os.ReadFile(s.certFile); err == nil {
		certs, err := tokens.ParseCertificatesPEM(raw)
		if err != nil {
			return disttoken.VerifyOptions{}, err
		}
		for _, c := range certs {
			roots.AddCert(c)
		}
	}
	return disttoken.VerifyOptions{TrustedIssuers: []string{s.Issuer}, Roots: roots,
		TrustedKeys: map[string]crypto.PublicKey{key.KID: key.Public()}}, nil
}
