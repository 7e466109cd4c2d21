package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/internal/secretfile"
)

// Kinds of runs.
const (
	kindCold      = "cold"
	kindAnonymous = "anonymous"
	kindCached    = "cached"
	kindPeer      = "peer"
)

// target is one series of runs: a server and a kind of request.
type target struct {
	store, kind string
	url         string
	headers     []string
	scriptArgs  []string
	// pid is the server's process (0: unknown); metrics its base URL ("" when it has none).
	pid     int
	metrics string
	// helperPID is a process serving the server (its redis-server), whose CPU is reported too.
	helperPID int
}

func (t *target) label() string {
	if t.kind == kindPeer {
		return t.store
	}
	return t.store + " " + t.kind
}

// sample is one wrk run of a target.
type sample struct {
	target         *target
	conns, round   int
	wrk            wrkResult
	cpu, helperCPU time.Duration // -1 when unknown
	counters       counters
	hasCounters    bool
	command        string
}

// server is a regoauth process of the run, with its memory over the run.
type server struct {
	store  string
	proc   *process
	base   string
	helper *process
	idle   int64 // RSS after start, before any request
	warm   int64 // after the warm-up
	warmAt time.Time
	// warmDecisions is how many decisions the warm-up evaluated (and cached).
	warmDecisions float64
	marks         []rssMark // after each block of runs; the last is the end
	peak          atomic.Int64
	importDur     time.Duration
}

type rssMark struct {
	label string
	rss   int64
	at    time.Time
}

