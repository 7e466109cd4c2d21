package helmtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
)

// The chart serves both listeners with TLS from exactly one of four sources, or in plain HTTP
// when the values say so; these tests hold each source to a pod that mounts its Secret where the
// configuration reads the certificate, probes that ask over HTTPS, and regoauth serving what the
// probes ask.

const tlsMount = "/etc/regoauth/tls" // where the configuration reads tls.crt and tls.key

// tlsSource is a way to give the listeners TLS, set over ci/minimal-values.yaml.
type tlsSource struct {
	name   string
	set    []string
	secret string // the Secret the pods mount; empty for plain HTTP
}

// tlsSources are the four sources; minimal-values.yaml chooses tls.generate, which the others
// turn off.
var tlsSources = []tlsSource{
	{"generate", []string{"tls.generate=true"}, "rel-regoauth-tls-self-signed"},
	{"existingSecret", []string{"tls.generate=false", "tls.existingSecret=regoauth-tls"}, "regoauth-tls"},
	{"certManager", []string{"tls.generate=false", "tls.certManager.issuerRef.name=platform-ca"}, "rel-regoauth-tls"},
	{"plainHTTP", []string{"tls.generate=false", "tls.plainHTTP=true"}, ""},
}

var minimalValues = filepath.Join(chart, "ci", "minimal-values.yaml")

// serviceNames are the names of the Service of the release rel in the namespace registry (as
// render names them), in the cluster domain given.
func serviceNames(domain string) []string {
	return []string{"rel-regoauth", "rel-regoauth.registry", "rel-regoauth.registry.svc", "rel-regoauth.registry.svc." + domain}
}

// TestChartTLSSources: each source renders pods that mount its Secret at the folder the
// configuration reads tls.crt and tls.key from, for the token and the metrics listener alike,
// probed over HTTPS; plain HTTP renders neither TLS nor a certificate, probed over HTTP.
func TestChartTLSSources(t *testing.T) {
	for _, src := range tlsSources {
		t.Run(src.name, func(t *testing.T) {
			r := render(t, minimalValues, append(src.set, "metrics.serviceMonitor.enabled=true")...)
			checkPod(t, r)
			checkMounts(t, r)
			checkSecretModes(t, r)
			checkSelectors(t, r)
			pod := r.deployment.Spec.Template.Spec
			c := pod.Containers[0]
			cfg := renderedConfig(t, r)

			wantScheme, wantMetrics := corev1.URISchemeHTTPS, "https"
			if src.secret == "" {
				wantScheme, wantMetrics = corev1.URISchemeHTTP, "http"
			}
			for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != wantScheme {
					t.Errorf("%s probe %+v, want scheme %s", name, p, wantScheme)
				}
			}
			if len(r.serviceMonitors) != 1 {
				t.Fatalf("%d ServiceMonitors", len(r.serviceMonitors))
			}
			scheme := r.serviceMonitors[0].Spec.Endpoints[0].Scheme.String()
			if scheme == "" {
				scheme = "http" // Prometheus' default
			}
			if scheme != wantMetrics {
				t.Errorf("the ServiceMonitor scrapes with scheme %s, want %s", scheme, wantMetrics)
			}

			mounted := secretMountedAt(pod, tlsMount)
			if src.secret == "" {
				if cfg.Listen.TLS != nil || cfg.Metrics.TLS != nil || mounted != "" {
					t.Errorf("plain HTTP: listener TLS %+v, metrics TLS %+v, Secret %q at %s", cfg.Listen.TLS, cfg.Metrics.TLS, mounted, tlsMount)
				}
			} else {
				for name, l := range map[string]listenerConfig{"listen": cfg.Listen, "metrics": cfg.Metrics} {
					if l.TLS == nil || l.TLS.CertFile != tlsMount+"/tls.crt" || l.TLS.KeyFile != tlsMount+"/tls.key" {
						t.Errorf("%s.tls is %+v, want the files of %s", name, l.TLS, tlsMount)
					}
				}
				if mounted != src.secret {
					t.Errorf("%s holds the Secret %q, want %q", tlsMount, mounted, src.secret)
				}
			}

			generated := 0
			for _, s := range r.secrets {
				if s.Type == corev1.SecretTypeTLS {
					generated++
				}
			}
			if want := map[bool]int{true: 1}[src.name == "generate"]; generated != want {
				t.Errorf("%d kubernetes.io/tls Secrets rendered, want %d", generated, want)
			}
			if want := map[bool]int{true: 1}[src.name == "certManager"]; len(r.certificates) != want {
				t.Errorf("%d Certificates rendered, want %d", len(r.certificates), want)
			}
		})
	}
}

