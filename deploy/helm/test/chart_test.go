package helmtest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Masterminds/sprig/v3"
	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const chart = "../regoauth"

// helm returns the helm program: skipped without it, a failure under REGOAUTH_E2E=1 (CI).
func helm(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", "helm"); fileExists(p) {
			return p
		}
	}
	if os.Getenv("REGOAUTH_E2E") == "1" {
		t.Fatal("helm is not installed, and REGOAUTH_E2E=1 requires it")
	}
	t.Skip("helm is not installed")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// valuesFiles are the chart's ci/*.yaml, each a way to install it.
func valuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chart, "ci", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("values files in %s/ci: %v, %v", chart, files, err)
	}
	return files
}

func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(helm(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// rendered is one install's manifests, decoded.
type rendered struct {
	values          string
	set             []string // --set values
	deployment      *appsv1.Deployment
	services        []*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceAccounts []*corev1.ServiceAccount
	pdbs            []*policyv1.PodDisruptionBudget
	serviceMonitors []*monitoringv1.ServiceMonitor
	networkPolicies []*networkingv1.NetworkPolicy
	certificates    []*certmanagerv1.Certificate
}

// setArgs are helm's arguments for values: key=value for --set, or a flag of its own
// ("--set-json=extraVolumes=[...]").
func setArgs(set []string) []string {
	var args []string
	for _, s := range set {
		if strings.HasPrefix(s, "--") {
			args = append(args, s)
		} else {
			args = append(args, "--set", s)
		}
	}
	return args
}

// render runs helm template with a values file and values to set (setArgs), and decodes every
// document strictly into its API type: an unknown or misplaced field, a wrong type or a
// duplicate key is an error, as the API server's strict field validation would make it.
func render(t *testing.T, values string, set ...string) *rendered {
	t.Helper()
	args := append([]string{"template", "rel", chart, "--namespace", "registry", "-f", values}, setArgs(set)...)
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{values: values, set: set, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatal(err)
		}
		if tm.Kind == "" {
			continue // a document holding only comments
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "apps/v1/Deployment":
			if r.deployment != nil {
				t.Fatal("two Deployments")
			}
			r.deployment = &appsv1.Deployment{}
			obj = r.deployment
		case "v1/Service":
			s := &corev1.Service{}
			r.services, obj = append(r.services, s), s
		case "v1/ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1/Secret":
			obj = &corev1.Secret{}
		case "v1/ServiceAccount":
			s := &corev1.ServiceAccount{}
			r.serviceAccounts, obj = append(r.serviceAccounts, s), s
		case "policy/v1/PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			r.pdbs, obj = append(r.pdbs, p), p
		case "networking.k8s.io/v1/NetworkPolicy":
			p := &networkingv1.NetworkPolicy{}
			r.networkPolicies, obj = append(r.networkPolicies, p), p
		case "monitoring.coreos.com/v1/ServiceMonitor":
			m := &monitoringv1.ServiceMonitor{}
			r.serviceMonitors, obj = append(r.serviceMonitors, m), m
		case "cert-manager.io/v1/Certificate":
			c := &certmanagerv1.Certificate{}
			r.certificates, obj = append(r.certificates, c), c
		default:
			t.Fatalf("%s renders a %s %s the test does not know", values, tm.APIVersion, tm.Kind)
		}
		if err := decodeStrict(doc, obj); err != nil {
			t.Fatalf("%s: a %s does not decode strictly: %v\n%s", values, tm.Kind, err, doc)
		}
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			r.configMaps[o.Name] = o
		case *corev1.Secret:
			r.secrets[o.Name] = o
		}
	}
	if r.deployment == nil {
		t.Fatalf("%s renders no Deployment", values)
	}
	return r
}

// decodeStrict decodes a YAML manifest the way the API server's strict field validation does:
// duplicate keys, unknown fields and fields in the wrong case are errors.
func decodeStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func TestDecodeStrictRefuses(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n",                 // unknown
		"apiVersion: apps/v1\nkind: Deployment\nspec:\n  Replicas: 2\n",                // wrong case
		"apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n  replicas: 3\n", // duplicate
		"apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: two\n",              // wrong type
	} {
		if err := decodeStrict([]byte(doc), &appsv1.Deployment{}); err == nil {
			t.Errorf("accepted:\n%s", doc)
		}
	}
	if err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n"), &appsv1.Deployment{}); err != nil {
		t.Errorf("refused a valid manifest: %v", err)
	}
}

func TestChartLints(t *testing.T) {
	for _, v := range valuesFiles(t) {
		if out, err := runHelm(t, "lint", "--strict", chart, "-f", v); err != nil {
			t.Errorf("%s: %v\n%s", v, err, out)
		}
	}
	// Without values too: lint reports the chart's refusals (no store, no signing key, no TLS)
	// as messages and renders on, which must not break a template.
	if out, err := runHelm(t, "lint", "--strict", chart); err != nil {
		t.Errorf("without values: %v\n%s", err, out)
	}
}

func TestChartManifests(t *testing.T) {
	for _, v := range valuesFiles(t) {
		t.Run(filepath.Base(v), func(t *testing.T) {
			r := render(t, v)
			checkPod(t, r)
			checkSelectors(t, r)
			checkMounts(t, r)
			checkSecretModes(t, r)
		})
	}
}

