package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// session is one account using one registry client against one registry, in a home folder of
// its own (HOME, DOCKER_CONFIG and the client's configuration live there).
type session struct {
	t      *testing.T
	client string
	steps  clientSteps
	srv    *server
	reg    *registry
	user   string
	key    string
	home   string
	// content is the text this session pushes (in a layer's file, an artifact, a chart);
	// pushed is, by repository, what a pull must bring back byte for byte.
	content string
	pushed  map[string]string
	pulls   int
}

// clientSteps is how one client does what a user does; nil where it has no command for it.
type clientSteps struct {
	tag   string                  // the tag a push writes ("1"; helm tags a chart with its version)
	setup func(s *session) result // prepares a new home
	login func(s *session, key string) result
	push  func(s *session, repo string) result
	// pull fetches repo and returns what the client wrote of it: the manifest digest and the
	// pushed file, each "" where the client writes no such thing.
	pull   func(s *session, repo string) (result, pulled)
	mount  func(s *session, from, to string) result
	delete func(s *session, repo string) result
}

type pulled struct{ digest, content string }

// newSession starts a session of client for user in a new home; it does not log in.
func newSession(t *testing.T, client string, srv *server, reg *registry, user, key string) *session {
	t.Helper()
	s := &session{t: t, client: client, steps: registryClients(t)[client], srv: srv, reg: reg, user: user, key: key,
		content: fmt.Sprintf("%s pushed by %s to %s", client, user, reg.Addr), pushed: map[string]string{}}
	s.newHome()
	return s
}

// newHome gives the session an empty home folder: no credentials, no local images.
func (s *session) newHome() {
	s.t.Helper()
	s.home = s.t.TempDir()
	if err := os.MkdirAll(filepath.Join(s.home, ".docker"), 0o700); err != nil {
		s.t.Fatal(err)
	}
	if s.steps.setup != nil {
		if r := s.steps.setup(s); r.code != 0 {
			s.t.Fatalf("%s setup: %s", s.client, r.out)
		}
	}
}

func (s *session) env() []string {
	return []string{"HOME=" + s.home, "DOCKER_CONFIG=" + filepath.Join(s.home, ".docker"), "XDG_RUNTIME_DIR=" + s.home,
		"XDG_CONFIG_HOME=" + filepath.Join(s.home, ".config"), "XDG_CACHE_HOME=" + filepath.Join(s.home, ".cache")}
}

func (s *session) run(name string, args ...string) result {
	return runIn(s.t, s.home, s.env(), "", name, args...)
}

func (s *session) ref(repo string) string { return s.reg.Addr + "/" + repo + ":" + s.steps.tag }

func (s *session) file(name, content string) string {
	return writeFile(s.t, filepath.Join(s.home, name), content, 0o644)
}

// login logs in with the session's key; it must work.
func (s *session) login() {
	s.t.Helper()
	if r := s.steps.login(s, s.key); r.code != 0 {
		s.t.Fatalf("%s login as %s: exit %d\n%s", s.client, s.user, r.code, r.out)
	}
}

// writeIdentityToken replaces the home by one holding only a refresh token, stored as docker
// login stores it: the account name with an empty password, and the token.
func (s *session) writeIdentityToken(token string) {
	s.t.Helper()
	s.newHome()
	entry := map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(s.user + ":")), "identitytoken": token}
	raw, _ := json.Marshal(map[string]any{"auths": map[string]any{s.reg.Addr: entry}})
	writeFile(s.t, filepath.Join(s.home, ".docker", "config.json"), string(raw), 0o600)
}

// outputDir is a new folder name in the home for a pull to write to; it does not exist yet.
func (s *session) outputDir() string {
	s.pulls++
	return fmt.Sprintf("pulled-%d", s.pulls)
}

var digestLine = regexp.MustCompile(`(?m)^Digest: (sha256:[0-9a-f]{64})\s*$`)