// secretMountedAt is the name of the Secret whose volume the container mounts at dir, if any.
func secretMountedAt(pod corev1.PodSpec, dir string) string {
	for _, m := range pod.Containers[0].VolumeMounts {
		if filepath.Clean(m.MountPath) != dir {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				return v.Secret.SecretName
			}
		}
	}
	return ""
}

// TestChartGeneratesTLSCertificate: tls.generate renders a kubernetes.io/tls Secret holding a
// self-signed certificate with an ECDSA P-256 key for the Service's names in tls.clusterDomain and
// tls.extraDNSNames, and nothing else, which verifies as its own CA (ca.crt); it is kept on
// uninstall, and the ServiceMonitor verifies it by the Service's name.
func TestChartGeneratesTLSCertificate(t *testing.T) {
	for _, c := range []struct {
		name string
		set  []string
		want []string
	}{
		{"default", nil, serviceNames("cluster.local")},
		{"another domain and more names", []string{"tls.clusterDomain=cluster.example.", "tls.extraDNSNames={auth.example.com,regoauth.internal}"},
			append(serviceNames("cluster.example"), "auth.example.com", "regoauth.internal")},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := render(t, minimalValues, append(c.set, "metrics.serviceMonitor.enabled=true")...)
			s, ok := r.secrets["rel-regoauth-tls-self-signed"]
			if !ok {
				t.Fatalf("no Secret rel-regoauth-tls-self-signed; rendered %v", slices.Collect(maps.Keys(r.secrets)))
			}
			if s.Type != corev1.SecretTypeTLS || s.Annotations["helm.sh/resource-policy"] != "keep" {
				t.Errorf("the Secret is of type %q with annotations %v, want kubernetes.io/tls kept on uninstall", s.Type, s.Annotations)
			}
			cert := checkServerCertificate(t, s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey], c.want)
			if !bytes.Equal(s.Data["ca.crt"], s.Data[corev1.TLSCertKey]) {
				t.Error("ca.crt is not the certificate itself")
			}
			if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil || !bytes.Equal(cert.RawIssuer, cert.RawSubject) {
				t.Errorf("the certificate is not self-signed: %v", err)
			}
			if cert.IsCA {
				t.Error("the certificate is a CA: it could vouch for any name")
			}
			if d := time.Until(cert.NotAfter); d < 365*24*time.Hour {
				t.Errorf("the certificate expires in %s, with no renewal", d)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(s.Data["ca.crt"])
			for _, name := range append(c.want, "rel-regoauth.other.svc") {
				_, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
				if ours := slices.Contains(c.want, name); (err == nil) != ours {
					t.Errorf("verifying the certificate for %s: %v (a name it should hold: %v)", name, err, ours)
				}
			}

			e := r.serviceMonitors[0].Spec.Endpoints[0]
			if tc := e.TLSConfig; tc == nil || tc.CA.Secret == nil || tc.CA.Secret.Name != s.Name || tc.CA.Secret.Key != "ca.crt" ||
				tc.ServerName == nil || *tc.ServerName != "rel-regoauth.registry.svc" {
				t.Errorf("the ServiceMonitor verifies with %+v, want ca.crt of %s and the Service's name", e.TLSConfig, s.Name)
			}
		})
	}
}

// checkServerCertificate parses a PEM certificate and key: an ECDSA P-256 key pair, the
// certificate holding exactly the names given. It returns the certificate.
func checkServerCertificate(t *testing.T, certPEM, keyPEM []byte, names []string) *x509.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("the certificate and key do not load as a pair: %v", err)
	}
	if k, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("the private key is a %T, want ECDSA P-256", pair.PrivateKey)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("the certificate's key is a %T, want ECDSA P-256", cert.PublicKey)
	}
	if !slices.Equal(cert.DNSNames, names) || len(cert.IPAddresses)+len(cert.URIs)+len(cert.EmailAddresses) != 0 {
		t.Errorf("the certificate holds %v (and %v %v %v), want %v", cert.DNSNames, cert.IPAddresses, cert.URIs, cert.EmailAddresses, names)
	}
	return cert
}

