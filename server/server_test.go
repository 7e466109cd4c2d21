package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/policy"
)

var ctx = context.Background()

// testConfig is a complete configuration over files in a temporary folder: a signing key, a
// bolt store, the built-in policy.
func testConfig(t testing.TB) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := Defaults()
	cfg.Services = []string{"registry.example.com"}
	cfg.Listen.Addr = "127.0.0.1:0"
	cfg.Signing.KeyFile, cfg.Signing.CertFile = filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	if _, err := secretfile.EnsureSigningKey(cfg.Signing.KeyFile, cfg.Signing.CertFile, jose.ES256, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	cfg.Store.URL = Secret{Value: "bolt://" + filepath.Join(dir, "store.db")}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(ctx, cfg, Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// get sends a request to h and returns the status and the decoded JSON body (nil if not JSON).
func get(t *testing.T, h http.Handler, path string) (int, map[string]any, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	var body map[string]any
	json.Unmarshal(w.Body.Bytes(), &body)
	return w.Code, body, w.Body.String()
}

func TestRoutes(t *testing.T) {
	s := newServer(t, testConfig(t))
	h, err := s.Handler()
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, h, "/healthz"); code != 200 || body["status"] != "ok" {
		t.Fatalf("/healthz: %d %v", code, body)
	}
	if code, body, raw := get(t, h, "/readyz"); code != 200 || body["status"] != "ready" || body["store"] != "ok" || !strings.Contains(body["policy"].(string), "builtin") {
		t.Fatalf("/readyz: %d %s", code, raw)
	}
	code, body, raw := get(t, h, "/.well-known/jwks.json")
	if keys, _ := body["keys"].([]any); code != 200 || len(keys) != 1 {
		t.Fatalf("jwks: %d %s", code, raw)
	}
	if code, body, raw := get(t, h, "/token?service=registry.example.com&scope=repository:a:pull"); code != 200 || body["token"] == "" {
		t.Fatalf("anonymous token request: %d %s", code, raw)
	}
	if code, body, _ := get(t, h, "/admin/v1/whoami"); code != http.StatusUnauthorized || body["code"] != "unauthorized" {
		t.Fatalf("admin without a key: %d %v", code, body)
	}
	if code, _, raw := get(t, h, "/metrics"); code != 200 || !strings.Contains(raw, `regoauth_build_info{goversion=`) || !strings.Contains(raw, `version="test"`) {
		t.Fatalf("/metrics: %d\n%.400s", code, raw)
	}
	if code, body, _ := get(t, h, "/nowhere"); code != 404 || body["error"] != "not found" {
		t.Fatalf("unknown path: %d %v", code, body)
	}
}

// TestMetricsOnTheirOwnListener: with a metrics listener, the main one does not serve them.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	cfg := testConfig(t)
	cfg.Metrics = &Listener{Addr: "127.0.0.1:0"}
	h, err := newServer(t, cfg).Handler()
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, h, "/metrics"); code != 404 {
		t.Fatalf("/metrics on the main listener: %d", code)
	}
}

// TestStoreDown: a Redis store that does not answer still opens, but the server is not ready
// and a check fails.
func TestStoreDown(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store.URL = Secret{Value: "redis://127.0.0.1:1/0?dial_timeout=200ms"}
	s := newServer(t, cfg)
	h, err := s.Handler()
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, h, "/readyz"); code != 503 || body["status"] != "not ready" || body["store"] != "unreachable" {
		t.Fatalf("/readyz with the store down: %d %v", code, body)
	}
	if err := s.Check(ctx); err == nil || !strings.Contains(err.Error(), "the store does not answer") {
		t.Fatalf("Check with the store down: %v", err)
	}
	if err := newServer(t, testConfig(t)).Check(ctx); err != nil {
		t.Fatalf("Check with the store up: %v", err)
	}
}