// sampleRSS keeps the server's peak memory until ctx ends.
func (s *server) sampleRSS(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		if v, err := rss(s.proc.pid()); err == nil && v > s.peak.Load() {
			s.peak.Store(v)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Report is the result of a run.
type Report struct {
	Config   Config
	Ceilings []ceiling
	Samples  []sample
	Servers  []*server
	PeerRSS  [2]int64
	Accounts int
	Grants   int
	Started  time.Time
	Elapsed  time.Duration
}

// Failures are what make the figures invalid: refused requests, socket errors, tokens not issued.
func (r *Report) Failures() []string {
	var out []string
	for _, s := range r.Samples {
		name := fmt.Sprintf("%s at %d connections", s.target.label(), s.conns)
		if s.wrk.errStatus > 0 {
			out = append(out, fmt.Sprintf("%s: %d responses with status ≥ 400", name, s.wrk.errStatus))
		}
		if n := s.wrk.socketErrors(); n > 0 {
			out = append(out, fmt.Sprintf("%s: %d socket errors or timeouts", name, n))
		}
		// wrk counts the requests completed in its window; the server may finish a few more.
		if s.hasCounters && s.counters.issued < float64(s.wrk.requests) {
			out = append(out, fmt.Sprintf("%s: %d requests, only %.0f tokens issued", name, s.wrk.requests, s.counters.issued))
		}
		if s.wrk.requests == 0 {
			out = append(out, name+": no request completed")
		}
	}
	return out
}

// expected is how long the measurement takes, setup aside.
func expected(cfg Config, targets int) time.Duration {
	perBlock := 2*cfg.Ceiling + time.Duration(targets)*(cfg.Duration+time.Second)
	return time.Duration(cfg.Rounds*len(cfg.Connections))*perBlock + time.Duration(len(cfg.Stores))*(3*cfg.Warmup+time.Second)
}

// Run performs the benchmark and prints the report to cfg.Out.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	rep := &Report{Config: cfg, Started: time.Now()}
	if err := validate(cfg); err != nil {
		return nil, err
	}
	work := cfg.Work
	if work == "" {
		// The bolt file and the import live in memory when they can: the benchmark measures
		// the server, not the disk of a shared machine.
		base := ""
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			base = "/dev/shm"
		}
		var err error
		if work, err = os.MkdirTemp(base, "tokenload-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, err
	}
	if !cfg.Keep && cfg.Work == "" {
		defer os.RemoveAll(work)
	}
	out := cfg.Out
	script := filepath.Join(work, "token.lua")
	if err := os.WriteFile(script, luaScript, 0o644); err != nil {
		return nil, err
	}

	targetsPerBlock := 3 * len(cfg.Stores)
	if cfg.Peer.URL != "" {
		targetsPerBlock++
	}
	fmt.Fprintf(out, "tokenload: %d accounts (one key, %d–%d grants each), stores %s, %d and wrk -t%d -c%s, %s per run, %d round(s)\n",
		cfg.Accounts, cfg.MinGrants, cfg.MaxGrants, strings.Join(cfg.Stores, ", "), len(cfg.Connections), cfg.Threads,
		joinInts(cfg.Connections), cfg.Duration, cfg.Rounds)
	if len(cfg.ServerEnv) > 0 {
		fmt.Fprintf(out, "regoauth serve runs with %s\n", strings.Join(cfg.ServerEnv, " "))
	}
	fmt.Fprintf(out, "expected duration: about %s of measurement after the stores are loaded (work directory %s)\n",
		expected(cfg, targetsPerBlock).Round(time.Second), work)

	keyFile, certFile := filepath.Join(work, "signing.pem"), filepath.Join(work, "signing.crt")
	key, err := secretfile.EnsureSigningKey(keyFile, certFile, jose.ES256, "regoauth", time.Now())
	if err != nil {
		return nil, err
	}
	seed := uint64(time.Now().UnixNano())
	data, err := generate(cfg, mrand.New(mrand.NewPCG(seed, seed>>1)))
	if err != nil {
		return nil, err
	}
	rep.Accounts, rep.Grants = len(data.accounts), data.grants()
	importFile, luaData := filepath.Join(work, "import.jsonl"), filepath.Join(work, "data.lua")
	if err := writeFile(importFile, data.writeImport); err != nil {
		return nil, err
	}
	if err := writeFile(luaData, func(f io.Writer) error { return data.writeLua(f, cfg, "/token", service) }); err != nil {
		return nil, err
	}
	policyDir := filepath.Join(work, "policy")
	if err := writePolicy(policyDir); err != nil {
		return nil, err
	}

	defer func() {
		for _, s := range rep.Servers {
			s.proc.stop()
			s.helper.stop()
		}
	}()
	for _, store := range cfg.Stores {
		s := &server{store: store}
		rep.Servers = append(rep.Servers, s)
		dir := filepath.Join(work, store)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		var storeURL string
		switch backend(store) {
		case "bolt":
			storeURL = "bolt://" + filepath.Join(dir, "store.db")
		case "redis":
			if s.helper, storeURL, err = startRedis(ctx, cfg, dir); err != nil {
				return nil, err
			}
		}
		t := time.Now()
		if err := importData(ctx, cfg, storeURL, importFile); err != nil {
			return nil, err
		}
		s.importDur = time.Since(t)
		if s.proc, s.base, err = startServer(ctx, cfg, work, store, storeURL, keyFile, certFile, policyDir, !strings.HasSuffix(store, evaluatedSuffix)); err != nil {
			return nil, err
		}
		if _, err := scrape(s.base); err != nil {
			return nil, err
		}
		s.idle, _ = rss(s.proc.pid())
		fmt.Fprintf(out, "%s: imported %d accounts, %d keys, %d grants with `regoauth import` in %s; serving on %s\n",
			store, rep.Accounts, rep.Accounts, rep.Grants, s.importDur.Round(10*time.Millisecond), s.base)
	}

	// The targets, in the order they run in each block: a store's cold runs sit next to its
	// own anonymous runs and to the peer, so the ratios that matter most compare runs that
	// follow each other.
	first := data.accounts[0]
	cachedQuery := url.Values{"service": {service}, "scope": {
		"repository:" + strings.Replace(first.grants[0].Repository, "*", "app0", 1) + ":push,pull",
		"repository:ns1/app1:pull", "repository:ns2/app2:pull"}}
	publicQuery := url.Values{"service": {service}, "scope": {
		"repository:public/app1:pull", "repository:public/app2:pull", "repository:public/base:pull"}}
	byStore := map[string]map[string]*target{}
	for _, s := range rep.Servers {
		var helper int
		if s.helper != nil {
			helper = s.helper.pid()
		}
		mk := func(kind, u string, headers []string, args ...string) *target {
			return &target{store: s.store, kind: kind, url: u, headers: headers, scriptArgs: args,
				pid: s.proc.pid(), metrics: s.base, helperPID: helper}
		}
		byStore[s.store] = map[string]*target{
			kindCold:      mk(kindCold, s.base+"/token", nil, luaData),
			kindAnonymous: mk(kindAnonymous, s.base+"/token?"+publicQuery.Encode(), nil),
			kindCached:    mk(kindCached, s.base+"/token?"+cachedQuery.Encode(), []string{"Authorization: " + first.basicAuth()}),
		}
	}
	var peer *target
	if cfg.Peer.URL != "" {
		peer = &target{store: cfg.Peer.Name, kind: kindPeer, url: cfg.Peer.URL, pid: cfg.Peer.PID}
	}
	sequence := order(cfg.Stores, byStore, peer)

	// Warm-up: every server serves the cold mix, unrecorded, until it has evaluated
	// WarmDecisions cold decisions (its principal cache holds every account then; the decision
	// cache keeps only inputs seen twice) or for a minute at most; its memory then is the start
	// of the "flat over the run" figure.
	for _, s := range rep.Servers {
		deadline := time.Now().Add(time.Minute)
		for {
			argv := wrkArgs(cfg, script, maxInt(cfg.Connections), cfg.Warmup, s.base+"/token", nil, luaData)
			if _, outText, err := runWrk(ctx, argv); err != nil {
				return nil, fmt.Errorf("warm-up of %s: %w\n%s", s.store, err, outText)
			}
			c, err := scrape(s.base)
			if err != nil {
				return nil, err
			}
			s.warmDecisions = c.decided()
			if s.warmDecisions >= float64(cfg.WarmDecisions) || time.Now().After(deadline) {
				break
			}
		}
		s.warm, _ = rss(s.proc.pid())
		s.warmAt = time.Now()
		fmt.Fprintf(out, "%s: warmed up with %.0f cold decisions; %s resident\n", s.store, s.warmDecisions, mib(s.warm))
	}
	sampling, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	for _, s := range rep.Servers {
		go s.sampleRSS(sampling)
	}
	if peer != nil && peer.pid != 0 {
		rep.PeerRSS[0], _ = rss(peer.pid)
	}

	for round := 1; round <= cfg.Rounds; round++ {
		for _, conns := range cfg.Connections {
			c, err := measureCeiling(ctx, cfg.Ceiling, key)
			if err != nil {
				return nil, fmt.Errorf("signing reference: %w", err)
			}
			rep.Ceilings = append(rep.Ceilings, c)
			fmt.Fprintf(out, "round %d, %d connections: raw ES256 %.0f/s on these cores (%.1f µs CPU each), ES256 registry token %.0f/s\n",
				round, conns, c.raw, us(c.rawCPU), c.jwt)
			for _, t := range sequence {
				s, err := measure(ctx, cfg, script, t, conns)
				if err != nil {
					return nil, err
				}
				s.round = round
				rep.Samples = append(rep.Samples, s)
				fmt.Fprintf(out, "  %-18s %8.0f tokens/s  p50 %-8s p99 %-8s p99.9 %-8s  $ %s\n", t.label(), s.wrk.rate(),
					dur(s.wrk.p50), dur(s.wrk.p99), dur(s.wrk.p999), s.command)
			}
			for _, s := range rep.Servers {
				v, _ := rss(s.proc.pid())
				s.marks = append(s.marks, rssMark{label: fmt.Sprintf("round %d, %d conns", round, conns), rss: v, at: time.Now()})
			}
		}
	}
	stopSampling()
	if peer != nil && peer.pid != 0 {
		rep.PeerRSS[1], _ = rss(peer.pid)
	}
	rep.Elapsed = time.Since(rep.Started)
	rep.print(out)
	return rep, nil
}

// evaluatedSuffix names a server whose decisions are all evaluated (policy.native: false).
const evaluatedSuffix = "-evaluated"

// backend is the store behind a server's name.
func backend(store string) string { return strings.TrimSuffix(store, evaluatedSuffix) }

func validate(cfg Config) error {
	var errs []error
	for _, s := range cfg.Stores {
		if b := backend(s); b != "bolt" && b != "redis" {
			errs = append(errs, fmt.Errorf("store %q: bolt or redis, optionally with %s", s, evaluatedSuffix))
		}
	}
	for _, c := range cfg.Connections {
		if c < 1 {
			errs = append(errs, fmt.Errorf("connections %d: at least 1", c))
		}
	}
	if cfg.Accounts < 1 || cfg.MinGrants < 1 || cfg.MaxGrants < cfg.MinGrants || cfg.Rounds < 1 || cfg.Threads < 1 {
		errs = append(errs, errors.New("accounts, grants, rounds and threads must be positive (min-grants ≤ max-grants)"))
	}
	if cfg.MaxGrants > cfg.Namespaces*cfg.PerNamespace/2 {
		errs = append(errs, errors.New("more grants per account than the universe allows"))
	}
	if cfg.Peer.URL != "" {
		if u, err := url.Parse(cfg.Peer.URL); err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("peer URL %q is not an absolute URL", cfg.Peer.URL))
		}
	}
	return errors.Join(errs...)
}