// checkSecretModes holds every Secret volume to files only their owner and group read: an
// explicit defaultMode (the API's default, 0644, lets every user read them) and item modes
// within 0440. The kubelet writes the files as root, so the container's user (not root) reads
// them through the pod's fsGroup, to which the kubelet gives them, adding group read to any mode
// (0400 would read 0440 on the node): fsGroup must be set.
func checkSecretModes(t *testing.T, r *rendered) {
	t.Helper()
	pod := r.deployment.Spec.Template.Spec
	secrets := 0
	for _, v := range pod.Volumes {
		if v.Secret == nil {
			continue
		}
		secrets++
		if v.Secret.DefaultMode == nil {
			t.Errorf("secret volume %s has no defaultMode: its files would be 0644", v.Name)
		}
		modes := []*int32{v.Secret.DefaultMode}
		for _, it := range v.Secret.Items {
			modes = append(modes, it.Mode)
		}
		for _, m := range modes {
			if m != nil && (*m&^0o440 != 0 || *m&0o400 == 0) {
				t.Errorf("secret volume %s: mode %04o, want 0440 or 0400", v.Name, *m)
			}
		}
	}
	if psc := pod.SecurityContext; secrets > 0 && (psc == nil || psc.FSGroup == nil || *psc.FSGroup == 0) {
		t.Errorf("the pod has no fsGroup (other than root's): its user cannot read the Secret files, which belong to root")
	}
}

// checkPod holds the pod to the restricted Pod Security Standard and the probes to the server's
// endpoints.
func checkPod(t *testing.T, r *rendered) {
	t.Helper()
	pod := r.deployment.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("the pod may run as root: %+v", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("the pod's seccomp profile is not RuntimeDefault: %+v", psc)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token it never uses")
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Error("the pod shares a host namespace")
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("want one container, got %d (+%d init)", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("the container has no security context")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation is allowed")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the root filesystem is writable")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("the container is privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities are not exactly drop ALL: %+v", sc.Capabilities)
	case sc.RunAsUser != nil && *sc.RunAsUser == 0:
		t.Error("the container runs as root")
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	probe := func(name string, p *corev1.Probe, path string) {
		t.Helper()
		switch {
		case p == nil || p.HTTPGet == nil:
			t.Errorf("%s probe: none, or not HTTP", name)
		case p.HTTPGet.Path != path:
			t.Errorf("%s probe: path %s, want %s", name, p.HTTPGet.Path, path)
		case p.HTTPGet.Port.StrVal != "http" || ports["http"] != 5001:
			t.Errorf("%s probe: port %v, want the token listener (http, 5001)", name, p.HTTPGet.Port)
		case p.PeriodSeconds < 1 || p.TimeoutSeconds < 1 || p.FailureThreshold < 1:
			t.Errorf("%s probe: timing %+v", name, p)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("startup", c.StartupProbe, "/healthz")
	tlsListener := slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == "tls" })
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if want := map[bool]corev1.URIScheme{true: corev1.URISchemeHTTPS, false: corev1.URISchemeHTTP}[tlsListener]; p != nil && p.HTTPGet != nil && p.HTTPGet.Scheme != want {
			t.Errorf("probe scheme %s, want %s (TLS listener: %v)", p.HTTPGet.Scheme, want, tlsListener)
		}
	}

	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[res]; !ok || q.IsZero() {
			t.Errorf("no %s request", res)
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(c.Resources.Requests[corev1.ResourceMemory]) < 0 {
		t.Errorf("memory limit %v below the request", q)
	}

	// The pod must be gone before Kubernetes' grace period ends: the preStop pause, then the
	// server's own stop (shutdown.grace_period, its drain delay included), then a few seconds
	// for flushing key use and decision logs, fit in it. Something must let the endpoints drop
	// the pod before its listener closes: the pause or the drain delay.
	grace := 30 * time.Second
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	var pause time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Exec != nil {
			t.Error("preStop is not a sleep action (the image has no shell)")
		} else {
			pause = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
	}
	stop, drain := serverShutdown(t, r)
	if grace > 30*time.Second || pause+stop+5*time.Second > grace || pause+drain == 0 || drain >= stop {
		t.Errorf("a %s preStop pause and the server's shutdown {grace_period: %s, drain_delay: %s} do not fit Kubernetes' %s grace period with the endpoints dropped first",
			pause, stop, drain, grace)
	}
	if r.deployment.Spec.Strategy.RollingUpdate == nil || r.deployment.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Error("a rolling update may take a replica down before its successor is ready")
	}
}

// serverShutdown is the shutdown section of the rendered configuration, with the server's
// defaults (20s, 0s) for what it leaves out.
func serverShutdown(t *testing.T, r *rendered) (grace, drain time.Duration) {
	t.Helper()
	pod := r.deployment.Spec.Template.Spec
	var cfg struct {
		Shutdown struct {
			GracePeriod string `json:"grace_period"`
			DrainDelay  string `json:"drain_delay"`
		} `json:"shutdown"`
	}
	if err := yaml.Unmarshal([]byte(r.configMaps[pod.Volumes[0].ConfigMap.Name].Data["regoauth.yaml"]), &cfg); err != nil {
		t.Fatalf("regoauth.yaml: %v", err)
	}
	parse := func(v string, def time.Duration) time.Duration {
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		return d
	}
	return parse(cfg.Shutdown.GracePeriod, 20*time.Second), parse(cfg.Shutdown.DrainDelay, 0)
}