func TestNewRefusesWhatCannotWork(t *testing.T) {
	for name, edit := range map[string]func(c *Config){
		"missing signing key": func(c *Config) { c.Signing.KeyFile = "/nonexistent/key.pem" },
		"unreadable TLS":      func(c *Config) { c.Listen.TLS = &TLS{CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"} },
		"short refresh secret": func(c *Config) {
			c.RefreshTokens.Secrets = []Secret{{Value: "short"}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			edit(&cfg)
			if s, err := New(ctx, cfg, Options{}); err == nil {
				s.Close()
				t.Fatal("accepted")
			}
		})
	}
}

// TestLimitInFlight: once max requests are being served, the next is refused at once with a
// 503 the registry clients understand, and counted; a finished request frees its slot.
func TestLimitInFlight(t *testing.T) {
	reg := prometheus.NewRegistry()
	entered, release := make(chan struct{}, 10), make(chan struct{})
	h := limitInFlight(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" {
			return
		}
		entered <- struct{}{}
		<-release
	}), 1, reg)
	serve := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/token", nil))
		return w
	}
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serve() }()
	<-entered
	w := serve()
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), "UNAVAILABLE") {
		t.Fatalf("over the limit: %d %v %s", w.Code, w.Header(), w.Body)
	}
	// A liveness probe is answered while the slots are taken: a pod whose requests pile up on a
	// slow store is overloaded, not dead, and a restart would only drop its requests. Readiness
	// is refused with the rest, which takes the pod out of the load balancer meanwhile.
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusServiceUnavailable} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != want {
			t.Errorf("GET %s over the limit: %d, want %d", path, w.Code, want)
		}
	}
	close(release)
	if w := <-done; w.Code != http.StatusOK {
		t.Fatalf("the request within the limit: %d", w.Code)
	}
	if w := serve(); w.Code != http.StatusOK {
		t.Fatalf("after the slot was freed: %d", w.Code)
	}
	want := "# HELP regoauth_overload_rejections_total Requests refused because max_in_flight requests were already being served.\n" +
		"# TYPE regoauth_overload_rejections_total counter\nregoauth_overload_rejections_total 2\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "regoauth_overload_rejections_total"); err != nil {
		t.Fatal(err)
	}
}

// tlsFiles writes a self-signed certificate for 127.0.0.1 and its key, and returns their paths
// and a pool that trusts the certificate.
func tlsFiles(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

// freeAddr is a loopback address nobody listens on right now.
func freeAddr(t *testing.T) string {
	return "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
}

// TestListenServesTLSAndStops: a TLS listener serves with its certificate, and ends without an
// error once its context does, refusing connections afterwards.
func TestListenServesTLSAndStops(t *testing.T) {
	certFile, keyFile, roots := tlsFiles(t)
	addr := freeAddr(t)
	actor, err := Listen("test", Listener{Addr: addr, TLS: &TLS{CertFile: certFile, KeyFile: keyFile}},
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") }),
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- actor(runCtx) }()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	var resp *http.Response
	for i := 0; ; i++ {
		if resp, err = client.Get("https://" + addr + "/"); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" || resp.TLS == nil {
		t.Fatalf("response %q, TLS %v", body, resp.TLS != nil)
	}
	client.CloseIdleConnections()

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("actor ended with %v", err)
		}
	case <-time.After(shutdownGrace):
		t.Fatal("listener did not stop")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still accepting connections after stopping")
	}

	if _, err := Listen("swapped", Listener{Addr: freeAddr(t), TLS: &TLS{CertFile: keyFile, KeyFile: certFile}}, nil, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a listener with its certificate and key swapped was accepted")
	}
}

// runServer runs a server on a free loopback address until the returned stop is called; Run's
// result arrives on the channel. The store holds one account, "alice", whose API key is
// returned.
func runServer(t *testing.T, cfg Config) (addr, key string, stop context.CancelFunc, done <-chan error) {
	t.Helper()
	cfg.Listen.Addr = freeAddr(t)
	s := newServer(t, cfg)
	now := time.Now().UTC()
	key, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store().CreateAccount(ctx, keystore.Account{Name: "alice", Created: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.Store().CreateKey(ctx, keystore.Key{ID: id, Account: "alice", Name: "test", Hash: hash, Created: now}); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- s.Run(runCtx) }()
	t.Cleanup(cancel)
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + cfg.Listen.Addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i == 100 {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cfg.Listen.Addr, key, cancel, errc
}

// slowRequest starts a token request (POST, the password grant) whose body is held back until
// the returned function is called: a request in flight that a stop must wait for. (A request
// whose headers are still arriving when the stop begins is not in flight: net/http drops it.)
func slowRequest(t *testing.T, addr, key string) (finish func(), answer <-chan string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	form := url.Values{"grant_type": {"password"}, "service": {"registry.example.com"}, "scope": {"repository:a:pull"},
		"username": {"alice"}, "password": {key}}.Encode()
	fmt.Fprintf(conn, "POST /token HTTP/1.1\r\nHost: regoauth\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(form), form[:10])
	out := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		out <- strconv.Itoa(resp.StatusCode) + " " + string(raw)
	}()
	return func() { io.WriteString(conn, form[10:]) }, out
}

// TestShutdownDrainsThenCloses: once told to stop, the server answers /readyz with 503 at once
// but goes on serving for the drain delay; then new
// connections are refused, the request in flight is answered, and Run returns without error
// well within the grace period.
func TestShutdownDrainsThenCloses(t *testing.T) {
	cfg := testConfig(t)
	cfg.Shutdown = Shutdown{GracePeriod: Duration(5 * time.Second), DrainDelay: Duration(600 * time.Millisecond)}
	addr, key, stop, done := runServer(t, cfg)
	finish, answer := slowRequest(t, addr, key)
	time.Sleep(100 * time.Millisecond) // the slow request's headers have arrived

	stopped := time.Now()
	stop()
	time.Sleep(50 * time.Millisecond)
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(raw), `"shutdown":"draining"`) {
		t.Fatalf("/readyz during the drain delay: %d %s", resp.StatusCode, raw)
	}
	resp, err = http.Get("http://" + addr + "/token?service=registry.example.com&scope=repository:a:pull")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a token during the drain delay: %d", resp.StatusCode)
	}

	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			// A connection caught in the backlog as the listener closes is reset rather than
			// refused: either way no new connection is served.
			if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after the drain delay: %v, want the connection refused", err)
			}
			break
		}
		conn.Close()
		if time.Since(stopped) > 3*time.Second {
			t.Fatal("the listener still accepts connections 3s after the stop")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(stopped); d < 600*time.Millisecond {
		t.Fatalf("the listener closed %s after the stop, before the drain delay", d)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	default:
	}
	finish()
	if a := <-answer; !strings.HasPrefix(a, "200 ") || !strings.Contains(a, `"access_token"`) {
		t.Fatalf("the request in flight: %s", a)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within the grace period")
	}
}