// registryClients are the clients the tests drive, each the way a user would.
func registryClients(t *testing.T) map[string]clientSteps {
	crane := func() string { return tool(t, "crane") }
	oras := func() string { return tool(t, "oras") }
	regctl := func() string { return tool(t, "regctl") }
	skopeo := func() string { return tool(t, "skopeo") }
	docker := func() string { return tool(t, "docker") }
	helm := func() string { return tool(t, "helm") }
	fromLayout := func(s *session, r result, dir string) (result, pulled) {
		if r.code != 0 {
			return r, pulled{}
		}
		p, err := readLayout(filepath.Join(s.home, dir))
		if err != nil {
			return result{out: r.out + "\nreading what was pulled: " + err.Error(), code: 1}, p
		}
		return r, p
	}
	// helmArgs point helm at the docker configuration, where the other clients keep credentials.
	helmArgs := func(s *session, args ...string) []string {
		return append(args, "--registry-config", filepath.Join(s.home, ".docker", "config.json"))
	}
	skopeoAuth := func(s *session) string { return "--authfile=" + filepath.Join(s.home, ".docker", "config.json") }
	return map[string]clientSteps{
		"crane": {
			tag: "1",
			// crane's login only writes the configuration; asking for a token with it is
			// crane's way to check the credentials.
			login: func(s *session, key string) result {
				if r := s.run(crane(), "auth", "login", s.reg.Addr, "-u", s.user, "-p", key); r.code != 0 {
					return r
				}
				return s.run(crane(), "auth", "token", s.reg.Addr+"/login-check")
			},
			push: func(s *session, repo string) result {
				s.pushed[repo] = s.content
				return s.run(crane(), "append", "-f", layerTar(s.t, s.content), "-t", s.ref(repo))
			},
			pull: func(s *session, repo string) (result, pulled) {
				dir := s.outputDir()
				return fromLayout(s, s.run(crane(), "pull", "--format", "oci", s.ref(repo), dir), dir)
			},
			mount: func(s *session, from, to string) result { return s.run(crane(), "copy", s.ref(from), s.ref(to)) },
			delete: func(s *session, repo string) result {
				d := s.run(crane(), "digest", s.ref(repo))
				if d.code != 0 {
					return d
				}
				return s.run(crane(), "delete", s.reg.Addr+"/"+repo+"@"+strings.TrimSpace(d.out))
			},
		},
		"oras": {
			tag: "1",
			login: func(s *session, key string) result {
				return s.run(oras(), "login", "--plain-http", s.reg.Addr, "-u", s.user, "-p", key)
			},
			push: func(s *session, repo string) result {
				s.pushed[repo] = s.content
				s.file("artifact.txt", s.content)
				return s.run(oras(), "push", "--plain-http", s.ref(repo), "artifact.txt")
			},
			pull: func(s *session, repo string) (result, pulled) {
				dir := s.outputDir()
				r := s.run(oras(), "pull", "--plain-http", "-o", dir, s.ref(repo))
				if r.code != 0 {
					return r, pulled{}
				}
				p := pulled{}
				if m := digestLine.FindStringSubmatch(r.out); m != nil {
					p.digest = m[1]
				}
				raw, _ := os.ReadFile(filepath.Join(s.home, dir, "artifact.txt"))
				p.content = string(raw)
				return r, p
			},
			mount: func(s *session, from, to string) result {
				return s.run(oras(), "cp", "--from-plain-http", "--to-plain-http", s.ref(from), s.ref(to))
			},
			delete: func(s *session, repo string) result {
				return s.run(oras(), "manifest", "delete", "--force", "--plain-http", s.ref(repo))
			},
		},
		"regctl": {
			tag:   "1",
			setup: func(s *session) result { return s.run(regctl(), "registry", "set", s.reg.Addr, "--tls", "disabled") },
			login: func(s *session, key string) result {
				return s.run(regctl(), "registry", "login", s.reg.Addr, "-u", s.user, "-p", key)
			},
			push: func(s *session, repo string) result {
				s.pushed[repo] = s.content
				s.file("artifact.txt", s.content)
				return s.run(regctl(), "artifact", "put", "--artifact-type", "application/vnd.regoauth.test", "-f", "artifact.txt", s.ref(repo))
			},
			pull: func(s *session, repo string) (result, pulled) {
				out := s.outputDir() + ".tar"
				return fromLayout(s, s.run(regctl(), "image", "export", s.ref(repo), out), out)
			},
			mount: func(s *session, from, to string) result {
				return s.run(regctl(), "image", "copy", s.ref(from), s.ref(to))
			},
			delete: func(s *session, repo string) result {
				return s.run(regctl(), "manifest", "rm", "--force-tag-dereference", s.ref(repo))
			},
		},
		"skopeo": {
			tag: "1",
			login: func(s *session, key string) result {
				return s.run(skopeo(), "login", skopeoAuth(s), "--tls-verify=false", s.reg.Addr, "-u", s.user, "-p", key)
			},
			push: func(s *session, repo string) result {
				s.pushed[repo] = s.content
				// A docker-archive image made locally by crane (nothing is pulled from outside).
				if r := s.run(crane(), "append", "-f", layerTar(s.t, s.content), "-t", "local/skopeo:1", "-o", "image.tar"); r.code != 0 {
					return r
				}
				return s.run(skopeo(), "copy", skopeoAuth(s), "--dest-tls-verify=false", "docker-archive:image.tar", "docker://"+s.ref(repo))
			},
			pull: func(s *session, repo string) (result, pulled) {
				dir := s.outputDir()
				return fromLayout(s, s.run(skopeo(), "copy", skopeoAuth(s), "--src-tls-verify=false", "docker://"+s.ref(repo), "dir:"+dir), dir)
			},
			mount: func(s *session, from, to string) result {
				return s.run(skopeo(), "copy", skopeoAuth(s), "--src-tls-verify=false", "--dest-tls-verify=false", "docker://"+s.ref(from), "docker://"+s.ref(to))
			},
			delete: func(s *session, repo string) result {
				return s.run(skopeo(), "delete", skopeoAuth(s), "--tls-verify=false", "docker://"+s.ref(repo))
			},
		},
		"helm": {
			tag: "0.1.0",
			login: func(s *session, key string) result {
				return s.run(helm(), helmArgs(s, "registry", "login", s.reg.Addr, "--insecure", "-u", s.user, "-p", key)...)
			},
			// repo ends with the chart's name: helm pushes chart NAME to oci://REGISTRY/PARENT.
			push: func(s *session, repo string) result {
				name := path.Base(repo)
				s.file(filepath.Join(name, "Chart.yaml"), fmt.Sprintf("apiVersion: v2\nname: %s\nversion: 0.1.0\ndescription: %s\n", name, s.content))
				if r := s.run(helm(), "package", name); r.code != 0 {
					return r
				}
				chart := name + "-0.1.0.tgz"
				s.pushed[repo] = string(mustRead(s.t, filepath.Join(s.home, chart)))
				return s.run(helm(), helmArgs(s, "push", chart, "oci://"+s.reg.Addr+"/"+path.Dir(repo), "--plain-http")...)
			},
			pull: func(s *session, repo string) (result, pulled) {
				dir := s.outputDir()
				if err := os.Mkdir(filepath.Join(s.home, dir), 0o755); err != nil {
					return result{out: err.Error(), code: 1}, pulled{}
				}
				r := s.run(helm(), helmArgs(s, "pull", "oci://"+s.reg.Addr+"/"+repo, "--version", "0.1.0", "--plain-http", "-d", dir)...)
				if r.code != 0 {
					return r, pulled{}
				}
				p := pulled{}
				if m := digestLine.FindStringSubmatch(r.out); m != nil {
					p.digest = m[1]
				}
				raw, _ := os.ReadFile(filepath.Join(s.home, dir, path.Base(repo)+"-0.1.0.tgz"))
				p.content = string(raw)
				return r, p
			},
		},
		"docker": {
			tag: "1",
			login: func(s *session, key string) result {
				r := runIn(s.t, s.home, s.env(), key, docker(), "login", s.reg.Addr, "-u", s.user, "--password-stdin")
				if r.code == 0 {
					// With a refresh token in the login response docker stores it, not the key.
					raw, _ := os.ReadFile(filepath.Join(s.home, ".docker", "config.json"))
					if !strings.Contains(string(raw), "identitytoken") || strings.Contains(string(raw), key) {
						return result{out: "docker stored no identity token:\n" + string(raw), code: 1}
					}
				}
				return r
			},
			push: func(s *session, repo string) result {
				s.pushed[repo] = s.content
				s.t.Cleanup(func() { s.run(docker(), "rmi", "--force", s.ref(repo)) })
				if r := s.run(docker(), "import", layerTar(s.t, s.content), s.ref(repo)); r.code != 0 {
					return r
				}
				return s.run(docker(), "push", s.ref(repo))
			},
			// docker keeps images in its engine, not in the home: the pull proves the image
			// was not there before, and reads the digest the engine recorded for it.
			pull: func(s *session, repo string) (result, pulled) {
				s.t.Cleanup(func() { s.run(docker(), "rmi", "--force", s.ref(repo)) })
				s.run(docker(), "rmi", s.ref(repo))
				if r := s.run(docker(), "image", "inspect", s.ref(repo)); r.code == 0 {
					return result{out: s.ref(repo) + " is still in the engine before the pull", code: 1}, pulled{}
				}
				r := s.run(docker(), "pull", s.ref(repo))
				if r.code != 0 {
					return r, pulled{}
				}
				d := s.run(docker(), "image", "inspect", "--format", `{{join .RepoDigests "\n"}}`, s.ref(repo))
				p := pulled{}
				for line := range strings.SplitSeq(d.out, "\n") {
					if name, digest, ok := strings.Cut(strings.TrimSpace(line), "@"); ok && name == s.reg.Addr+"/"+repo {
						p.digest = digest
					}
				}
				return r, p
			},
			mount: func(s *session, from, to string) result {
				s.t.Cleanup(func() { s.run(docker(), "rmi", "--force", s.ref(to)) })
				if r := s.run(docker(), "tag", s.ref(from), s.ref(to)); r.code != 0 {
					return r
				}
				return s.run(docker(), "push", s.ref(to))
			},
		},
	}
}

