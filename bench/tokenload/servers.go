package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// process is a program the benchmark started; stop ends it and waits.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
}

func start(ctx context.Context, name, logPath string, env []string, argv ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return &process{name: name, cmd: cmd, log: logFile}, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) stop() {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedis starts a redis-server on a free loopback port, without persistence.
func startRedis(ctx context.Context, cfg Config, dir string) (*process, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	p, err := start(ctx, "redis-server", filepath.Join(dir, "redis.log"), nil, cfg.RedisServer,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no")
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_, err = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			c.Close()
			if err == nil && strings.HasPrefix(string(buf[:n]), "+PONG") {
				return p, "redis://" + addr + "/0", nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, "", fmt.Errorf("redis-server on %s did not answer within 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverConfig is `regoauth serve`'s configuration: the defaults of a production server (JSON
// audit log at info, principal and decision caches on) on loopback without TLS, with a policy
// bundle that makes public/* public. With native false every decision is evaluated.
func serverConfig(addr, storeURL, keyFile, certFile, policyDir string, native bool) string {
	return fmt.Sprintf(`issuer: regoauth
services: [%s]
listen: {addr: %q}
signing: {key_file: %q, cert_file: %q}
store: {url: %q}
policy: {dir: %q, native: %t}
log: {format: json, level: info}
`, service, addr, keyFile, certFile, storeURL, policyDir, native)
}

const (
	service = "registry.example.com"
	// publicPattern is what the policy bundle makes public; anonymous requests ask for it.
	publicPattern = "public/*"
)

// writePolicy writes the bundle that configures the built-in library.
func writePolicy(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	manifest := `{"revision": "bench", "roots": ["regoauth/config"]}`
	data := fmt.Sprintf(`{"regoauth": {"config": {"public_repositories": [%q]}}}`, publicPattern)
	if err := os.WriteFile(filepath.Join(dir, ".manifest"), []byte(manifest), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "data.json"), []byte(data), 0o644)
}

// startServer runs `regoauth serve` on a free port and waits until it is ready.
func startServer(ctx context.Context, cfg Config, dir, name, storeURL, keyFile, certFile, policyDir string, native bool) (*process, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(serverConfig(addr, storeURL, keyFile, certFile, policyDir, native)), 0o600); err != nil {
		return nil, "", err
	}
	p, err := start(ctx, "regoauth ("+name+")", filepath.Join(dir, name+".log"), cfg.ServerEnv, cfg.Regoauth, "serve", "--config", cfgPath)
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, base, nil
			}
		}
		if p.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop()
	return nil, "", fmt.Errorf("regoauth (%s) did not become ready within 30s; see %s", name, p.log.Name())
}

// importData loads the import file into a store with `regoauth import`.
func importData(ctx context.Context, cfg Config, storeURL, file string) error {
	out, err := exec.CommandContext(ctx, cfg.Regoauth, "import", "--store", storeURL, file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("regoauth import: %w: %s", err, out)
	}
	return nil
}

// cpuTime is the user and system CPU time a process has used (/proc/PID/stat).
func cpuTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it are plain.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	// Fields 14 and 15 (utime, stime) are the 12th and 13th after the name, in clock ticks;
	// Linux reports them in USER_HZ, which is 100.
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

// rss is a process's resident memory in bytes (/proc/PID/status VmRSS).
func rss(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// scrape reads the counters the benchmark needs from a server's /metrics.
type counters struct {
	mallocs, gcs           float64
	issued, requests       float64
	cacheHits, cacheMisses float64
	// native are the decisions made natively (neither cached nor evaluated).
	native          float64
	granted, denied float64
}

// requiredMetrics must be exposed for the figures to mean anything.
var requiredMetrics = []string{"go_memstats_mallocs_total", "go_gc_duration_seconds"}

func scrape(base string) (counters, error) {
	var c counters
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("GET %s/metrics: %s", base, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return c, fmt.Errorf("reading %s/metrics: %w", base, err)
	}
	for _, name := range requiredMetrics {
		if families[name] == nil {
			return c, fmt.Errorf("%s/metrics does not expose %s", base, name)
		}
	}
	sum := func(name string, match func(labels map[string]string) bool) float64 {
		var total float64
		f := families[name]
		if f == nil {
			return 0
		}
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if match != nil && !match(labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			case m.Summary != nil:
				total += float64(m.Summary.GetSampleCount())
			}
		}
		return total
	}
	is := func(k, v string) func(map[string]string) bool {
		return func(l map[string]string) bool { return l[k] == v }
	}
	c.mallocs = sum("go_memstats_mallocs_total", nil)
	c.gcs = sum("go_gc_duration_seconds", nil)
	c.requests = sum("regoauth_token_requests_total", nil)
	c.issued = sum("regoauth_token_requests_total", is("outcome", "issued"))
	c.cacheHits = sum("regoauth_policy_decision_cache_total", func(l map[string]string) bool { return l["query"] == "authz" && l["result"] == "hit" })
	c.cacheMisses = sum("regoauth_policy_decision_cache_total", func(l map[string]string) bool { return l["query"] == "authz" && l["result"] == "miss" })
	c.native = sum("regoauth_policy_native_decisions_total", nil)
	c.granted = sum("regoauth_token_actions_total", is("result", "granted"))
	c.denied = sum("regoauth_token_actions_total", is("result", "denied"))
	return c, nil
}

// decided are the decisions made other than from the cache: evaluated or native.
func (c counters) decided() float64 { return c.cacheMisses + c.native }

func (c counters) minus(o counters) counters {
	return counters{
		mallocs: c.mallocs - o.mallocs, gcs: c.gcs - o.gcs,
		issued: c.issued - o.issued, requests: c.requests - o.requests,
		cacheHits: c.cacheHits - o.cacheHits, cacheMisses: c.cacheMisses - o.cacheMisses, native: c.native - o.native,
		granted: c.granted - o.granted, denied: c.denied - o.denied,
	}
}
