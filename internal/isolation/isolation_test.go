package isolation

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
)

// Knobs, all optional:
//
//	REGOAUTH_ISOLATION_SEED   the seed (printed by every run; a failure prints the command)
//	REGOAUTH_ISOLATION_STEPS        steps per configuration (default 800; 40 with -short)
//	REGOAUTH_ISOLATION_TIME         wall time for all configurations together (default 60s; 10s with -short)
//	REGOAUTH_ISOLATION_ONLY         only the configurations whose name holds this (e.g. redis/teams)
//	REGOAUTH_ISOLATION_SHRINK_TIME  how long a failure may be shrunk (default 90s)
const (
	defaultSteps      = 800
	defaultTime       = 60 * time.Second
	shortSteps        = 40
	shortTime         = 10 * time.Second
	sequenceLength    = 50
	defaultShrinkTime = 90 * time.Second
)

func envInt(t *testing.T, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

// TestIsolationModel drives a real server with random sequences of admin API calls and, after
// every step, compares each key's token answer on every repository of the universe with the
// reference model; and each call's acceptance with the model's. See docs/isolation.md, "The
// model test".
func TestIsolationModel(t *testing.T) {
	steps, budget := int64(defaultSteps), defaultTime
	if testing.Short() {
		steps, budget = shortSteps, shortTime
	}
	steps = envInt(t, "REGOAUTH_ISOLATION_STEPS", steps)
	budget = envDuration(t, "REGOAUTH_ISOLATION_TIME", budget)
	seed := uint64(envInt(t, "REGOAUTH_ISOLATION_SEED", time.Now().UnixNano()%1_000_000_000))
	t.Logf("seed %d (REGOAUTH_ISOLATION_SEED=%d reproduces it), up to %d steps per configuration, %s in all", seed, seed, steps, budget)

	var configs []config
	for _, backend := range []string{"bolt", "redis"} {
		for _, b := range []*bundleModel{library, marketplace, teams} {
			configs = append(configs, config{backend: backend, bundle: b, index: uint64(len(configs))})
		}
	}
	only := os.Getenv("REGOAUTH_ISOLATION_ONLY")
	configs = slices.DeleteFunc(configs, func(c config) bool { return !strings.Contains(c.String(), only) })
	deadline := time.Now().Add(budget)
	// One redis-server for every redis configuration (each server uses its own key prefix);
	// without the program, those configurations skip, or fail under REGOAUTH_E2E=1.
	var redisURL string
	if _, err := exec.LookPath("redis-server"); err == nil && slices.ContainsFunc(configs, func(c config) bool { return c.backend == "redis" }) {
		redisURL = redistest.Start(t).URL()
	}
	for i, cfg := range configs {
		t.Run(cfg.String(), func(t *testing.T) {
			if cfg.backend == "redis" {
				redistest.Program(t, "redis-server")
				cfg.redisURL = redisURL
			}
			// Each configuration gets an equal share of the time that is left.
			share := time.Until(deadline) / time.Duration(len(configs)-i)
			runConfig(t, cfg, seed, int(steps), time.Now().Add(share))
		})
	}
}

// runConfig runs sequences of cfg until steps or the deadline, each from a fresh server.
func runConfig(t *testing.T, cfg config, seed uint64, steps int, deadline time.Time) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(seed, cfg.index))
	began := time.Now()
	var total stats
	sequences := 0
	for total.steps < steps && time.Now().Before(deadline) {
		runSeed := r.Uint64()
		n := min(sequenceLength, steps-total.steps)
		ops, st, d := explore(t, cfg, dir, runSeed, n, deadline, "")
		sequences++
		total.add(st)
		if d != nil {
			t.Logf("%s: seed %d, sequence %d: %d steps, the first divergence at step %d: %s", cfg, seed, sequences, len(ops), d.step+1, d.msg)
			shrunk, sd := shrink(ops, func(seq []op) *divergence { return replay(t, cfg, dir, seq) }, time.Now().Add(envDuration(t, "REGOAUTH_ISOLATION_SHRINK_TIME", defaultShrinkTime)))
			t.Fatalf("%s: the server and the model of the documented rules differ (seed %d; reproduce with REGOAUTH_ISOLATION_SEED=%d REGOAUTH_ISOLATION_ONLY=%s go test ./internal/isolation -run TestIsolationModel).\n"+
				"Shortest sequence found (%d of %d steps):\n%s\nthen: %s", cfg, seed, seed, cfg, len(shrunk), len(ops), numbered(shrunk), sd.msg)
		}
	}
	t.Logf("%s: %d steps in %d sequences, %d calls compared (%d accepted: %v), %d token answers compared (key x repository x action; %d granted), %s",
		cfg, total.steps, sequences, total.calls, total.accepted, total.byKind, total.checks, total.granted, time.Since(began).Round(time.Millisecond))
}

// stats count what a configuration compared: steps, admin calls (and how many were accepted),
// token answers (and how many of them granted the action).
type stats struct {
	steps, calls, accepted, checks, granted int
	// byKind counts the accepted calls of each kind of step.
	byKind map[string]int
}

func (s *stats) add(o stats) {
	s.steps, s.calls, s.accepted = s.steps+o.steps, s.calls+o.calls, s.accepted+o.accepted
	s.checks, s.granted = s.checks+o.checks, s.granted+o.granted
	for k, n := range o.byKind {
		s.accept(k, n)
	}
}

func (s *stats) accept(kind string, n int) {
	if s.byKind == nil {
		s.byKind = map[string]int{}
	}
	s.byKind[kind] += n
}

// divergence is the first step at which the server and the model disagree.
type divergence struct {
	step int
	msg  string
	// bundle is the model's, for shrinking.
	bundle *bundleModel
}

