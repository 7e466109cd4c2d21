// Package e2e tests regoauth end to end with the real programs people use: the regoauth binary,
// distribution registries, and registry clients (crane, oras, regctl, skopeo, helm, docker). A
// test needing a program that is not installed is skipped on a developer machine, and fails when
// REGOAUTH_E2E=1 (as in CI).
//
// The harness has one type per kind of process: server (regoauth serve or dev, server_test.go),
// registry (registry_test.go) and session (one account using one client, clients_test.go). Every
// check reads what a process did — its log, its HTTP answers, the files a client wrote — never
// only an exit code.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// binary is the regoauth binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	// The tests spend most of their time waiting for processes: four at a time keep two cores
	// busy (-parallel on the command line still decides).
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		flag.Set("test.parallel", "4")
	}
	dir, err := os.MkdirTemp("", "regoauth-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The test registries build while regoauth does and the first tests run.
	waitRegistries := buildRegistries(dir)
	binary = filepath.Join(dir, "regoauth")
	build := exec.Command("go", "build", "-o", binary, "../cmd/regoauth")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building regoauth:", err)
		os.Exit(1)
	}
	code := m.Run()
	waitRegistries()
	os.RemoveAll(dir)
	os.Exit(code)
}

// strict reports whether missing programs are failures (CI) rather than skips.
func strict() bool { return os.Getenv("REGOAUTH_E2E") == "1" }

// tool returns the path of an external program, skipping or failing the test without it.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", name); isExecutable(p) {
			return p
		}
	}
	if strict() {
		t.Fatalf("%s is not installed, and REGOAUTH_E2E=1 requires it", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// freeAddr returns a localhost address with a port nobody listens on right now, and never one
// it returned before: tests run side by side. (Another program may still take the port before
// a test's server binds it; the servers' start checks that their own process listens.)
func freeAddr(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given[port] {
			given[port] = true
			return fmt.Sprintf("localhost:%d", port)
		}
	}
}

// result is what a command did.
type result struct {
	out  string
	code int
}

// run runs a program with env added to the environment and a time limit.
func run(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	return runIn(t, "", env, "", name, args...)
}

// runIn is run in the working directory dir with stdin as the program's standard input.
func runIn(t *testing.T, dir string, env []string, stdin string, name string, args ...string) result {
	t.Helper()
	return runLimited(t, 2*time.Minute, dir, env, stdin, name, args...)
}

// runLimited is runIn with a time limit of its own, for builds that compile the whole module.
func runLimited(t *testing.T, limit time.Duration, dir string, env []string, stdin string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := result{out: out.String()}
	if err != nil {
		res.code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			res.code = ee.ExitCode()
		}
	}
	return res
}

// must runs a command that has to succeed and returns its output.
func must(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	res := run(t, env, name, args...)
	if res.code != 0 {
		t.Fatalf("%s %s: exit %d\n%s", filepath.Base(name), strings.Join(args, " "), res.code, res.out)
	}
	return res.out
}

// eventually polls cond every 20 ms until it holds and returns how long that took; after limit
// it fails the test.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// layerTar writes a one-file layer tarball (hello.txt holding content) to push as an image.
// Its path has no comma (crane splits -f on commas; a test's temporary folder is named after
// the test).
func layerTar(t *testing.T, content string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "regoauth-e2e-layer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	writeFile(t, filepath.Join(dir, "src", "hello.txt"), content, 0o644)
	tarPath := filepath.Join(dir, "layer.tar")
	must(t, nil, "tar", "-C", filepath.Join(dir, "src"), "-cf", tarPath, "hello.txt")
	return tarPath
}

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

// mark is where the output ends now: records(mark) reads only what comes after.
func (b *syncBuffer) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// logRecord is one structured log line, every value as text.
type logRecord map[string]string

// records returns the log lines written since mark whose message is msg ("" for all), parsed
// from JSON or from key=value text (slog's and logrus's text forms alike).
func (b *syncBuffer) records(since int, msg string) []logRecord {
	s := b.String()
	if since > len(s) {
		since = len(s)
	}
	var out []logRecord
	sc := bufio.NewScanner(strings.NewReader(s[since:]))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if rec := parseLogLine(sc.Text()); rec != nil && (msg == "" || rec["msg"] == msg) {
			out = append(out, rec)
		}
	}
	return out
}

func parseLogLine(line string) logRecord {
	if strings.HasPrefix(line, "{") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			return nil
		}
		rec := logRecord{}
		for k, v := range m {
			if s, ok := v.(string); ok {
				rec[k] = s
			} else {
				raw, _ := json.Marshal(v)
				rec[k] = string(raw)
			}
		}
		return rec
	}
	rec := logRecord{}
	for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimLeft(rest, " ") {
		key, after, ok := strings.Cut(rest, "=")
		if !ok || strings.ContainsAny(key, " \"") {
			return nil
		}
		value := after
		if strings.HasPrefix(after, `"`) {
			quoted, err := strconv.QuotedPrefix(after)
			if err != nil {
				return nil
			}
			value, _ = strconv.Unquote(quoted)
			rest = after[len(quoted):]
		} else {
			value, rest, _ = strings.Cut(after, " ")
		}
		rec[key] = value
	}
	if rec["msg"] == "" {
		return nil
	}
	return rec
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// process is a server started for a test and stopped (Ctrl-C) when it ends. When the test
// fails, the end of its output goes to the test log.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error
	// graceful: the program must exit with status 0 on Ctrl-C (regoauth does; the test
	// registries and Prometheus are not under test there).
	graceful bool
}

func startProcess(t *testing.T, name string, env []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(append(os.Environ(), "OTEL_TRACES_EXPORTER=none"), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		if t.Failed() {
			defer func() { t.Logf("%s output:\n%s", name, tail(p.out.String(), 60)) }()
		}
		p.stop(t)
	})
	return p
}

// stop interrupts the process like Ctrl-C and waits for it to exit cleanly.
func (p *process) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
		if p.graceful && p.err != nil {
			t.Errorf("%s exited with %v after Ctrl-C", p.name, p.err)
		}
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("%s did not stop within 20s of Ctrl-C", p.name)
	}
}

// waitFor polls ok until it holds, failing if the process exits or 30 s pass.
func (p *process) waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !ok() {
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%v) before %s:\n%s", p.name, p.err, what, tail(p.out.String(), 60))
		case <-deadline:
			t.Fatalf("%s: no %s within 30s:\n%s", p.name, what, tail(p.out.String(), 60))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