// checkSelectors makes sure the Service, the PodDisruptionBudget and the ServiceMonitor select
// the pods (and only through labels the pods carry), and name ports that exist.
func checkSelectors(t *testing.T, r *rendered) {
	t.Helper()
	podLabels := labels.Set(r.deployment.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(r.deployment.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Fatalf("the Deployment's selector does not match its pods: %v", err)
	}
	containerPorts := map[string]bool{}
	for _, p := range r.deployment.Spec.Template.Spec.Containers[0].Ports {
		containerPorts[p.Name] = true
	}
	if len(r.services) != 1 {
		t.Fatalf("want one Service, got %d", len(r.services))
	}
	svc := r.services[0]
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("the Service does not select the pods: %v", svc.Spec.Selector)
	}
	svcPorts := map[string]bool{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = true
		if !containerPorts[p.TargetPort.StrVal] {
			t.Errorf("Service port %s targets %v, which the container does not have", p.Name, p.TargetPort)
		}
	}
	replicas := int32(1)
	if r.deployment.Spec.Replicas != nil {
		replicas = *r.deployment.Spec.Replicas
	}
	if replicas > 1 && len(r.pdbs) != 1 {
		t.Errorf("%d replicas and %d PodDisruptionBudgets", replicas, len(r.pdbs))
	}
	for _, p := range r.pdbs {
		s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || s.Empty() || !s.Matches(podLabels) {
			t.Errorf("the PodDisruptionBudget does not select the pods: %v", err)
		}
		if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() < 1 || int32(p.Spec.MaxUnavailable.IntValue()) >= replicas {
			t.Errorf("maxUnavailable %v with %d replicas: drains would block or take every replica", p.Spec.MaxUnavailable, replicas)
		}
	}
	for _, m := range r.serviceMonitors {
		s, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
		if err != nil || s.Empty() || !s.Matches(labels.Set(svc.Labels)) {
			t.Errorf("the ServiceMonitor does not select the Service: %v", err)
		}
		if len(m.Spec.Endpoints) != 1 || !svcPorts[m.Spec.Endpoints[0].Port] || m.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("the ServiceMonitor scrapes %+v", m.Spec.Endpoints)
		}
	}
	if sa := r.deployment.Spec.Template.Spec.ServiceAccountName; len(r.serviceAccounts) != 1 || r.serviceAccounts[0].Name != sa {
		t.Errorf("the pod's service account %q is not the one rendered", sa)
	}
}