// order is the sequence of one block: the first store's anonymous and cold runs, the peer,
// every other store's cold and anonymous runs, then the cached runs.
func order(stores []string, byStore map[string]map[string]*target, peer *target) []*target {
	var seq []*target
	for i, s := range stores {
		if i == 0 {
			seq = append(seq, byStore[s][kindAnonymous], byStore[s][kindCold])
			if peer != nil {
				seq = append(seq, peer)
			}
			continue
		}
		seq = append(seq, byStore[s][kindCold], byStore[s][kindAnonymous])
	}
	for _, s := range stores {
		seq = append(seq, byStore[s][kindCached])
	}
	return seq
}

// measure runs wrk once against t, reading the server's CPU time and counters around it.
func measure(ctx context.Context, cfg Config, script string, t *target, conns int) (sample, error) {
	s := sample{target: t, conns: conns, cpu: -1, helperCPU: -1}
	argv := wrkArgs(cfg, script, conns, cfg.Duration, t.url, t.headers, t.scriptArgs...)
	s.command = shellJoin(redactArgs(argv))
	var before counters
	var err error
	if t.metrics != "" {
		if before, err = scrape(t.metrics); err != nil {
			return s, err
		}
	}
	cpu0, cpuErr := cpuTime(t.pid)
	helper0, helperErr := cpuTime(t.helperPID)
	r, outText, err := runWrk(ctx, argv)
	if err != nil {
		return s, fmt.Errorf("%s: %w\n%s", t.label(), err, outText)
	}
	s.wrk = r
	if cpu1, err := cpuTime(t.pid); t.pid != 0 && cpuErr == nil && err == nil {
		s.cpu = cpu1 - cpu0
	}
	if h1, err := cpuTime(t.helperPID); t.helperPID != 0 && helperErr == nil && err == nil {
		s.helperCPU = h1 - helper0
	}
	if t.metrics != "" {
		after, err := scrape(t.metrics)
		if err != nil {
			return s, err
		}
		s.counters, s.hasCounters = after.minus(before), true
	}
	return s, nil
}

// redactArgs hides credentials in a printed command line: the keys are throwaway ones of a
// store that is deleted at the end, but a command line that prints keys teaches bad habits.
func redactArgs(argv []string) []string {
	out := append([]string(nil), argv...)
	for i, a := range out {
		if name, _, ok := strings.Cut(a, ":"); ok && i > 0 && out[i-1] == "-H" && strings.EqualFold(name, "Authorization") {
			out[i] = "Authorization: Basic <acct0:API key>"
		}
	}
	return out
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func maxInt(xs []int) int {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}
