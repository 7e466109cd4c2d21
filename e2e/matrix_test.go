package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The compatibility matrix: every client against every registry, through `regoauth serve`.
// Each cell is a step a user takes, and a ✓ is given for its effect, never for an exit code
// alone:
//
//   - login: a wrong key is refused by the token server (a 401 in its audit log) and the client
//     fails; then the right key gets a token (a 200 for the account in the audit log). crane's
//     login only writes its configuration, so its step also asks for a token with it.
//   - push: the registry logged the manifest PUT answered 201, and holds the manifest.
//   - pull: into a place where the image was not (docker: the engine proven not to hold the
//     tag); the manifest digest the client wrote or recorded is the one the registry holds, and
//     the content it wrote (the layer's file, the artifact, the chart) is what was pushed.
//   - refused push: the registry itself refused a request with the token ("insufficient scope"
//     in its log), the token server granted pull only, and the manifest is not there.
//   - cross-repo mount: the registry answered a mount request (POST …/blobs/uploads/?mount=…
//     &from=SOURCE) with 201, no blob was uploaded, and the copy has the source's digest.
//   - delete: afterwards the registry answers 404 for the manifest, by digest and by tag, to a
//     token that may read it.
//   - refresh token: a pull, checked as above, by a client holding only the refresh token a
//     login gave (the token server saw refresh grants and no password).
//
// The README's table is generated from this run (REGOAUTH_UPDATE_MATRIX=1) with the versions
// of the programs it used, and, in CI, checked against it.

var steps = []string{"login", "push", "pull", "refused push", "cross-repo mount", "delete", "refresh token"}

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

func (r *matrixResults) markdown(caption string) string {
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
	b.WriteString("\n" + caption + "\n")
	return b.String()
}

func TestMatrix(t *testing.T) {
	t.Parallel()
	// The registries' service names must be in the token server's config before it starts,
	// and the registries need its address: reserve their addresses first.
	v3Addr, v28Addr := freeAddr(t), freeAddr(t)
	srv := startServer(t, serveConfig{services: []string{v3Addr, v28Addr}, x5c: true, caIssued: true})
	regs := []*registry{startRegistry(t, "v3", v3Addr, srv, registryTrust{}), startRegistry(t, "v2.8", v28Addr, srv, registryTrust{})}
	key := srv.account(t, "alice")
	srv.admin(t, "grants", "add", "--account", "alice", "--repo", "m/**", "--actions", "pull,push,delete")
	srv.admin(t, "grants", "add", "--account", "alice", "--repo", "shared/**", "--actions", "pull")

	results := &matrixResults{cells: map[string]map[string]cell{}}
	clients := registryClients(t)
	names := make([]string, 0, len(clients))
	for n := range clients {
		names = append(names, n)
	}
	sort.Strings(names)
	// The registries run side by side, each with one client at a time: a step's audit records
	// are then the ones of the step's registry (its service) that the harness did not make.
	t.Run("rows", func(t *testing.T) {
		for _, reg := range regs {
			t.Run(reg.Version, func(t *testing.T) {
				t.Parallel()
				for _, name := range names {
					t.Run(name, func(t *testing.T) {
						s := newSession(t, name, srv, reg, "alice", key)
						runSteps(t, s, name+" / distribution "+reg.Version, results)
					})
				}
			})
		}
	})

	table := results.markdown(versionsCaption(t))
	t.Logf("compatibility matrix:\n%s", table)
	checkREADMEMatrix(t, table)
}

// versionsCaption names the versions of every program this run used.
func versionsCaption(t *testing.T) string {
	first := func(out string) string { return strings.TrimSpace(strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]) }
	oras := first(must(t, nil, tool(t, "oras"), "version"))
	docker := strings.Fields(must(t, nil, tool(t, "docker"), "version", "--format", "{{.Client.Version}} {{.Server.Version}}"))
	// helm built by go install reports only major.minor; its build information has the rest.
	helm, _, _ := strings.Cut(first(must(t, nil, tool(t, "helm"), "version", "--short")), "+")
	for line := range strings.SplitSeq(run(t, nil, "go", "version", "-m", tool(t, "helm")).out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == "helm.sh/helm/v3" {
			helm = f[2]
		}
	}
	return fmt.Sprintf("Run with distribution %s and %s; crane %s, docker %s (engine %s), helm %s, oras %s, regctl %s, skopeo %s.",
		distributionVersion(t, "v3"), distributionVersion(t, "v2.8"),
		first(must(t, nil, tool(t, "crane"), "version")), docker[0], docker[1], helm,
		strings.TrimSpace(strings.TrimPrefix(oras, "Version:")),
		first(must(t, nil, tool(t, "regctl"), "version", "--format", "{{.VCSTag}}")),
		strings.TrimPrefix(first(must(t, nil, tool(t, "skopeo"), "--version")), "skopeo version "))
}