// checkMounts follows every file regoauth's configuration names to a mounted ConfigMap or Secret
// key, and the store URL to a Secret key in the environment.
func checkMounts(t *testing.T, r *rendered) {
	t.Helper()
	pod := r.deployment.Spec.Template.Spec
	c := pod.Containers[0]
	cm, ok := r.configMaps[pod.Volumes[0].ConfigMap.Name]
	if !ok || pod.Volumes[0].Name != "config" {
		t.Fatalf("the first volume is not the rendered configuration")
	}
	var cfg struct {
		Listen struct {
			Addr string            `json:"addr"`
			TLS  map[string]string `json:"tls"`
		} `json:"listen"`
		Metrics struct {
			Addr string            `json:"addr"`
			TLS  map[string]string `json:"tls"`
		} `json:"metrics"`
		Signing       map[string]string `json:"signing"`
		RefreshTokens struct {
			Secrets []map[string]string `json:"secrets"`
		} `json:"refresh_tokens"`
		Store struct {
			URL map[string]string `json:"url"`
		} `json:"store"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["regoauth.yaml"]), &cfg); err != nil {
		t.Fatalf("regoauth.yaml: %v", err)
	}
	if cfg.Listen.Addr != ":5001" || cfg.Metrics.Addr != fmt.Sprintf(":%d", port(c, "metrics")) {
		t.Errorf("listeners %q and %q do not match the container ports", cfg.Listen.Addr, cfg.Metrics.Addr)
	}
	args := strings.Join(c.Args, " ")
	files := []string{strings.TrimPrefix(args, "serve --config "), cfg.Signing["key_file"], cfg.Signing["cert_file"]}
	for _, s := range cfg.RefreshTokens.Secrets {
		files = append(files, s["file"])
	}
	if cfg.Listen.TLS != nil {
		files = append(files, cfg.Listen.TLS["cert_file"], cfg.Listen.TLS["key_file"])
	}
	// /metrics has the token listener's TLS unless the values say plain HTTP, and the
	// ServiceMonitor scrapes it the way it is served.
	if cfg.Listen.TLS != nil && cfg.Metrics.TLS == nil && !slices.Contains(r.set, "metrics.plainHTTP=true") {
		t.Error("the token listener has TLS and the metrics listener serves plain HTTP")
	}
	if cfg.Metrics.TLS != nil {
		files = append(files, cfg.Metrics.TLS["cert_file"], cfg.Metrics.TLS["key_file"])
	}
	for _, m := range r.serviceMonitors {
		for _, e := range m.Spec.Endpoints {
			if https := strings.EqualFold(e.Scheme.String(), "https"); https != (cfg.Metrics.TLS != nil) {
				t.Errorf("the ServiceMonitor scrapes with scheme %q; metrics TLS: %v", e.Scheme.String(), cfg.Metrics.TLS)
			}
			if e.TLSConfig != nil && cfg.Metrics.TLS == nil {
				t.Error("the ServiceMonitor has a tlsConfig for a plain HTTP listener")
			}
		}
	}
	for _, f := range files {
		if f == "" || !provided(t, r, f) {
			t.Errorf("%s: no mounted ConfigMap or Secret key provides it (args %q)", f, args)
		}
	}
	// The store URL, with its password, is a file of a Secret: an environment variable would be
	// in the container runtime's record of the container on the node, and in every process
	// regoauth starts.
	if f := cfg.Store.URL["file"]; f == "" || len(cfg.Store.URL) != 1 {
		t.Errorf("store.url is not read from a file: %v", cfg.Store.URL)
	} else if !provided(t, r, f) || !fromSecret(pod, c, f) {
		t.Errorf("store.url file %s: no mounted Secret key provides it", f)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("environment variable %s holds a Secret's value (%s)", e.Name, e.ValueFrom.SecretKeyRef.Name)
		}
	}
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil {
			t.Errorf("the environment holds the Secret %s", e.SecretRef.Name)
		}
	}
}

// fromSecret reports whether path is a file of a Secret volume mounted in c.
func fromSecret(pod corev1.PodSpec, c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if filepath.Dir(path) != filepath.Clean(m.MountPath) {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name {
				return v.Secret != nil
			}
		}
	}
	return false
}

// TestChartStoreURLRollsThePods: a new store.url restarts the pods, as a new configuration does.
// The server opens its store once: without a restart the running pods would keep the old store
// while pods started later (a rescheduled or an added one) used the new one, two sets of
// replicas on two stores. The annotation that does it is not a plain hash of the URL, which
// whoever may read pods could test guessed passwords against.
func TestChartStoreURLRollsThePods(t *testing.T) {
	minimal := filepath.Join(chart, "ci", "minimal-values.yaml")
	const before, after = "redis://:old-password@redis-master.redis.svc:6379/0", "redis://:new-password@redis-master.redis.svc:6379/0"
	a := render(t, minimal, "store.url="+before).deployment.Spec.Template.Annotations
	b := render(t, minimal, "store.url="+after).deployment.Spec.Template.Annotations
	if maps.Equal(a, b) {
		t.Errorf("a changed store.url leaves the pod template as it was: %v", a)
	}
	for _, url := range []string{before, after} {
		sum := sha256.Sum256([]byte(url))
		for k, v := range b {
			if strings.Contains(v, "password") || v == hex.EncodeToString(sum[:]) {
				t.Errorf("annotation %s gives away the store URL %s: %s", k, url, v)
			}
		}
	}
	c := render(t, minimal, "store.url="+after).deployment.Spec.Template.Annotations
	if !maps.Equal(b, c) {
		t.Errorf("the same values render different pod templates: %v, %v", b, c)
	}
	// A guess of the password costs a scrypt (N=32768, r=8, p=2) salted with the release's
	// names, not a hash: the annotation is sprig's derivePassword of the URL, hashed.
	derive := sprig.TxtFuncMap()["derivePassword"].(func(uint32, string, string, string, string) string)
	sum := sha256.Sum256([]byte(derive(1, "maximum", after, "registry/rel-regoauth", "regoauth-store-url")))
	if got, want := b["checksum/store"], hex.EncodeToString(sum[:]); got != want {
		t.Errorf("checksum/store = %q, want %q: derived from the URL with scrypt, salted with the release's names", got, want)
	}
}

func port(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return -1
}

// provided reports whether path is a file of a read-only ConfigMap or Secret mount whose key is
// present when the chart rendered that object (an existing Secret is the operator's to fill).
func provided(t *testing.T, r *rendered, path string) bool {
	t.Helper()
	pod := r.deployment.Spec.Template.Spec
	for _, m := range pod.Containers[0].VolumeMounts {
		rel, ok := strings.CutPrefix(path, m.MountPath+"/")
		if !ok || strings.Contains(rel, "/") {
			continue
		}
		if !m.ReadOnly {
			t.Errorf("mount %s is writable", m.MountPath)
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			var items []corev1.KeyToPath
			var keys map[string]bool
			switch {
			case v.ConfigMap != nil:
				items = v.ConfigMap.Items
				if cm, ok := r.configMaps[v.ConfigMap.Name]; ok {
					keys = map[string]bool{}
					for k := range cm.Data {
						keys[k] = true
					}
				}
			case v.Secret != nil:
				items = v.Secret.Items
				if s, ok := r.secrets[v.Secret.SecretName]; ok {
					keys = map[string]bool{}
					for k := range s.Data {
						keys[k] = true
					}
					for k := range s.StringData {
						keys[k] = true
					}
				}
				if v.Secret.DefaultMode != nil && *v.Secret.DefaultMode&0o007 != 0 {
					t.Errorf("secret volume %s is readable by others: %o", v.Name, *v.Secret.DefaultMode)
				}
			default:
				return false
			}
			key := rel
			if len(items) > 0 {
				key = ""
				for _, it := range items {
					if it.Path == rel {
						key = it.Key
					}
				}
			}
			return key != "" && (keys == nil || keys[key])
		}
	}
	return false
}

// noTLS is the message of a chart given no source of TLS: one paragraph, naming each way on.
const noTLS = "tls: choose how the token listener (tokens, the admin API) and the metrics listener get TLS, or API keys and tokens would cross the network in clear: " +
	"tls.existingSecret (a kubernetes.io/tls Secret you keep), tls.generate: true (a self-signed certificate for the Service's names, made on first install and kept), " +
	"tls.certManager.issuerRef.name (a cert-manager Certificate from that Issuer or ClusterIssuer), or tls.plainHTTP: true (plain HTTP, only behind an ingress or mesh " +
	"that ends TLS in front of the pods, which config.trusted_proxies must then list)\n"

// TestChartRefusesIncompleteValues: an install that could not work fails at render time with a
// message saying what to set, never renders pods that crash.
func TestChartRefusesIncompleteValues(t *testing.T) {
	for _, c := range []struct {
		name string
		set  []string
		want string
	}{
		{"no store", []string{"signing.generate=true", "tls.generate=true"}, "store: give existingSecret"},
		{"no signing key", []string{"store.url=redis://r:6379", "tls.generate=true"}, "signing: give existingSecret"},
		{"a key without its certificate", []string{"store.url=redis://r:6379", "signing.key=x", "tls.generate=true"}, "signing: give existingSecret"},
		{"listen set in config", []string{"store.url=redis://r:6379", "signing.generate=true", "tls.generate=true", "config.listen.addr=:80"}, "config.listen is set by the chart"},
		{"store URL in config", []string{"store.url=redis://r:6379", "signing.generate=true", "tls.generate=true", "config.store.url=redis://x"}, "config.store.url is set by the chart"},
		{"a short refresh secret", []string{"store.url=redis://r:6379", "signing.generate=true", "tls.generate=true", "refreshTokens.secret=short"}, "at least 32 bytes"},
		// One bolt file cannot be opened by two pods, and pods on their own files would each
		// hold different accounts, keys and grants.
		{"a bolt store on the default replicas", []string{"store.url=bolt:///var/lib/regoauth/store.db", "signing.generate=true", "tls.generate=true"}, "a bolt store is one file"},
		{"a bolt store on three replicas", []string{"store.url=bolt:///var/lib/regoauth/store.db", "signing.generate=true", "tls.generate=true", "replicaCount=3"}, "replicaCount: 1"},
		// A bolt store on what goes with the pod loses every account, key and grant with it.
		{"a bolt store on no volume", []string{"store.url=bolt:///var/lib/regoauth/store.db", "signing.generate=true", "tls.generate=true", "replicaCount=1"},
			`the bolt store "/var/lib/regoauth/store.db" is in the container's own file system (no volume of extraVolumeMounts holds it): every account, key and grant would be lost whenever the pod is replaced`},
		{"a bolt store on the chart's /tmp", []string{"store.url=bolt:///tmp/regoauth/store.db", "signing.generate=true", "tls.generate=true", "replicaCount=1"},
			`the bolt store "/tmp/regoauth/store.db" is on the emptyDir volume tmp`},
		{"a bolt store on an emptyDir", []string{"store.url=bolt:///var/lib/regoauth/store.db", "signing.generate=true", "tls.generate=true", "replicaCount=1",
			`--set-json=extraVolumes=[{"name":"data","emptyDir":{}}]`, `--set-json=extraVolumeMounts=[{"name":"data","mountPath":"/var/lib/regoauth"}]`},
			`the bolt store "/var/lib/regoauth/store.db" is on the emptyDir volume data`},
		{"a bolt store on a generic ephemeral volume", []string{"store.url=bolt:///var/lib/regoauth/store.db", "signing.generate=true", "tls.generate=true", "replicaCount=1",
			`--set-json=extraVolumes=[{"name":"data","ephemeral":{"volumeClaimTemplate":{"spec":{"accessModes":["ReadWriteOnce"]}}}}]`,
			`--set-json=extraVolumeMounts=[{"name":"data","mountPath":"/var/lib/regoauth"}]`},
			`the bolt store "/var/lib/regoauth/store.db" is on the ephemeral volume data, deleted with the pod`},
		{"a bolt store on an emptyDir inside a persistent volume", []string{"store.url=bolt:///var/lib/regoauth/cache/store.db", "signing.generate=true", "tls.generate=true", "replicaCount=1",
			`--set-json=extraVolumes=[{"name":"data","persistentVolumeClaim":{"claimName":"regoauth"}},{"name":"cache","emptyDir":{}}]`,
			`--set-json=extraVolumeMounts=[{"name":"data","mountPath":"/var/lib/regoauth"},{"name":"cache","mountPath":"/var/lib/regoauth/cache"}]`},
			`the bolt store "/var/lib/regoauth/cache/store.db" is on the emptyDir volume cache`},
		{"a bolt store beside a persistent volume", []string{"store.url=bolt:///var/lib/regoauth-data/store.db", "signing.generate=true", "tls.generate=true", "replicaCount=1",
			`--set-json=extraVolumes=[{"name":"data","persistentVolumeClaim":{"claimName":"regoauth"}}]`,
			`--set-json=extraVolumeMounts=[{"name":"data","mountPath":"/var/lib/regoauth"}]`},
			"is in the container's own file system"},
		// Plain HTTP only when chosen: API keys would otherwise cross the network in clear
		// because nobody set a value.
		{"no TLS", []string{"store.url=redis://r:6379", "signing.generate=true"}, noTLS},
		{"an issuer without a name", []string{"store.url=redis://r:6379", "signing.generate=true", "tls.certManager.issuerRef.kind=ClusterIssuer"}, noTLS},
		// Two sources: which one was meant is not the chart's to guess.
		{"generate and plain HTTP", []string{"store.url=redis://r:6379", "signing.generate=true", "tls.generate=true", "tls.plainHTTP=true"},
			"tls: choose one source of TLS, not tls.generate and tls.plainHTTP"},
		{"an existing Secret and cert-manager", []string{"store.url=redis://r:6379", "signing.generate=true", "tls.existingSecret=regoauth-tls", "tls.certManager.issuerRef.name=ca"},
			"tls: choose one source of TLS, not tls.existingSecret and tls.certManager.issuerRef.name"},
		{"all four", []string{"store.url=redis://r:6379", "signing.generate=true", "tls.existingSecret=regoauth-tls", "tls.generate=true", "tls.certManager.issuerRef.name=ca", "tls.plainHTTP=true"},
			"tls: choose one source of TLS, not tls.existingSecret and tls.generate and tls.certManager.issuerRef.name and tls.plainHTTP"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := runHelm(t, append([]string{"template", "rel", chart}, setArgs(c.set)...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("helm template --set %v: %v; want an error saying %q", c.set, err, c.want)
			}
		})
	}
}

