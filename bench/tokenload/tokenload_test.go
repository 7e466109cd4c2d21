package main

import (
	"bytes"
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 2s test @ http://127.0.0.1:1/token
  2 threads and 8 connections
tokenload requests=5000 duration_us=2000000 errors_status=3 errors_connect=0 errors_read=1 errors_write=0 errors_timeout=2 p50_us=1500 p75_us=2000 p90_us=3000 p99_us=9000 p999_us=20000 max_us=31000 mean_us=1800.5
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{requests: 5000, duration: 2 * time.Second, errStatus: 3, errRead: 1, errTimeout: 2,
		p50: 1500 * time.Microsecond, p75: 2 * time.Millisecond, p90: 3 * time.Millisecond, p99: 9 * time.Millisecond,
		p999: 20 * time.Millisecond, max: 31 * time.Millisecond, mean: 1800500 * time.Nanosecond}
	if r != want {
		t.Fatalf("parsed %+v\nwant   %+v", r, want)
	}
	if r.rate() != 2500 || r.socketErrors() != 3 {
		t.Fatalf("rate %v, socket errors %d", r.rate(), r.socketErrors())
	}
	for _, bad := range []string{"no figures at all", "tokenload requests=1 p50_us=2", "tokenload requests=x"} {
		if _, err := parseWrk(bad); err == nil {
			t.Errorf("parseWrk(%q) did not fail", bad)
		}
	}
}

func TestShellJoinAndRedaction(t *testing.T) {
	argv := redactArgs([]string{"wrk", "-c8", "-H", "Authorization: Basic c2VjcmV0", "http://h/token?a=b&c=d"})
	got := shellJoin(argv)
	want := `wrk -c8 -H 'Authorization: Basic <acct0:API key>' 'http://h/token?a=b&c=d'`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestSmoke runs the whole benchmark for a few seconds against real processes (regoauth serve
// on bolt and on a redis-server, wrk with token.lua, a stub peer): it proves the harness still
// works — the import format, the configuration, the metrics it reads, the Lua script, the
// parsing — and that its cold requests really miss the decision cache. It asserts nothing about
// speed.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers and runs wrk")
	}
	for _, p := range []string{"wrk", "redis-server"} {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("REGOAUTH_E2E") == "1" {
				t.Fatalf("%s is not installed, and REGOAUTH_E2E=1 requires it", p)
			}
			t.Skipf("%s is not installed", p)
		}
	}
	bin := filepath.Join(t.TempDir(), "regoauth")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/regoauth").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"token": "stub"}`))
	}))
	defer peer.Close()

	var out bytes.Buffer
	cfg := smoke(defaults())
	cfg.Duration, cfg.Warmup = time.Second, time.Second
	cfg.Regoauth, cfg.Out = bin, &out
	cfg.Peer = Peer{Name: "stub", URL: peer.URL + "/auth?service=registry.example.com&scope=repository:a/b:pull", PID: os.Getpid()}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if bad := rep.Failures(); len(bad) > 0 {
		t.Fatal(bad)
	}
	kinds := map[string]int{}
	for _, s := range rep.Samples {
		kinds[s.target.kind]++
		w := s.wrk
		if w.requests == 0 || w.p50 <= 0 || w.p99 < w.p50 || w.p999 < w.p99 {
			t.Errorf("%s: implausible figures %+v", s.target.label(), w)
		}
		if s.cpu <= 0 {
			t.Errorf("%s: no CPU time measured", s.target.label())
		}
		if s.target.kind == kindPeer {
			continue
		}
		if !s.hasCounters || s.counters.mallocs <= 0 || s.counters.issued < float64(w.requests) {
			t.Errorf("%s: counters %+v for %d requests", s.target.label(), s.counters, w.requests)
		}
		switch s.target.kind {
		case kindCold:
			// Every cold request is decided: the cache answers almost none (a few repeats of
			// the 50 accounts' exact grants are possible); the library alone natively, unless
			// the server evaluates everything.
			if c := s.counters; c.cacheHits > 0.05*(c.cacheHits+c.decided()) || c.decided() < 0.9*float64(w.requests) {
				t.Errorf("%s: decision cache answered %.0f of %.0f decisions", s.target.label(), c.cacheHits, c.cacheHits+c.decided())
			}
			if c, evaluated := s.counters, strings.HasSuffix(s.target.store, evaluatedSuffix); (c.native > 0) == evaluated || (c.cacheMisses > 0) != evaluated {
				t.Errorf("%s: %.0f decisions native, %.0f evaluated", s.target.label(), c.native, c.cacheMisses)
			}
			if c := s.counters; c.granted == 0 || c.denied == 0 {
				t.Errorf("%s: the mix should both grant and deny actions: %+v", s.target.label(), c)
			}
		case kindCached:
			// One request repeated: the decision cache answers it, when it is evaluated.
			if c := s.counters; c.cacheHits+c.native < 0.99*float64(w.requests) {
				t.Errorf("%s: decision cache answered only %.0f of %d requests (%.0f native)", s.target.label(), c.cacheHits, w.requests, c.native)
			}
		case kindAnonymous:
			if c := s.counters; c.granted != 3*float64(c.issued) || c.denied != 0 {
				t.Errorf("%s: every public pull should be granted: %+v", s.target.label(), c)
			}
		}
	}
	n := len(cfg.Stores)
	if want := map[string]int{kindCold: n, kindAnonymous: n, kindCached: n, kindPeer: 1}; n != 3 || !maps.Equal(kinds, want) {
		t.Errorf("runs by kind %v, want %v (bolt, redis and bolt evaluated)", kinds, want)
	}
	for _, s := range rep.Servers {
		if s.idle <= 0 || s.warm <= 0 || len(s.marks) != 1 || s.peak.Load() <= 0 {
			t.Errorf("%s: memory not measured: %+v", s.store, s)
		}
	}
	for _, want := range []string{"cold ÷ anonymous", "cold ÷ stub", "cold p99 ÷ p50", "of decisions native", "every response 2xx"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}