// TestShutdownCutsOffAtTheGracePeriod: a request still in flight when the grace period ends is
// cut off, and Run says so.
func TestShutdownCutsOffAtTheGracePeriod(t *testing.T) {
	cfg := testConfig(t)
	cfg.Shutdown = Shutdown{GracePeriod: Duration(time.Second)}
	addr, key, stop, done := runServer(t, cfg)
	_, answer := slowRequest(t, addr, key)
	time.Sleep(100 * time.Millisecond)
	stopped := time.Now()
	stop()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "cut off") {
			t.Fatalf("Run: %v", err)
		}
		if d := time.Since(stopped); d < time.Second || d > 2*time.Second {
			t.Fatalf("Run returned %s after the stop, want the 1s grace period", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if a := <-answer; !strings.HasPrefix(a, "error") {
		t.Fatalf("the request cut off: %s", a)
	}
}

// The admin API gets its paths as sent: a DELETE of .../repositories/shop/x/../premium is never
// redirected to .../shop/premium (clients follow a 307 with the same method and key).
func TestAdminPathsAreNotCleaned(t *testing.T) {
	h, err := newServer(t, testConfig(t)).Handler()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/admin/v1/repositories/shop/x/../premium", "/admin/v1/repositories/shop//premium", "/admin/v1/accounts/../keys"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("DELETE", path, nil))
		if w.Code/100 == 3 || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			t.Errorf("DELETE %s: HTTP %d (Location %q), want the admin API's own answer", path, w.Code, w.Header().Get("Location"))
		}
	}
}

// /readyz is open to whoever reaches the listener: it says a bundle's newest load failed, not
// why, since the reason names the bundle server's address, path and query (a token in it).
func TestReadyzSaysABundleFailsNotWhy(t *testing.T) {
	cfg := testConfig(t)
	cfg.Policy.OPA = OPAConfig{Inline: []byte(`{"services":{"bundles":{"url":"http://127.0.0.1:1/internal-bundles"}},` +
		`"bundles":{"extra":{"service":"bundles","resource":"/shop/bundle.tar.gz?access_token=s3cr3t-bundle-token",` +
		`"polling":{"min_delay_seconds":1,"max_delay_seconds":2}}}}`)}
	s := newServer(t, cfg)
	h, err := s.Handler()
	if err != nil {
		t.Fatal(err)
	}
	var raw string
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(raw, `"error"`); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never showed the bundle failing: %s", raw)
		}
		_, _, raw = get(t, h, "/readyz")
	}
	if !strings.Contains(raw, publicLoadError) {
		t.Fatalf("/readyz does not say the load failed: %s", raw)
	}
	for _, leak := range []string{"127.0.0.1:1", "internal-bundles", "s3cr3t-bundle-token"} {
		if strings.Contains(raw, leak) {
			t.Errorf("/readyz reveals %q: %s", leak, raw)
		}
	}
	// The engine keeps the reason for the log and the status page.
	if st := s.engine.Status(); !slices.ContainsFunc(st.Bundles, func(b policy.BundleStatus) bool { return strings.Contains(b.Error, "127.0.0.1:1") }) {
		t.Fatalf("the engine's status lost the reason: %+v", st.Bundles)
	}
}