// TestChartBoltStoreOnOnePod: a bolt store renders with one replica, replaced by Recreate: a
// rolling update would start the new pod while the old one holds the file, and the new pod,
// unable to open it, would never become ready for the old one to go. A URL the chart cannot
// read (an existing Secret's) keeps the rolling update.
func TestChartBoltStoreOnOnePod(t *testing.T) {
	minimal := filepath.Join(chart, "ci", "minimal-values.yaml")
	r := render(t, minimal, append(persistentData, "store.url=bolt:///var/lib/regoauth/store.db", "replicaCount=1")...)
	if r.deployment.Spec.Replicas == nil || *r.deployment.Spec.Replicas != 1 {
		t.Errorf("a bolt store renders %v replicas, want 1", r.deployment.Spec.Replicas)
	}
	if s := r.deployment.Spec.Strategy; s.Type != appsv1.RecreateDeploymentStrategyType || s.RollingUpdate != nil {
		t.Errorf("a bolt store's pod is replaced by %+v, want Recreate", s)
	}
	r = render(t, minimal, "store.existingSecret=regoauth-store", "replicaCount=2")
	if s := r.deployment.Spec.Strategy; s.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("a store in an existing Secret is replaced by %+v, want RollingUpdate", s)
	}
}

// persistentData mounts a persistentVolumeClaim at /var/lib/regoauth.
var persistentData = []string{
	`--set-json=extraVolumes=[{"name":"data","persistentVolumeClaim":{"claimName":"regoauth-data"}}]`,
	`--set-json=extraVolumeMounts=[{"name":"data","mountPath":"/var/lib/regoauth/"}]`,
}

