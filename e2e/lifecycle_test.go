package e2e

import (
	"bufio"
	"bytes"
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
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	disttoken "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/tokens"
)

// loadResult is one token request of a load client.
type loadResult struct {
	start, end time.Time
	status     int
	token      string
	err        error
}

// tokenLoad runs clients goroutines requesting tokens without pause, each over its own kept-alive
// connections, until the returned function is called; that returns every result. refresh, when
// set, makes one more client that uses it (grant_type=refresh_token) instead of the key.
func tokenLoad(s *server, clients int, user, key, refresh, scope string) func() []loadResult {
	var mu sync.Mutex
	var all []loadResult
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := func(refresh string) {
		defer wg.Done()
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
		defer hc.CloseIdleConnections()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var req *http.Request
			if refresh != "" {
				form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "service": {s.Services[0]},
					"client_id": {harnessClientID}, "scope": {scope}}
				req, _ = http.NewRequest("POST", s.realm(), strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			} else {
				q := url.Values{"service": {s.Services[0]}, "client_id": {harnessClientID}, "scope": {scope}}
				req, _ = http.NewRequest("GET", s.realm()+"?"+q.Encode(), nil)
				req.SetBasicAuth(user, key)
			}
			r := loadResult{start: time.Now()}
			resp, err := hc.Do(req)
			if err == nil {
				var body struct {
					Token string `json:"token"`
				}
				raw, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				r.status, err = resp.StatusCode, rerr
				json.Unmarshal(raw, &body)
				r.token = body.Token
			}
			r.end, r.err = time.Now(), err
			mu.Lock()
			all = append(all, r)
			mu.Unlock()
			if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
				time.Sleep(10 * time.Millisecond) // the server is gone; do not spin
			}
		}
	}
	for range clients {
		wg.Add(1)
		go client("")
	}
	if refresh != "" {
		wg.Add(1)
		go client(refresh)
	}
	return func() []loadResult {
		close(stop)
		wg.Wait()
		return all
	}
}

// verifiedBy checks a token as a registry with certFiles in its rootcertbundle does, with
// distribution's own verifier.
func verifiedBy(raw, service string, certFiles ...string) error {
	roots := x509.NewCertPool()
	for _, f := range certFiles {
		pemBytes, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		certs, err := tokens.ParseCertificatesPEM(pemBytes)
		if err != nil {
			return err
		}
		roots.AddCert(certs[0])
	}
	tk, err := disttoken.NewToken(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return err
	}
	_, err = tk.Verify(disttoken.VerifyOptions{TrustedIssuers: []string{serveIssuer}, AcceptedAudiences: []string{service}, Roots: roots})
	return err
}

// listenerCert is a TLS certificate for localhost and its key, in files.
type listenerCert struct {
	cert, key string
	der       []byte
}

func newListenerCert(t *testing.T, dir, name string) listenerCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	c := listenerCert{cert: filepath.Join(dir, name+".crt"), key: filepath.Join(dir, name+".key"), der: der}
	writeFile(t, c.cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
	writeFile(t, c.key, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})), 0o600)
	return c
}

// servedCert is the certificate a TLS listener presents to a new connection.
func servedCert(t *testing.T, addr string) []byte {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}

// metricsOverTLS sums the samples of a metric, read from a metrics listener served over TLS
// with a certificate roots trusts.
func metricsOverTLS(t *testing.T, addr string, roots *x509.CertPool, name string, labels ...string) float64 {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := hc.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return sumSamples(resp.Body, name, labels...)
}

// reloadWith sends sig to the server and returns its log record about the reload it caused: the
// message says whether the configuration was reloaded or refused.
func (s *server) reloadWith(t *testing.T, sig os.Signal) logRecord {
	t.Helper()
	mark := s.mark()
	if err := s.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	var rec logRecord
	s.proc.waitFor(t, "a reload log line", func() bool {
		for _, r := range s.proc.out.records(mark, "") {
			if r["msg"] == "configuration reloaded" || r["msg"] == reloadRefused {
				rec = r
				return true
			}
		}
		return false
	})
	return rec
}