// readLayout reads what a client wrote of a pulled image: an OCI image layout (a folder or a
// tar of one, with index.json) or a containers/image "dir:" folder (manifest.json and blobs
// named by their hex digest). It returns the manifest's digest, computed from the bytes
// written, and the content of the first layer: the file inside when the layer is a (gzipped)
// tar of one file, else the layer itself.
func readLayout(p string) (pulled, error) {
	blobs := map[string][]byte{} // "sha256:HEX" → content
	var index, dirManifest []byte
	add := func(name string, raw []byte) {
		switch name = filepath.ToSlash(name); {
		case name == "index.json":
			index = raw
		case name == "manifest.json":
			dirManifest = raw
		case strings.HasPrefix(name, "blobs/sha256/"):
			blobs["sha256:"+strings.TrimPrefix(name, "blobs/sha256/")] = raw
		case regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(name):
			blobs["sha256:"+name] = raw
		}
	}
	if st, err := os.Stat(p); err != nil {
		return pulled{}, err
	} else if st.IsDir() {
		err := filepath.WalkDir(p, func(file string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			raw, err := os.ReadFile(file)
			rel, _ := filepath.Rel(p, file)
			add(rel, raw)
			return err
		})
		if err != nil {
			return pulled{}, err
		}
	} else {
		f, err := os.Open(p)
		if err != nil {
			return pulled{}, err
		}
		defer f.Close()
		tr := tar.NewReader(f)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return pulled{}, err
			}
			raw, _ := io.ReadAll(tr)
			add(strings.TrimPrefix(h.Name, "./"), raw)
		}
	}
	var manifest []byte
	switch {
	case index != nil:
		var idx struct {
			Manifests []struct{ Digest string } `json:"manifests"`
		}
		if err := json.Unmarshal(index, &idx); err != nil || len(idx.Manifests) != 1 {
			return pulled{}, fmt.Errorf("index.json: %v, %d manifests", err, len(idx.Manifests))
		}
		manifest = blobs[idx.Manifests[0].Digest]
	case dirManifest != nil:
		manifest = dirManifest
	default:
		return pulled{}, fmt.Errorf("%s holds neither index.json nor manifest.json", p)
	}
	if manifest == nil {
		return pulled{}, fmt.Errorf("%s: the manifest's blob is missing", p)
	}
	sum := sha256.Sum256(manifest)
	out := pulled{digest: "sha256:" + hex.EncodeToString(sum[:])}
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil || len(m.Layers) == 0 {
		return out, fmt.Errorf("manifest: %v, %d layers", err, len(m.Layers))
	}
	layer, ok := blobs[m.Layers[0].Digest]
	if !ok {
		return out, fmt.Errorf("layer %s was not written", m.Layers[0].Digest)
	}
	out.content = layerContent(layer)
	return out, nil
}

// layerContent is the one file inside a (gzipped) tar layer, or the layer itself.
func layerContent(layer []byte) string {
	raw := layer
	if zr, err := gzip.NewReader(bytes.NewReader(layer)); err == nil {
		if unzipped, err := io.ReadAll(zr); err == nil {
			raw = unzipped
		}
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err != nil {
			return string(layer)
		}
		if h.Typeflag == tar.TypeReg {
			content, _ := io.ReadAll(tr)
			return string(content)
		}
	}
}