// TestChartBoltStoreOutlivesThePod: a bolt store renders on a volume that outlives the pod (a
// persistentVolumeClaim, or a hostPath), the deepest mount above the file deciding; on what goes
// with the pod (TestChartRefusesIncompleteValues) it renders only when store.ephemeral says the
// loss is accepted.
func TestChartBoltStoreOutlivesThePod(t *testing.T) {
	minimal := filepath.Join(chart, "ci", "minimal-values.yaml")
	for _, c := range []struct {
		name string
		set  []string
	}{
		{"a persistentVolumeClaim", append(persistentData, "store.url=bolt:///var/lib/regoauth/store.db")},
		{"a persistentVolumeClaim below the chart's /tmp", []string{"store.url=bolt:///tmp/data/store.db",
			`--set-json=extraVolumes=[{"name":"data","persistentVolumeClaim":{"claimName":"regoauth-data"}}]`,
			`--set-json=extraVolumeMounts=[{"name":"data","mountPath":"/tmp/data"}]`}},
		{"a hostPath", []string{"store.url=bolt:///var/lib/regoauth/store.db",
			`--set-json=extraVolumes=[{"name":"data","hostPath":{"path":"/srv/regoauth","type":"DirectoryOrCreate"}}]`,
			`--set-json=extraVolumeMounts=[{"name":"data","mountPath":"/var/lib/regoauth"}]`}},
		{"the chart's /tmp, the loss accepted", []string{"store.url=bolt:///tmp/store.db", "store.ephemeral=true"}},
		{"no volume, the loss accepted", []string{"store.url=bolt:///var/lib/regoauth/store.db", "store.ephemeral=true"}},
		{"an emptyDir, the loss accepted", []string{"store.url=bolt:///var/lib/regoauth/store.db", "store.ephemeral=true",
			`--set-json=extraVolumes=[{"name":"data","emptyDir":{}}]`, `--set-json=extraVolumeMounts=[{"name":"data","mountPath":"/var/lib/regoauth"}]`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := render(t, minimal, append(c.set, "replicaCount=1")...)
			if r.deployment.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				t.Errorf("a bolt store's pod is replaced by %+v, want Recreate", r.deployment.Spec.Strategy)
			}
		})
	}
}