const reloadRefused = "configuration reload refused; the running configuration keeps serving"

// jwksKids are the kids /.well-known/jwks.json publishes.
func (s *server) jwksKids(t *testing.T) []string {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	json.NewDecoder(resp.Body).Decode(&set)
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	return kids
}

// TestSIGHUPReloadsUnderLoad rotates the signing key of a running `regoauth serve` three times
// while seven clients request tokens without pause (six with an API key, one with a refresh
// token), each rotation done as operators should: the next key published first (SIGHUP), then
// swapped in with the old one still published (SIGHUP). Between the two steps a configuration
// that must be refused is installed and signalled — unparseable YAML, a certificate that is not
// the key's, a new listen address — and each is refused with a log line naming the problem and
// counted, while the running key goes on signing. The first swap also adds a registry service,
// rotates the refresh token secrets (new first, old still verifying) and renews the metrics
// listener's TLS certificate. Not one request fails; every token is verified by distribution's
// verifier trusting only the key that should have signed it at that moment — the old key before
// the SIGHUP of a swap, the new one after the server logged the reload — and by a registry
// trusting all four; the reload metrics count six successes and three refusals. Finally the old
// refresh secret is dropped: a refresh token signed with it is refused, one signed with the new
// secret still works.
func TestSIGHUPReloadsUnderLoad(t *testing.T) {
	dir := t.TempDir()
	regA, regB := "registry-a.example.com", "registry-b.example.com"
	metricsAddr := freeAddr(t)
	tls1, tls2 := newListenerCert(t, dir, "metrics-1"), newListenerCert(t, dir, "metrics-2")
	roots := x509.NewCertPool()
	for _, c := range [][]byte{tls1.der, tls2.der} {
		cert, _ := x509.ParseCertificate(c)
		roots.AddCert(cert)
	}
	secret1 := writeFile(t, filepath.Join(dir, "refresh-1"), strings.Repeat("1", 40), 0o600)
	secret2 := writeFile(t, filepath.Join(dir, "refresh-2"), strings.Repeat("2", 40), 0o600)
	// Signing keys 0 (the server's first, generated by the harness) to 3.
	keys := []string{dir}
	for _, name := range []string{"k1", "k2", "k3"} {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o700)
		generateSigningKey(t, d, "ES256", false)
		keys = append(keys, d)
	}
	keyFile := func(i int) string { return filepath.Join(keys[i], "signing-key.pem") }
	certFile := func(i int) string { return filepath.Join(keys[i], "signing-cert.pem") }
	metrics := func(c listenerCert) string {
		return fmt.Sprintf("reload: {watch: false}\nmetrics: {addr: %q, tls: {cert_file: %q, key_file: %q}}", metricsAddr, c.cert, c.key)
	}

	s := startServer(t, serveConfig{dir: dir, services: []string{regA}, x5c: true, refreshSecrets: []string{secret1}, extra: metrics(tls1)})
	key := s.account(t, "alice")
	s.admin(t, "grants", "add", "--account", "alice", "--repo", "image", "--actions", "pull")
	oldRefresh := s.token(tokenRequest{user: "alice", key: key, offline: true}).refreshToken
	if oldRefresh == "" {
		t.Fatal("no refresh token at login")
	}
	if r := s.token(tokenRequest{user: "alice", key: key, service: regB, scopes: []string{"repository:image:pull"}}); r.status == http.StatusOK {
		t.Fatalf("a token for %s before it is configured", regB)
	}
	if !bytes.Equal(servedCert(t, metricsAddr), tls1.der) {
		t.Fatal("the metrics listener does not present its certificate")
	}

	// What the configuration file says now; every step rewrites all of it.
	signing, publish := 0, []int{}
	services, secrets, metricsCert := []string{regA}, []string{secret1}, tls1
	current := func(c *serveConfig) {
		c.keyFile, c.certFile = keyFile(signing), certFile(signing)
		c.publish = nil
		for _, p := range publish {
			c.publish = append(c.publish, certFile(p))
		}
		c.services, c.refreshSecrets, c.extra = services, secrets, metrics(metricsCert)
	}
	refused := []struct {
		name, want string
		install    func()
	}{
		{"unparseable YAML", "regoauth.yaml", func() { writeFile(t, s.configFile(), "issuer: [regoauth\n", 0o600) }},
		{"a certificate that is not the key's", "does not belong to the signing key", func() {
			s.rewrite(t, func(c *serveConfig) { current(c); c.keyFile = keyFile(signing + 1) })
		}},
		{"a new listen address", "listen.addr", func() {
			s.rewrite(t, func(c *serveConfig) { current(c); c.addr = "localhost:1" })
		}},
	}
	type swap struct{ sent, done time.Time }
	var swaps []swap
	var newRefresh string

	stopLoad := tokenLoad(s, 6, "alice", key, oldRefresh, "repository:image:pull")
	time.Sleep(300 * time.Millisecond)
	for i, bad := range refused {
		// Publish the next key.
		publish = []int{i + 1}
		s.rewrite(t, current)
		if rec := s.reloadWith(t, syscall.SIGHUP); rec["msg"] != "configuration reloaded" {
			t.Fatalf("publishing key %d: %v", i+1, rec)
		}
		if kids := s.jwksKids(t); len(kids) != 2 {
			t.Fatalf("the JWKS publishes %v, want the signing key and the next", kids)
		}
		time.Sleep(200 * time.Millisecond)

		// A configuration the server must refuse.
		bad.install()
		rec := s.reloadWith(t, syscall.SIGHUP)
		if rec["msg"] != reloadRefused || rec["level"] != "ERROR" || !strings.Contains(rec["error"], bad.want) {
			t.Fatalf("%s: %v, want a refusal naming %q", bad.name, rec, bad.want)
		}
		time.Sleep(200 * time.Millisecond)

		// Swap: the next key signs, the old one stays published.
		signing, publish = i+1, []int{i}
		if i == 0 {
			services, secrets, metricsCert = []string{regA, regB}, []string{secret2, secret1}, tls2
		}
		s.rewrite(t, current)
		sent := time.Now()
		if rec := s.reloadWith(t, syscall.SIGHUP); rec["msg"] != "configuration reloaded" {
			t.Fatalf("swapping in key %d: %v", i+1, rec)
		}
		swaps = append(swaps, swap{sent, time.Now()})
		if i == 0 {
			if !bytes.Equal(servedCert(t, metricsAddr), tls2.der) {
				t.Fatal("the metrics listener still presents the old certificate after the reload")
			}
			if r := s.token(tokenRequest{user: "alice", key: key, service: regB, scopes: []string{"repository:image:pull"}}); r.status != http.StatusOK {
				t.Fatalf("no token for the added service %s: HTTP %d %s", regB, r.status, r.raw)
			}
			if newRefresh = s.token(tokenRequest{user: "alice", key: key, offline: true}).refreshToken; newRefresh == "" {
				t.Fatal("no refresh token after the secrets rotated")
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	results := stopLoad()

	// Not one request failed.
	failed := 0
	for _, r := range results {
		if r.err != nil || r.status != http.StatusOK {
			if failed++; failed <= 3 {
				t.Errorf("a token request failed during the reloads: HTTP %d %v", r.status, r.err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d token requests failed", failed, len(results))
	}
	// Every token was signed by the key that should have signed it then: its kid names the key,
	// and distribution's verifier trusting that key alone accepts it.
	all := []string{certFile(0), certFile(1), certFile(2), certFile(3)}
	keyOf := map[string]int{}
	for k := range keys {
		key, err := tokens.LoadKeyFiles(keyFile(k), "", tokens.KIDThumbprint)
		if err != nil {
			t.Fatal(err)
		}
		keyOf[key.KID] = k
	}
	signedBy := make([]int, len(keys))
	for _, r := range results {
		lowest, highest := 0, 0 // the swaps done before it started, and begun before it ended
		for _, sw := range swaps {
			if sw.done.Before(r.start) {
				lowest++
			}
			if sw.sent.Before(r.end) {
				highest++
			}
		}
		tk, err := disttoken.NewToken(r.token, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		signer, ok := keyOf[tk.JWT.Headers[0].KeyID]
		if !ok {
			t.Fatalf("a token with kid %q, of none of the keys", tk.JWT.Headers[0].KeyID)
		}
		if err := verifiedBy(r.token, regA, certFile(signer)); err != nil {
			t.Fatalf("a token with the kid of key %d is not verified by key %d: %v", signer, signer, err)
		}
		if signer < lowest || signer > highest {
			t.Fatalf("a token requested between %s and %s was signed by key %d, want key %d to %d",
				r.start.Format(time.StampMicro), r.end.Format(time.StampMicro), signer, lowest, highest)
		}
		if err := verifiedBy(r.token, regA, all...); err != nil {
			t.Fatalf("a registry trusting every key refuses a token: %v", err)
		}
		signedBy[signer]++
	}
	for k, n := range signedBy {
		if n == 0 {
			t.Fatalf("key %d signed no token: %v", k, signedBy)
		}
	}
	success := metricsOverTLS(t, metricsAddr, roots, "regoauth_config_reloads_total", `result="success"`)
	failure := metricsOverTLS(t, metricsAddr, roots, "regoauth_config_reloads_total", `result="failure"`)
	if success != 6 || failure != 3 || metricsOverTLS(t, metricsAddr, roots, "regoauth_config_last_reload_successful") != 1 {
		t.Fatalf("reloads counted: %v successes, %v failures; want 6 and 3", success, failure)
	}

	// The old refresh secret dropped: what it signed is refused, what the new one signed is not.
	secrets = []string{secret2}
	s.rewrite(t, current)
	if rec := s.reloadWith(t, syscall.SIGHUP); rec["msg"] != "configuration reloaded" {
		t.Fatalf("dropping the old refresh secret: %v", rec)
	}
	if r := s.token(tokenRequest{refresh: oldRefresh, scopes: []string{"repository:image:pull"}}); r.status != http.StatusUnauthorized {
		t.Fatalf("a refresh token of the dropped secret: HTTP %d %s", r.status, r.raw)
	}
	q := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {newRefresh}, "service": {regA}, "scope": {"repository:image:pull"}}
	resp, err := http.PostForm(s.realm(), q)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Token string `json:"token"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || verifiedBy(body.Token, regA, certFile(3)) != nil {
		t.Fatalf("a refresh token of the new secret: HTTP %d", resp.StatusCode)
	}
	t.Logf("%d token requests during 9 SIGHUPs (6 reloads, 3 refusals), 0 failures; tokens signed per key: %v", len(results), signedBy)
}

// TestSIGTERMDrainsInFlightRequests sends SIGTERM to `regoauth serve` (shutdown: drain_delay
// 1.5s, grace_period 10s) while eight clients request tokens over kept-alive connections and one
// request is in flight, its body still being sent: /readyz answers 503 at once while tokens are
// still issued through the drain delay, then the listener closes and new connections are
// refused, the request in flight gets its token, no client sees an error other than a refused
// connection, and the process exits 0 well within the grace period.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	const drainDelay, grace = 1500 * time.Millisecond, 10 * time.Second
	s := startServer(t, serveConfig{extra: fmt.Sprintf("shutdown: {grace_period: %s, drain_delay: %s}", grace, drainDelay)})
	key := s.account(t, "alice")
	s.admin(t, "grants", "add", "--account", "alice", "--repo", "image", "--actions", "pull")

	// A request in flight across the shutdown: its headers are sent, its body comes later.
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	form := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {key}, "service": {s.Services[0]},
		"scope": {"repository:image:pull"}}.Encode()
	fmt.Fprintf(conn, "POST /token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
		s.Addr, len(form), form[:10])
	slow := make(chan tokenResponse, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			slow <- tokenResponse{err: err}
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		slow <- tokenResponse{status: resp.StatusCode, raw: string(raw)}
	}()

	stopLoad := tokenLoad(s, 8, "alice", key, "", "repository:image:pull")
	time.Sleep(time.Second)
	issued := func(results []loadResult, from, to time.Time) int {
		n := 0
		for _, r := range results {
			if r.err == nil && r.status == http.StatusOK && r.end.After(from) && r.end.Before(to) {
				n++
			}
		}
		return n
	}
	sent := time.Now()
	if err := s.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notReady := eventually(t, time.Second, "/readyz answering 503 after SIGTERM", func() bool {
		code, body := s.readyz()
		return code == http.StatusServiceUnavailable && body["shutdown"] == "draining"
	})
	var closedAfter time.Duration
	eventually(t, grace, "new connections refused", func() bool {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return false
		}
		if errors.Is(err, syscall.ECONNRESET) {
			// Accepted by the kernel into the listener's backlog just as the listener closed:
			// reset with it. The next dial tells.
			return false
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("a new connection after the listener closed: %v, want it refused", err)
		}
		closedAfter = time.Since(sent)
		return true
	})
	if closedAfter < drainDelay {
		t.Fatalf("the listener closed %s after SIGTERM, before the drain delay of %s", closedAfter, drainDelay)
	}
	// The listener is closed; the request in flight is still being served.
	select {
	case <-s.proc.exited:
		t.Fatal("regoauth serve exited with a request in flight")
	default:
	}
	io.WriteString(conn, form[10:])
	var inFlight tokenResponse
	select {
	case inFlight = <-slow:
	case <-time.After(grace):
		t.Fatal("the request in flight was not answered")
	}
	var tok struct {
		Token string `json:"token"`
	}
	json.Unmarshal([]byte(inFlight.raw), &tok)
	if _, err := s.verify(tok.Token, s.Services[0]); inFlight.err != nil || inFlight.status != http.StatusOK || err != nil {
		t.Fatalf("the request in flight at the shutdown: %v HTTP %d %s", inFlight.err, inFlight.status, inFlight.raw)
	}
	select {
	case <-s.proc.exited:
	case <-time.After(grace):
		t.Fatalf("regoauth serve did not exit within the grace period of %s", grace)
	}
	exitedAfter := time.Since(sent)
	if s.proc.err != nil {
		t.Fatalf("regoauth serve exited with %v after SIGTERM", s.proc.err)
	}
	time.Sleep(100 * time.Millisecond)
	results := stopLoad()

	var refusedN, failed int
	for _, r := range results {
		var op *net.OpError
		switch {
		// Refused: the connection was not made (refused, or reset while the listener closed
		// under the connection attempt), so no request was sent.
		case errors.As(r.err, &op) && op.Op == "dial":
			refusedN++
		case r.err != nil || r.status != http.StatusOK:
			if failed++; failed <= 3 {
				t.Errorf("a request failed in flight: HTTP %d %v", r.status, r.err)
			}
		}
	}
	duringDrain := issued(results, sent.Add(notReady), sent.Add(closedAfter))
	t.Logf("%d token requests: %d issued before SIGTERM, %d issued while /readyz said 503, %d refused after the listener closed, %d failed; /readyz 503 %s after SIGTERM, listener closed after %s, exit 0 after %s",
		len(results), issued(results, time.Time{}, sent), duringDrain, refusedN, failed, notReady.Round(time.Millisecond), closedAfter.Round(time.Millisecond), exitedAfter.Round(time.Millisecond))
	if failed > 0 {
		t.Fatalf("%d requests failed in flight", failed)
	}
	if duringDrain == 0 {
		t.Fatal("no token was issued while /readyz said not ready, during the drain delay")
	}
	if refusedN == 0 {
		t.Fatal("no client saw its connection refused after the listener closed")
	}
	if got := s.proc.out.records(0, "listeners closed; every request in flight was answered"); len(got) != 1 {
		t.Fatalf("log lines of the stop: %v", got)
	}
}
