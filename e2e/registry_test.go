package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// registry is a running distribution registry: a test registry (registry3, registry28) or
// regoauth dev's embedded one. Both log, at info level, every request they completed and every
// one they refused with the reason; the checks read those lines, the registry's own account of
// what it did.
type registry struct {
	Version string // "v3" or "v2.8"
	Addr    string // localhost:PORT, also its service name
	proc    *process
}

// registryTrust is how a registry finds token signing keys.
type registryTrust struct {
	rootCertBundle string
	jwks           string
}

// registryBuild is the build of one test registry's binary.
type registryBuild struct {
	done chan struct{}
	path string
	err  error
}

var registryBuilds = map[string]*registryBuild{"v3": nil, "v2.8": nil}

// buildRegistries starts building the test registries in dir, registry3 from this module and
// registry28 from its own (so the main module never depends on v2.8), and returns a function
// that waits for both.
func buildRegistries(dir string) (wait func()) {
	for version, name := range map[string]string{"v3": "registry3", "v2.8": "registry28"} {
		b := &registryBuild{done: make(chan struct{}), path: filepath.Join(dir, name)}
		registryBuilds[version] = b
		cmd := exec.Command("go", "build", "-o", b.path, "./"+name)
		if name == "registry28" {
			cmd = exec.Command("go", "build", "-o", b.path, ".")
			cmd.Dir = name
		}
		go func() {
			defer close(b.done)
			if msg, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("building %s: %v\n%s", name, err, msg)
			}
		}()
	}
	return func() {
		for _, b := range registryBuilds {
			<-b.done
		}
	}
}

// registryBinary waits for the test registry of the given version to be built.
func registryBinary(t *testing.T, version string) string {
	t.Helper()
	b := registryBuilds[version]
	<-b.done
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// distributionVersion is the distribution release a test registry is built from, read from the
// binary itself.
func distributionVersion(t *testing.T, version string) string {
	t.Helper()
	out := must(t, nil, "go", "version", "-m", registryBinary(t, version))
	module := map[string]string{"v3": "github.com/distribution/distribution/v3", "v2.8": "github.com/docker/distribution"}[version]
	for line := range strings.SplitSeq(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "dep" && f[1] == module {
			return strings.TrimSuffix(f[2], "+incompatible")
		}
	}
	t.Fatalf("the %s registry does not list %s:\n%s", version, module, out)
	return ""
}

// startRegistry runs a test registry of version on addr, trusting srv's tokens through trust
// (srv.Trust as its rootcertbundle when trust is empty).
func startRegistry(t *testing.T, version, addr string, srv *server, trust registryTrust) *registry {
	t.Helper()
	if trust == (registryTrust{}) {
		trust.rootCertBundle = srv.Trust
	}
	args := []string{"-addr", addr, "-root", t.TempDir(), "-realm", srv.realm(), "-service", addr, "-issuer", srv.Issuer,
		"-rootcertbundle", trust.rootCertBundle}
	if trust.jwks != "" {
		args = append(args, "-jwks", trust.jwks)
	}
	r := &registry{Version: version, Addr: addr}
	r.proc = startProcess(t, "registry "+version+" "+addr, nil, registryBinary(t, version), args...)
	// The registry logs the probe it refused: the registry answering is this one, not another
	// that took the port.
	r.proc.waitFor(t, "a 401 on /v2/", func() bool { return registryUp(addr) && r.refused(0, "", "authorization token required") })
	return r
}

func registryUp(addr string) bool {
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusUnauthorized
}

func (r *registry) mark() int { return r.proc.out.mark() }

// registryRequest is one request as the registry logged it.
type registryRequest struct {
	method string
	path   string
	query  url.Values
	status int    // of a completed request
	reason string // why a refused one was refused: "insufficient scope", "invalid token", ...
}

func (q registryRequest) String() string {
	if q.reason != "" {
		return fmt.Sprintf("%s %s?%s refused: %s", q.method, q.path, q.query.Encode(), q.reason)
	}
	return fmt.Sprintf("%s %s?%s %d", q.method, q.path, q.query.Encode(), q.status)
}

// requests returns what the registry logged since mark: the requests it completed ("response
// completed", 2xx and 3xx) and those it refused ("error authorizing context: REASON"). The test
// reads the log through a pipe: requests first sends a request of its own and waits for its
// line, so that the lines of the requests answered before are read too.
func (r *registry) requests(since int) []registryRequest {
	barrier := fmt.Sprintf("/v2/log-barrier-%d/tags/list", barriers.Add(1))
	if resp, err := http.Get("http://" + r.Addr + barrier); err == nil {
		resp.Body.Close()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(r.proc.out.String()[since:], barrier) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	var out []registryRequest
	for _, rec := range r.proc.out.records(since, "") {
		uri, err := url.Parse(rec["http.request.uri"])
		if err != nil || rec["http.request.method"] == "" {
			continue
		}
		q := registryRequest{method: rec["http.request.method"], path: uri.Path, query: uri.Query()}
		if strings.HasPrefix(q.path, "/v2/log-barrier-") {
			continue
		}
		switch reason, refused := strings.CutPrefix(rec["msg"], "error authorizing context: "); {
		case refused:
			q.reason = reason
		case rec["msg"] == "response completed":
			q.status, _ = strconv.Atoi(rec["http.response.status"])
		default:
			continue
		}
		out = append(out, q)
	}
	return out
}

// logged reports whether the registry logged a request matching since mark. The registry logs a
// request after it answered it, so a client may have exited before the line is written: it
// waits up to two seconds for it.
func (r *registry) logged(since int, match func(registryRequest) bool) bool {
	deadline := time.Now().Add(2 * time.Second)
	for {
		if slices.ContainsFunc(r.requests(since), match) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// refused reports whether the registry refused a request on repository for reason since mark.
func (r *registry) refused(since int, repo, reason string) bool {
	return r.logged(since, func(q registryRequest) bool {
		return q.reason == reason && (strings.HasPrefix(q.path, "/v2/"+repo+"/") || q.path == "/v2/"+repo)
	})
}

// manifest asks the registry, through a token the admin holds, for a manifest by tag or digest:
// its status (200 or 404), digest and body.
func (r *registry) manifest(t *testing.T, srv *server, repo, ref string) (status int, digest string, body []byte) {
	t.Helper()
	tok := srv.token(tokenRequest{user: "admin", key: srv.AdminKey, service: r.Addr, scopes: []string{"repository:" + repo + ":pull"}})
	if tok.err != nil || tok.status != http.StatusOK || len(tok.access["repository:"+repo]) == 0 {
		t.Fatalf("the admin's token to read %s: HTTP %d %v %v", repo, tok.status, tok.err, tok.access)
	}
	req, _ := http.NewRequest("GET", "http://"+r.Addr+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Authorization", "Bearer "+tok.body["token"].(string))
	req.Header.Set("Accept", strings.Join([]string{"application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
		"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json"}, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET %s:%s with the admin's token: HTTP %d", repo, ref, resp.StatusCode)
	}
	body, _ = io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), body
}

// layers are the digests of a manifest's layers.
func layers(t *testing.T, manifest []byte) []string {
	t.Helper()
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("a manifest without layers (%v):\n%s", err, manifest)
	}
	var out []string
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}