// TestChartMetricsTLS: the metrics listener has the token listener's certificate, the
// ServiceMonitor scrapes it over HTTPS and verifies it as metrics.serviceMonitor.tlsConfig
// says; metrics.plainHTTP turns TLS off for /metrics alone.
func TestChartMetricsTLS(t *testing.T) {
	existing := filepath.Join(chart, "ci", "existing-secrets-values.yaml")
	r := render(t, existing,
		"metrics.serviceMonitor.tlsConfig.serverName=regoauth.registry.svc",
		"metrics.serviceMonitor.tlsConfig.ca.secret.name=regoauth-tls",
		"metrics.serviceMonitor.tlsConfig.ca.secret.key=ca.crt")
	checkMounts(t, r)
	cfg := renderedConfig(t, r)
	if cfg.Metrics.TLS == nil || *cfg.Metrics.TLS != *cfg.Listen.TLS {
		t.Errorf("metrics TLS %+v, want the token listener's %+v", cfg.Metrics.TLS, cfg.Listen.TLS)
	}
	if len(r.serviceMonitors) != 1 || len(r.serviceMonitors[0].Spec.Endpoints) != 1 {
		t.Fatalf("want one ServiceMonitor endpoint")
	}
	e := r.serviceMonitors[0].Spec.Endpoints[0]
	if tc := e.TLSConfig; tc == nil || tc.ServerName == nil || *tc.ServerName != "regoauth.registry.svc" ||
		tc.CA.Secret == nil || tc.CA.Secret.Name != "regoauth-tls" || tc.CA.Secret.Key != "ca.crt" {
		t.Errorf("the ServiceMonitor's tlsConfig is %+v, not the values'", e.TLSConfig)
	}

	r = render(t, existing, "metrics.plainHTTP=true", "metrics.serviceMonitor.tlsConfig.serverName=regoauth.registry.svc")
	checkMounts(t, r)
	if cfg := renderedConfig(t, r); cfg.Metrics.TLS != nil || cfg.Listen.TLS == nil {
		t.Errorf("metrics.plainHTTP: metrics TLS %+v, token listener TLS %+v", cfg.Metrics.TLS, cfg.Listen.TLS)
	}

	minimal := filepath.Join(chart, "ci", "minimal-values.yaml")
	r = render(t, minimal, "tls.generate=false", "tls.plainHTTP=true", "metrics.serviceMonitor.enabled=true")
	checkMounts(t, r)
	if cfg := renderedConfig(t, r); cfg.Metrics.TLS != nil || cfg.Listen.TLS != nil {
		t.Errorf("tls.plainHTTP, yet metrics TLS %+v, token listener TLS %+v", cfg.Metrics.TLS, cfg.Listen.TLS)
	}

	// A generated certificate gets a tlsConfig of its own (TestChartGeneratesTLSCertificate)
	// unless the values give one.
	r = render(t, minimal, "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.tlsConfig.serverName=auth.example.com")
	checkMounts(t, r)
	if tc := r.serviceMonitors[0].Spec.Endpoints[0].TLSConfig; tc == nil || tc.ServerName == nil || *tc.ServerName != "auth.example.com" || tc.CA.Secret != nil {
		t.Errorf("the ServiceMonitor's tlsConfig is %+v, not the values'", tc)
	}
}

// listenerConfig is a listener section of regoauth.yaml.
type listenerConfig struct {
	Addr string `json:"addr"`
	TLS  *struct {
		CertFile string `json:"cert_file"`
		KeyFile  string `json:"key_file"`
	} `json:"tls"`
}

// renderedConfig is the listeners of the rendered regoauth.yaml.
func renderedConfig(t *testing.T, r *rendered) (cfg struct {
	Listen  listenerConfig `json:"listen"`
	Metrics listenerConfig `json:"metrics"`
}) {
	t.Helper()
	pod := r.deployment.Spec.Template.Spec
	if err := yaml.Unmarshal([]byte(r.configMaps[pod.Volumes[0].ConfigMap.Name].Data["regoauth.yaml"]), &cfg); err != nil {
		t.Fatalf("regoauth.yaml: %v", err)
	}
	return cfg
}

// TestChartConfigLoads gives regoauth itself each rendered configuration, with the pod's files
// laid out as its mounts would: the ConfigMap and chart-made Secrets as rendered, the existing
// Secrets a values file names made up (a fresh signing key and certificate, a random secret).
// `regoauth signing jwks` decodes the configuration strictly, validates it and loads the signing
// key and certificate, so an option regoauth does not know, a file no mount provides or a key
// the certificate does not hold fails here instead of in a crash-looping pod.
func TestChartConfigLoads(t *testing.T) {
	bin := buildRegoauth(t)
	for _, v := range valuesFiles(t) {
		t.Run(filepath.Base(v), func(t *testing.T) {
			r := render(t, v)
			root := t.TempDir()
			layOut(t, bin, r, root, nil)
			c := r.deployment.Spec.Template.Spec.Containers[0]
			config := filepath.Join(root, strings.TrimPrefix(strings.Join(c.Args, " "), "serve --config "))
			raw, err := os.ReadFile(config)
			if err != nil {
				t.Fatal(err)
			}
			// The pod's absolute paths, under this test's root.
			text := strings.ReplaceAll(string(raw), " /etc/regoauth/", " "+root+"/etc/regoauth/")
			for _, p := range regexpAbsPaths(text, root) {
				if !fileExists(p) {
					// A file of a volume the operator provides (e.g. a policy bundle).
					writeFile(t, p, []byte("made up by the test"))
				}
			}
			writeFile(t, config, []byte(text))
			cmd := exec.Command(bin, "signing", "jwks", "--config", config)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), `"keys"`) {
				t.Fatalf("regoauth refuses the rendered configuration: %v\n%s\n%s", err, out, text)
			}
		})
	}
}

// buildRegoauth builds the regoauth command of this repository into a temporary folder.
func buildRegoauth(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "regoauth")
	build := exec.Command("go", "build", "-o", bin, "./cmd/regoauth")
	build.Dir = "../../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building regoauth: %v\n%s", err, out)
	}
	return bin
}