// runSteps performs every step of one client on one registry, recording each result. A step
// fails with what the token server and the registry logged while it ran.
func runSteps(t *testing.T, s *session, row string, results *matrixResults) {
	src, dst, shared := "m/"+s.client+"/src", "m/"+s.client+"/dst", "shared/"+s.client
	if s.client == "helm" { // helm names the repository after the chart, under the path given
		src, shared = "m/helm/hello", "shared/helm/hello"
	}
	var digest string   // of src, as the registry holds it after the push
	var manifest []byte // and the manifest itself

	// audit is what the token server logged for this step's client since mark.
	audit := func(since int) []logRecord {
		var out []logRecord
		for _, rec := range s.srv.audit(since) {
			if rec["service"] == s.reg.Addr && rec["client_id"] != harnessClientID {
				out = append(out, rec)
			}
		}
		return out
	}
	audited := func(since int, match func(logRecord) bool) bool { return slices.ContainsFunc(audit(since), match) }
	step := func(name string, available bool, fn func(auditMark, regMark int) string) bool {
		t.Helper()
		if !available {
			results.set(row, name, notDone)
			return true
		}
		auditMark, regMark := s.srv.mark(), s.reg.mark()
		msg := fn(auditMark, regMark)
		if msg == "" {
			results.set(row, name, pass)
			return true
		}
		results.set(row, name, failed)
		var evidence []string
		for _, rec := range audit(auditMark) {
			evidence = append(evidence, fmt.Sprintf("token %s %s grant=%s account=%s requested=%q granted=%q",
				rec["status"], rec["method"], rec["grant"], rec["account"], rec["requested"], rec["granted"]))
		}
		for _, q := range s.reg.requests(regMark) {
			evidence = append(evidence, "registry "+q.String())
		}
		t.Errorf("%s, step %q: %s\nwhile it ran:\n  %s", row, name, msg, strings.Join(evidence, "\n  "))
		return false
	}
	exit := func(r result, wantOK bool) string {
		if (r.code == 0) != wantOK {
			return fmt.Sprintf("exit %d, want success=%v:\n%s", r.code, wantOK, r.out)
		}
		return ""
	}
	// pullChecked pulls src and compares what the client wrote with what was pushed.
	pullChecked := func(regMark int) string {
		r, p := s.steps.pull(s, src)
		if msg := exit(r, true); msg != "" {
			return msg
		}
		switch {
		case p.digest != digest:
			return fmt.Sprintf("the pulled manifest's digest is %q, the registry holds %s:\n%s", p.digest, digest, r.out)
		case s.client != "docker" && p.content != s.pushed[src]:
			return fmt.Sprintf("the client wrote %q, %q was pushed", p.content, s.pushed[src])
		}
		return ""
	}

	if !step("login", true, func(auditMark, _ int) string {
		r := s.steps.login(s, wrongKey(s.key))
		if r.code == 0 {
			return "a wrong key logged in:\n" + r.out
		}
		if !audited(auditMark, func(rec logRecord) bool { return rec["status"] == "401" }) {
			return "the token server refused no request while a wrong key logged in:\n" + r.out
		}
		s.newHome() // nothing of the failed login is kept
		since := s.srv.mark()
		if msg := exit(s.steps.login(s, s.key), true); msg != "" {
			return msg
		}
		if !audited(since, func(rec logRecord) bool {
			return rec["status"] == "200" && rec["account"] == "alice" && rec["grant"] == "password"
		}) {
			return "the token server issued no token to alice's key during the login"
		}
		return ""
	}) {
		return
	}

	if !step("push", true, func(_, regMark int) string {
		if msg := exit(s.steps.push(s, src), true); msg != "" {
			return msg
		}
		if !s.reg.logged(regMark, func(q registryRequest) bool {
			return q.method == "PUT" && q.path == "/v2/"+src+"/manifests/"+s.steps.tag && q.status == 201
		}) {
			return "the registry logged no manifest PUT answered 201"
		}
		var status int
		if status, digest, manifest = s.reg.manifest(t, s.srv, src, s.steps.tag); status != 200 {
			return fmt.Sprintf("the registry answers %d for the pushed manifest", status)
		}
		return ""
	}) {
		return
	}

	step("pull", true, func(_, regMark int) string { return pullChecked(regMark) })

	step("refused push", true, func(auditMark, regMark int) string {
		if msg := exit(s.steps.push(s, shared), false); msg != "" {
			return msg
		}
		if !s.reg.refused(regMark, shared, "insufficient scope") {
			return "the registry refused no request on " + shared + " for insufficient scope"
		}
		if !audited(auditMark, func(rec logRecord) bool {
			return rec["requested"] == "repository:"+shared+":pull,push" && rec["granted"] == "repository:"+shared+":pull"
		}) {
			return "no token request asked for push and got pull only"
		}
		if status, _, _ := s.reg.manifest(t, s.srv, shared, s.steps.tag); status != 404 {
			return fmt.Sprintf("the registry answers %d for the refused manifest", status)
		}
		return ""
	})

	step("cross-repo mount", s.steps.mount != nil, func(_, regMark int) string {
		if msg := exit(s.steps.mount(s, src, dst), true); msg != "" {
			return msg
		}
		// Every layer must be mounted, none uploaded. (docker and skopeo upload the config,
		// a blob of a few hundred bytes, rather than mount it.)
		for _, layer := range layers(t, manifest) {
			mounted := s.reg.logged(regMark, func(q registryRequest) bool {
				return q.method == "POST" && q.path == "/v2/"+dst+"/blobs/uploads/" && q.query.Get("mount") == layer && q.query.Get("from") == src && q.status == 201
			})
			uploaded := slices.ContainsFunc(s.reg.requests(regMark), func(q registryRequest) bool {
				return q.method == "PUT" && strings.HasPrefix(q.path, "/v2/"+dst+"/blobs/uploads/") && q.query.Get("digest") == layer
			})
			if !mounted || uploaded {
				return fmt.Sprintf("layer %s: mounted from %s %v, uploaded %v", layer, src, mounted, uploaded)
			}
		}
		if status, d, _ := s.reg.manifest(t, s.srv, dst, s.steps.tag); status != 200 || d != digest {
			return fmt.Sprintf("the copy: HTTP %d, digest %s, want %s", status, d, digest)
		}
		return ""
	})

	step("delete", s.steps.delete != nil, func(_, _ int) string {
		if msg := exit(s.steps.delete(s, dst), true); msg != "" {
			return msg
		}
		for _, ref := range []string{digest, s.steps.tag} {
			if status, _, _ := s.reg.manifest(t, s.srv, dst, ref); status != 404 {
				return fmt.Sprintf("after the delete the registry answers %d for %s@%s", status, dst, ref)
			}
		}
		return ""
	})

	step("refresh token", true, func(auditMark, regMark int) string {
		if s.client != "docker" { // docker's own login stored one
			tok := s.srv.token(tokenRequest{user: "alice", key: s.key, service: s.reg.Addr, offline: true})
			if tok.refreshToken == "" {
				return fmt.Sprintf("the login probe returned no refresh token: HTTP %d %s", tok.status, tok.raw)
			}
			auditMark = s.srv.mark()
			s.writeIdentityToken(tok.refreshToken)
		}
		if msg := pullChecked(regMark); msg != "" {
			return msg
		}
		if !audited(auditMark, func(rec logRecord) bool { return rec["grant"] == "refresh_token" && rec["status"] == "200" }) {
			return "no token was issued for the refresh token"
		}
		if audited(auditMark, func(rec logRecord) bool { return rec["grant"] == "password" }) {
			return "the client sent a password, not the refresh token"
		}
		return ""
	})
}

// wrongKey is key with another secret: the same account, the same key id.
func wrongKey(key string) string {
	last := key[len(key)-1]
	return key[:len(key)-1] + map[bool]string{true: "a", false: "b"}[last != 'a']
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
