// Package e2e tests regoauth end to end with the real programs people use: the regoauth binary,
// a distribution registry, and registry clients (crane, oras, regctl, skopeo, docker). A test
// needing a program that is not installed is skipped on a developer machine, and fails when
// REGOAUTH_E2E=1 (as in CI).
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binary is the regoauth binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "regoauth-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "regoauth")
	build := exec.Command("go", "build", "-o", binary, "../cmd/regoauth")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building regoauth:", err)
		os.Exit(1)
	}
	code := m.Run()
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

// freeAddr returns a localhost address with a port nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprintf("localhost:%d", l.Addr().(*net.TCPAddr).Port)
}

// devStack is a running `regoauth dev`.
type devStack struct {
	Registry string // localhost:PORT
	Token    string // localhost:PORT
	Data     string
	AdminKey string
	cmd      *exec.Cmd
	stderr   *bytes.Buffer
	exited   chan struct{}
	exitErr  error
}

// startDev runs `regoauth dev` on free ports with a data folder (a new one when data is "").
func startDev(t *testing.T, data string) *devStack {
	t.Helper()
	return startDevWith(t, data)
}

// startDevWith is startDev with more arguments for `regoauth dev`.
func startDevWith(t *testing.T, data string, args ...string) *devStack {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	d := &devStack{Registry: freeAddr(t), Token: freeAddr(t), Data: data, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(binary, append([]string{"dev", "--data", data, "--registry-addr", d.Registry, "--token-addr", d.Token}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.stderr, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.Stop(t) })
	deadline := time.After(30 * time.Second)
	for !ready(d.Token) || !registryUp(d.Registry) {
		select {
		case <-d.exited:
			t.Fatalf("regoauth dev exited (%v) before it was ready:\n%s", d.exitErr, d.stderr)
		case <-deadline:
			t.Fatalf("regoauth dev did not become ready within 30s:\n%s", d.stderr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	raw, err := os.ReadFile(filepath.Join(data, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	d.AdminKey = strings.TrimSpace(string(raw))
	return d
}

func ready(addr string) bool {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func registryUp(addr string) bool {
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusUnauthorized
}

// Stop interrupts the stack like Ctrl-C and waits for a clean exit.
func (d *devStack) Stop(t *testing.T) {
	t.Helper()
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.exited:
		if d.exitErr != nil {
			t.Errorf("regoauth dev exited with %v after Ctrl-C:\n%s", d.exitErr, d.stderr)
		}
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		t.Errorf("regoauth dev did not stop within 20s of Ctrl-C")
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
	return runIn(t, "", env, name, args...)
}

// runIn is run in the working directory dir.
func runIn(t *testing.T, dir string, env []string, name string, args ...string) result {
	t.Helper()
	return runInWithStdin(t, dir, env, "", name, args...)
}

// runInWithStdin is runIn with stdin as the program's standard input.
func runInWithStdin(t *testing.T, dir string, env []string, stdin string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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

// refused runs a command that has to fail.
func refused(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	res := run(t, env, name, args...)
	if res.code == 0 {
		t.Fatalf("%s %s succeeded, want a refusal\n%s", filepath.Base(name), strings.Join(args, " "), res.out)
	}
	return res.out
}

// cli runs regoauth against the stack as the holder of key.
func (d *devStack) cli(t *testing.T, key string, args ...string) string {
	t.Helper()
	return must(t, d.cliEnv(key), binary, args...)
}

func (d *devStack) cliEnv(key string) []string {
	return []string{"REGOAUTH_SERVER=http://" + d.Token, "REGOAUTH_KEY=" + key, "REGOAUTH_KEY_FILE="}
}

// account creates an account with a key and returns the key.
func (d *devStack) account(t *testing.T, name string) string {
	t.Helper()
	d.cli(t, d.AdminKey, "accounts", "create", name)
	return strings.TrimSpace(d.cli(t, d.AdminKey, "keys", "create", "--account", name))
}

// layerTar writes a one-file layer tarball to push as an image.
func layerTar(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "layer.tar")
	must(t, nil, "tar", "-C", dir, "-cf", tarPath, "hello.txt")
	return tarPath
}