// regexpAbsPaths lists the paths under root that text names.
func regexpAbsPaths(text, root string) []string {
	var paths []string
	for _, f := range strings.Fields(text) {
		f = strings.Trim(f, `"',{}[]`)
		if strings.HasPrefix(f, root+"/") {
			paths = append(paths, f)
		}
	}
	return paths
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// layOut writes the files of the container's ConfigMap and Secret mounts under root. A Secret the
// chart does not render is taken from existing, by name, when it is there (what the operator or
// cert-manager would write), and made up otherwise.
func layOut(t *testing.T, bin string, r *rendered, root string, existing map[string]map[string][]byte) {
	t.Helper()
	pod := r.deployment.Spec.Template.Spec
	// One made-up key pair stands for every existing Secret holding a key and a certificate.
	dir := t.TempDir()
	gen := exec.Command(bin, "signing", "generate", "--key", filepath.Join(dir, "key.pem"), "--cert", filepath.Join(dir, "cert.pem"))
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("signing generate: %v\n%s", err, out)
	}
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "key.pem"))
	certPEM, _ := os.ReadFile(filepath.Join(dir, "cert.pem"))
	madeUp := func(key string) []byte {
		switch {
		case strings.Contains(key, "url"):
			return []byte("redis://127.0.0.1:1/0\n") // as kubectl create secret --from-file keeps it
		case strings.Contains(key, "key"):
			return keyPEM
		case strings.Contains(key, "crt") || strings.Contains(key, "cert"):
			return certPEM
		}
		return []byte("0123456789abcdef0123456789abcdef0123456789abcdef")
	}
	for _, m := range pod.Containers[0].VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			var data map[string][]byte
			var items []corev1.KeyToPath
			switch {
			case v.ConfigMap != nil:
				items = v.ConfigMap.Items
				if cm, ok := r.configMaps[v.ConfigMap.Name]; ok {
					data = map[string][]byte{}
					for k, s := range cm.Data {
						data[k] = []byte(s)
					}
				}
			case v.Secret != nil:
				items = v.Secret.Items
				if s, ok := r.secrets[v.Secret.SecretName]; ok {
					data = s.Data
				} else if e, ok := existing[v.Secret.SecretName]; ok {
					data = e
				} else if len(items) == 0 {
					// An existing kubernetes.io/tls Secret.
					data = map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}
				}
			default:
				continue
			}
			if len(items) == 0 {
				for k, b := range data {
					writeFile(t, filepath.Join(root, m.MountPath, k), b)
				}
			}
			for _, it := range items {
				b, ok := data[it.Key]
				if data == nil {
					b, ok = madeUp(it.Key), true
				}
				if !ok {
					t.Fatalf("volume %s: the rendered object has no key %s", v.Name, it.Key)
				}
				writeFile(t, filepath.Join(root, m.MountPath, it.Path), b)
			}
		}
	}
}

// TestChartValuesDocumented holds the values table of docs/deploy.md to values.yaml: every
// value the chart reads is in the table (itself or a map holding it), and every value in the
// table exists.
func TestChartValuesDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "<!-- values:start -->")
	table, _, ok2 := strings.Cut(table, "<!-- values:end -->")
	if !ok || !ok2 {
		t.Fatal("docs/deploy.md has no values table markers")
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.Contains(cells[1], "`") {
			continue
		}
		for _, k := range strings.Split(cells[1], ",") {
			k = strings.Trim(strings.TrimSpace(k), "`")
			documented[k] = true
			if _, ok := lookupValue(values, k); !ok {
				t.Errorf("docs/deploy.md documents %s, which values.yaml does not have", k)
			}
		}
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			path := prefix + k
			if documented[path] {
				continue
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(path+".", sub)
				continue
			}
			t.Errorf("values.yaml has %s, which docs/deploy.md does not document", path)
		}
	}
	walk("", values)
}

func lookupValue(values map[string]any, path string) (any, bool) {
	var cur any = values
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// TestChartNetworkPolicy: networkPolicy.enabled admits the token listener from the given peers
// (anyone when none are given) and the metrics listener from its own peers only, to the pods of
// the release alone.
func TestChartNetworkPolicy(t *testing.T) {
	minimal := filepath.Join(chart, "ci", "minimal-values.yaml")
	if r := render(t, minimal); len(r.networkPolicies) != 0 {
		t.Errorf("a NetworkPolicy without networkPolicy.enabled")
	}
	r := render(t, minimal, "networkPolicy.enabled=true",
		`--set-json=networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]`)
	if len(r.networkPolicies) != 1 {
		t.Fatalf("networkPolicy.enabled renders %d NetworkPolicies", len(r.networkPolicies))
	}
	np := r.networkPolicies[0].Spec
	if !maps.Equal(np.PodSelector.MatchLabels, r.deployment.Spec.Selector.MatchLabels) || !slices.Equal(np.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("the NetworkPolicy selects %v for %v, want the Deployment's pods for ingress", np.PodSelector.MatchLabels, np.PolicyTypes)
	}
	ports := map[string]int{}
	for _, rule := range np.Ingress {
		for _, p := range rule.Ports {
			ports[p.Port.StrVal] = len(rule.From)
		}
	}
	if ports["http"] != 0 || ports["metrics"] != 1 || len(ports) != 2 {
		t.Errorf("ingress rules %+v: want http from anywhere, metrics from the one peer given", np.Ingress)
	}
	r = render(t, minimal, "networkPolicy.enabled=true")
	for _, rule := range r.networkPolicies[0].Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port.StrVal != "http" {
				t.Errorf("without networkPolicy.metricsFrom, port %v is open", p.Port)
			}
		}
	}
}

// TestChartImageDigest: image.digest pins the pods to one image, whatever a tag comes to name.
func TestChartImageDigest(t *testing.T) {
	minimal := filepath.Join(chart, "ci", "minimal-values.yaml")
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	r := render(t, minimal, "image.repository=registry.example.com/regoauth", "image.tag=1.2.3", "image.digest="+digest)
	if got := r.deployment.Spec.Template.Spec.Containers[0].Image; got != "registry.example.com/regoauth@"+digest {
		t.Errorf("image %q, want the repository at the digest", got)
	}
	r = render(t, minimal, "image.repository=registry.example.com/regoauth", "image.tag=1.2.3")
	if got := r.deployment.Spec.Template.Spec.Containers[0].Image; got != "registry.example.com/regoauth:1.2.3" {
		t.Errorf("image %q, want the tag", got)
	}
}