// TestChartCertManagerCertificate: tls.certManager renders a cert-manager Certificate for the
// Service's names in tls.clusterDomain and tls.extraDNSNames with an ECDSA P-256 key, from the
// issuer named, written to the Secret the pods mount, which the chart leaves to cert-manager.
func TestChartCertManagerCertificate(t *testing.T) {
	for _, c := range []struct {
		name      string
		values    string
		set       []string
		names     []string
		issuerRef string
	}{
		{"ci values", filepath.Join(chart, "ci", "cert-manager-values.yaml"), nil,
			append(serviceNames("cluster.example"), "auth.example.com"), "cert-manager.io/ClusterIssuer/platform-ca"},
		{"an Issuer by default", minimalValues, []string{"tls.generate=false", "tls.certManager.issuerRef.name=registry-ca"},
			serviceNames("cluster.local"), "cert-manager.io/Issuer/registry-ca"},
		{"an external issuer", minimalValues, []string{"tls.generate=false", "tls.certManager.issuerRef.name=pca",
			"tls.certManager.issuerRef.kind=AWSPCAClusterIssuer", "tls.certManager.issuerRef.group=awspca.cert-manager.io"},
			serviceNames("cluster.local"), "awspca.cert-manager.io/AWSPCAClusterIssuer/pca"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := render(t, c.values, c.set...)
			checkMounts(t, r)
			if len(r.certificates) != 1 {
				t.Fatalf("%d Certificates rendered, want 1", len(r.certificates))
			}
			cert := r.certificates[0]
			spec := cert.Spec
			if mounted := secretMountedAt(r.deployment.Spec.Template.Spec, tlsMount); spec.SecretName != "rel-regoauth-tls" || mounted != spec.SecretName {
				t.Errorf("the Certificate writes the Secret %q, the pods mount %q at %s", spec.SecretName, mounted, tlsMount)
			}
			if _, ok := r.secrets[spec.SecretName]; ok {
				t.Errorf("the chart renders the Secret %s too, which cert-manager writes", spec.SecretName)
			}
			if !slices.Equal(spec.DNSNames, c.names) || len(spec.IPAddresses)+len(spec.URIs)+len(spec.EmailAddresses) != 0 || spec.CommonName != "" {
				t.Errorf("the Certificate asks for %v (CN %q, %v %v %v), want %v", spec.DNSNames, spec.CommonName, spec.IPAddresses, spec.URIs, spec.EmailAddresses, c.names)
			}
			if pk := spec.PrivateKey; pk == nil || pk.Algorithm != certmanagerv1.ECDSAKeyAlgorithm || pk.Size != 256 ||
				pk.RotationPolicy != certmanagerv1.RotationPolicyAlways {
				t.Errorf("the Certificate's private key is %+v, want ECDSA 256, a new one at each renewal", pk)
			}
			if got := spec.IssuerRef.Group + "/" + spec.IssuerRef.Kind + "/" + spec.IssuerRef.Name; got != c.issuerRef {
				t.Errorf("the Certificate's issuer is %s, want %s", got, c.issuerRef)
			}
			if cert.Name != "rel-regoauth" || cert.Namespace != "" || cert.Labels["app.kubernetes.io/instance"] != "rel" {
				t.Errorf("the Certificate is %s/%s with labels %v", cert.Namespace, cert.Name, cert.Labels)
			}
		})
	}
}