// ranSteps are the steps of ops the model performs, without those it skips.
func ranSteps(ops []op, b *bundleModel) []op {
	if b == nil {
		return ops
	}
	m := newRootedModel(b)
	var out []op
	for _, o := range ops {
		if m.runs(o) {
			m.apply(o)
			out = append(out, o)
		}
	}
	return out
}

// explore generates a sequence of n steps against a fresh server and the model together,
// stopping at the first divergence.
func explore(t *testing.T, cfg config, dir string, seed uint64, n int, deadline time.Time, broken string) ([]op, stats, *divergence) {
	tg := startTarget(t, cfg, dir)
	defer tg.close()
	m := newRootedModel(cfg.bundle)
	m.broken = broken
	g := &generator{r: rand.New(rand.NewPCG(seed, 0))}
	var ops []op
	var st stats
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		o := g.op(m)
		ops = append(ops, o)
		st.steps++
		if d := step(tg, m, o, i, &st); d != nil {
			return ops, st, d
		}
	}
	return ops, st, nil
}

func newRootedModel(b *bundleModel) *model {
	m := newModel(b, start)
	m.accounts["root"] = &mAccount{name: "root", roles: []string{"admin"}}
	m.keys["root"] = &mKey{label: "root", account: "root"}
	return m
}

// replay runs ops against a fresh server and the model, and returns the first divergence.
func replay(t testing.TB, cfg config, dir string, ops []op) *divergence {
	return replayWith(t, cfg, dir, ops, "")
}

func replayWith(t testing.TB, cfg config, dir string, ops []op, broken string) *divergence {
	tg := startTarget(t, cfg, dir)
	defer tg.close()
	m := newRootedModel(cfg.bundle)
	m.broken = broken
	var st stats
	for i, o := range ops {
		if d := step(tg, m, o, i, &st); d != nil {
			d.bundle = cfg.bundle
			return d
		}
	}
	return nil
}

// step performs o on the model and the server, then compares every key's token answer.
func step(tg *target, m *model, o op, i int, st *stats) *divergence {
	if !m.runs(o) {
		return nil
	}
	want := m.apply(o)
	got, err := tg.do(o)
	st.calls++
	if err != nil {
		return &divergence{step: i, msg: fmt.Sprintf("step %d (%s): %v", i+1, o, err)}
	}
	if got != want {
		return &divergence{step: i, msg: fmt.Sprintf("step %d (%s): the server %s it, the model %s it", i+1, o, verdict(got), verdict(want))}
	}
	if got {
		st.accepted++
		st.accept(o.Kind, 1)
	}
	if d := compareTokens(tg, m, i, st); d != nil {
		return d
	}
	return nil
}

func verdict(accepted bool) string {
	if accepted {
		return "accepted"
	}
	return "refused"
}

// compareTokens asks a token of every key the sequence created (and of nobody) for every
// action on every repository of the universe, and compares each answer with the model's.
func compareTokens(tg *target, m *model, i int, st *stats) *divergence {
	for _, label := range append([]string{""}, sortedKeys(m.keys)...) {
		var p *mPrincipal
		account, live := "", true
		if label != "" {
			account = m.keys[label].account
			p, live = m.authenticate(label)
		}
		ok, got, err := tg.access(label, account)
		st.checks += len(universe) * len(actions)
		who := "anonymous"
		if label != "" {
			who = fmt.Sprintf("%s (key %s)", account, label)
		}
		if err != nil {
			return &divergence{step: i, msg: fmt.Sprintf("after step %d, %s: %v", i+1, who, err)}
		}
		if ok != live {
			return &divergence{step: i, msg: fmt.Sprintf("after step %d, %s: the server %s the key, the model %s it", i+1, who, verdict(ok), verdict(live))}
		}
		if !ok {
			continue
		}
		for _, repo := range universe {
			want := m.tokenActions(p, repo)
			st.granted += len(want)
			if !slices.Equal(got[repo], want) {
				return &divergence{step: i, msg: fmt.Sprintf("after step %d, %s on %s: the server grants %v, the model %v", i+1, who, repo, got[repo], want)}
			}
		}
	}
	return nil
}

// numbered prints a sequence, one numbered step a line.
func numbered(ops []op) string {
	var b strings.Builder
	for i, o := range ops {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, o)
	}
	return b.String()
}

// shrink returns a shorter sequence that still fails, and its divergence: delta debugging
// (drop chunks of halving size while the rest still fails), then single steps, until no one
// step can go or the deadline passes. A step that failed in the original is the last one kept.
func shrink(ops []op, fails func([]op) *divergence, deadline time.Time) ([]op, *divergence) {
	d := fails(ops)
	if d == nil {
		return ops, &divergence{msg: "the sequence did not fail again when replayed (flaky?)"}
	}
	ops = ops[:d.step+1]
	try := func(seq []op) bool {
		if time.Now().After(deadline) {
			return false
		}
		if nd := fails(seq); nd != nil {
			ops, d = seq[:nd.step+1], nd
			return true
		}
		return false
	}
	// Steps the model skipped (their actor or key was never created) change nothing: drop
	// them all at once first.
	if ran := ranSteps(ops, d.bundle); len(ran) < len(ops) {
		try(ran)
	}
	for chunks := 2; len(ops) > 1 && time.Now().Before(deadline); {
		size := (len(ops) + chunks - 1) / chunks
		removed := false
		for start := 0; start < len(ops); start += size {
			seq := append(slices.Clone(ops[:start]), ops[min(start+size, len(ops)):]...)
			if len(seq) > 0 && try(seq) {
				removed = true
				break
			}
		}
		switch {
		case removed:
			chunks = max(chunks-1, 2)
		case size == 1:
			return ops, d
		default:
			chunks = min(chunks*2, len(ops))
		}
	}
	return ops, d
}