// TestChartTLSSourceRollsThePods: another source of TLS, or another existing Secret, renders
// another pod template, so the pods are replaced with it; the same values render the same one,
// a certificate generated anew (helm template cannot look the kept one up) included.
func TestChartTLSSourceRollsThePods(t *testing.T) {
	template := func(set ...string) string {
		t.Helper()
		b, err := json.Marshal(render(t, minimalValues, set...).deployment.Spec.Template)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	sources := append(slices.Clone(tlsSources), tlsSource{"another existingSecret", []string{"tls.generate=false", "tls.existingSecret=regoauth-tls-2"}, "regoauth-tls-2"})
	seen := map[string]string{}
	for _, src := range sources {
		tpl := template(src.set...)
		if other, ok := seen[tpl]; ok {
			t.Errorf("%s and %s render the same pod template: pods would keep the old source", src.name, other)
		}
		seen[tpl] = src.name
		if again := template(src.set...); again != tpl {
			t.Errorf("%s renders another pod template each time", src.name)
		}
	}
}

// TestChartListenersServeTLS runs regoauth on the configuration rendered for each source, with
// the pod's files laid out as its mounts would (the generated certificate as rendered; for an
// existing Secret and cert-manager's, a certificate of a test CA for the names a client uses, as
// the operator or the issuer would write), and asks each listener what its probes and the
// ServiceMonitor ask, the way they ask: over HTTPS verified for the Service's name, or in plain
// HTTP. A listener with TLS must refuse plain HTTP, and a plain one must fail a TLS handshake.
func TestChartListenersServeTLS(t *testing.T) {
	bin := buildRegoauth(t)
	for _, src := range tlsSources {
		t.Run(src.name, func(t *testing.T) {
			r := render(t, minimalValues, src.set...)
			root := t.TempDir()
			roots := x509.NewCertPool()
			serverName := "rel-regoauth.registry.svc"
			existing := map[string]map[string][]byte{}
			switch src.name {
			case "generate":
				s, ok := r.secrets[src.secret]
				if !ok || !roots.AppendCertsFromPEM(s.Data["ca.crt"]) {
					t.Fatalf("no Secret %s with a ca.crt", src.secret)
				}
			case "existingSecret":
				serverName = "regoauth.example.com"
				existing[src.secret] = issueServerCertificate(t, roots, []string{serverName})
			case "certManager":
				if len(r.certificates) != 1 {
					t.Fatalf("%d Certificates rendered, want 1", len(r.certificates))
				}
				existing[src.secret] = issueServerCertificate(t, roots, r.certificates[0].Spec.DNSNames)
			}
			layOut(t, bin, r, root, existing)

			tokenPort, metricsPort := freePort(t), freePort(t)
			c := r.deployment.Spec.Template.Spec.Containers[0]
			config := filepath.Join(root, strings.TrimPrefix(strings.Join(c.Args, " "), "serve --config "))
			raw, err := os.ReadFile(config)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.ReplaceAll(string(raw), " /etc/regoauth/", " "+root+"/etc/regoauth/")
			for from, to := range map[string]string{
				"addr: :5001": fmt.Sprintf("addr: 127.0.0.1:%d", tokenPort),
				fmt.Sprintf("addr: :%d", port(c, "metrics")): fmt.Sprintf("addr: 127.0.0.1:%d", metricsPort),
			} {
				if strings.Count(text, from) != 1 {
					t.Fatalf("the configuration does not hold %q once:\n%s", from, text)
				}
				text = strings.Replace(text, from, to, 1)
			}
			writeFile(t, config, []byte(text))
			out := startServe(t, bin, config)

			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
			}}
			ports := map[int32]int{5001: tokenPort, port(c, "metrics"): metricsPort}
			get := func(scheme string, containerPort int32, path string) (int, error) {
				resp, err := client.Get(fmt.Sprintf("%s://127.0.0.1:%d%s", strings.ToLower(scheme), ports[containerPort], path))
				if err != nil {
					return 0, err
				}
				defer resp.Body.Close()
				_, _ = io.Copy(io.Discard, resp.Body)
				return resp.StatusCode, nil
			}

			probe := c.StartupProbe.HTTPGet
			deadline := time.Now().Add(15 * time.Second)
			for {
				status, err := get(string(probe.Scheme), port(c, probe.Port.StrVal), probe.Path)
				if err == nil && status == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the startup probe (%s %s) never succeeded: %d, %v\n%s", probe.Scheme, probe.Path, status, err, out)
				}
				time.Sleep(200 * time.Millisecond)
			}
			for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				// /readyz answers 503 (no Redis here), but over the probe's scheme.
				if _, err := get(string(p.HTTPGet.Scheme), port(c, p.HTTPGet.Port.StrVal), p.HTTPGet.Path); err != nil {
					t.Errorf("the %s probe gets no answer: %v", name, err)
				}
			}
			metricsScheme := "http"
			if renderedConfig(t, r).Metrics.TLS != nil {
				metricsScheme = "https"
			}
			if status, err := get(metricsScheme, port(c, "metrics"), "/metrics"); err != nil || status != http.StatusOK {
				t.Errorf("%s /metrics: %d, %v", metricsScheme, status, err)
			}

			// The other scheme fails: the listeners serve only what they were given.
			other := map[corev1.URIScheme]string{corev1.URISchemeHTTPS: "http", corev1.URISchemeHTTP: "https"}[probe.Scheme]
			for _, p := range []int32{5001, port(c, "metrics")} {
				if status, err := get(other, p, "/healthz"); err == nil && status == http.StatusOK {
					t.Errorf("port %d answers %s too", p, other)
				}
			}
		})
	}
}

// issueServerCertificate writes a certificate for names, with an ECDSA P-256 key, issued by a
// CA of its own which it adds to roots: what an operator or cert-manager would put in a
// kubernetes.io/tls Secret.
func issueServerCertificate(t *testing.T, roots *x509.CertPool, names []string) map[string][]byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	roots.AddCert(ca)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"ca.crt":                pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServe runs regoauth serve on config until the test ends, and returns its output so far
// when asked (for a failure's message).
func startServe(t *testing.T, bin, config string) fmt.Stringer {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(bin, "serve", "--config", config)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return out
}

// syncBuffer is a bytes.Buffer a process writes to while the test reads it.
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
