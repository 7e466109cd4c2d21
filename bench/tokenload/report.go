package main

import (
	_ "embed"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

//go:embed token.lua
var luaScript []byte

// row is a target at one connection count, over every round.
type row struct {
	target  *target
	conns   int
	samples []sample
}

func (r row) median(f func(sample) float64) float64 {
	vs := make([]float64, len(r.samples))
	for i, s := range r.samples {
		vs[i] = f(s)
	}
	return median(vs)
}

func (r row) rate() float64 { return r.median(func(s sample) float64 { return s.wrk.rate() }) }

func (r row) latency(f func(wrkResult) time.Duration) time.Duration {
	return time.Duration(r.median(func(s sample) float64 { return float64(f(s.wrk)) }))
}

func (r row) requests() int64 {
	var n int64
	for _, s := range r.samples {
		n += s.wrk.requests
	}
	return n
}

// perToken divides a total over every round by the requests of those rounds; NaN when a
// sample lacks the figure.
func (r row) perToken(f func(sample) (float64, bool)) float64 {
	var total float64
	for _, s := range r.samples {
		v, ok := f(s)
		if !ok {
			return math.NaN()
		}
		total += v
	}
	return total / float64(r.requests())
}

// cpuPerToken is the server's CPU time per token in nanoseconds, NaN when unknown.
func (r row) cpuPerToken() float64 {
	return r.perToken(func(s sample) (float64, bool) { return float64(s.cpu), s.cpu >= 0 })
}

func (r row) helperCPUPerToken() float64 {
	return r.perToken(func(s sample) (float64, bool) { return float64(s.helperCPU), s.helperCPU >= 0 })
}

func (r row) allocsPerToken() float64 {
	return r.perToken(func(s sample) (float64, bool) { return s.counters.mallocs, s.hasCounters })
}

func (r row) gcsPer1k() float64 {
	return 1000 * r.perToken(func(s sample) (float64, bool) { return s.counters.gcs, s.hasCounters })
}

func (r row) sum(f func(sample) int64) int64 {
	var n int64
	for _, s := range r.samples {
		n += f(s)
	}
	return n
}

func (rep *Report) rows() []row {
	var rows []row
	index := map[string]int{}
	for _, s := range rep.Samples {
		k := fmt.Sprintf("%d %p", s.conns, s.target)
		i, ok := index[k]
		if !ok {
			i = len(rows)
			index[k] = i
			rows = append(rows, row{target: s.target, conns: s.conns})
		}
		rows[i].samples = append(rows[i].samples, s)
	}
	return rows
}

func (rep *Report) find(conns int, store, kind string) (row, bool) {
	for _, r := range rep.rows() {
		if r.conns == conns && r.target.store == store && r.target.kind == kind {
			return r, true
		}
	}
	return row{}, false
}

func (rep *Report) peerRow(conns int) (row, bool) {
	for _, r := range rep.rows() {
		if r.conns == conns && r.target.kind == kindPeer {
			return r, true
		}
	}
	return row{}, false
}

// ratio is the median over rounds of a ÷ b, each round's pair measured in the same block.
func ratio(a, b row, f func(sample) float64) float64 {
	var vs []float64
	for _, sa := range a.samples {
		for _, sb := range b.samples {
			if sa.round == sb.round {
				vs = append(vs, f(sa)/f(sb))
			}
		}
	}
	return median(vs)
}

func rateOf(s sample) float64 { return s.wrk.rate() }

func (rep *Report) ceilingMedian() ceiling {
	raw, jwt, cpu := make([]float64, 0), make([]float64, 0), make([]float64, 0)
	for _, c := range rep.Ceilings {
		raw, jwt, cpu = append(raw, c.raw), append(jwt, c.jwt), append(cpu, float64(c.rawCPU))
	}
	return ceiling{raw: median(raw), jwt: median(jwt), rawCPU: time.Duration(median(cpu))}
}

func (rep *Report) print(w io.Writer) {
	cfg := rep.Config
	c := rep.ceilingMedian()
	fmt.Fprintf(w, "\n== token load: %d accounts, %d grants, %d stores; wrk -t%d, %s per run, %d round(s); %s in all\n",
		rep.Accounts, rep.Grants, len(cfg.Stores), cfg.Threads, cfg.Duration, cfg.Rounds, rep.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "ceiling (in-process, every core, median of %d): raw ES256 %.0f signatures/s, %.1f µs CPU each; whole ES256 registry token %.0f/s (%.2f raw)\n",
		len(rep.Ceilings), c.raw, us(c.rawCPU), c.jwt, c.raw/c.jwt)
	fmt.Fprintln(w, "cold = an API key, 1–3 random scopes over 100,000+ repositories, policy decided every time; anonymous = 3 scopes of public/*; cached = one request repeated")
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conns\ttarget\trequests\ttokens/s\t÷ceiling\tp50\tp99\tp99.9\tp99/p50\tCPU/token\t×ES256\tallocs/token\tGC/1k\tnon-2xx\terrors\t")
	for _, r := range rep.rows() {
		cpu := r.cpuPerToken()
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.0f\t%.3f\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%d\t%d\t\n",
			r.conns, r.target.label(), r.requests(), r.rate(), r.rate()/c.raw,
			dur(r.latency(func(x wrkResult) time.Duration { return x.p50 })),
			dur(r.latency(func(x wrkResult) time.Duration { return x.p99 })),
			dur(r.latency(func(x wrkResult) time.Duration { return x.p999 })),
			float64(r.latency(func(x wrkResult) time.Duration { return x.p99 }))/float64(r.latency(func(x wrkResult) time.Duration { return x.p50 })),
			optDur(cpu), optFloat(cpu/float64(c.rawCPU), 1), optFloat(r.allocsPerToken(), 0), optFloat(r.gcsPer1k(), 1),
			r.sum(func(s sample) int64 { return s.wrk.errStatus }), r.sum(func(s sample) int64 { return s.wrk.socketErrors() }))
	}
	tw.Flush()
	fmt.Fprintln(w, "(tokens/s ÷ceiling: ÷ the raw ES256 rate of these cores; CPU/token: the server process's user+system time per token, ×ES256 in raw signatures;")
	fmt.Fprintln(w, " allocs/token: go_memstats_mallocs_total of the server per token; non-2xx: responses with status ≥ 400; errors: socket errors and timeouts;")
	fmt.Fprintln(w, " on a machine shared with other work the CPU ratios below are the steadier measure of the rate ratios' targets)")

	for _, conns := range cfg.Connections {
		fmt.Fprintf(w, "\nratios at %d connections (median over rounds of runs in the same block)\n", conns)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "\t%s\ttarget\t\n", strings.Join(cfg.Stores, "\t"))
		line := func(name, target string, f func(store string) (float64, bool)) {
			cells := []string{name}
			any := false
			for _, s := range cfg.Stores {
				v, ok := f(s)
				cells = append(cells, optFloat(map[bool]float64{true: v, false: math.NaN()}[ok], 2))
				any = any || ok
			}
			if any {
				fmt.Fprintf(tw, "%s\t%s\t\n", strings.Join(cells, "\t"), target)
			}
		}
		rowRatio := func(kindA, kindB string) func(string) (float64, bool) {
			return func(store string) (float64, bool) {
				a, okA := rep.find(conns, store, kindA)
				b, okB := rep.find(conns, store, kindB)
				if kindB == kindPeer {
					b, okB = rep.peerRow(conns)
				}
				if !okA || !okB {
					return 0, false
				}
				return ratio(a, b, rateOf), true
			}
		}
		vsCeiling := func(kind string) func(string) (float64, bool) {
			return func(store string) (float64, bool) {
				a, ok := rep.find(conns, store, kind)
				return a.rate() / c.raw, ok
			}
		}
		tail := func(store string) (float64, bool) {
			a, ok := rep.find(conns, store, kindCold)
			return float64(a.latency(func(x wrkResult) time.Duration { return x.p99 })) / float64(a.latency(func(x wrkResult) time.Duration { return x.p50 })), ok
		}
		peerName := cfg.Peer.Name
		line("cold ÷ raw ES256 ceiling", "", vsCeiling(kindCold))
		line("cold ÷ anonymous (HTTP + signing wall)", "≥ 0.85", rowRatio(kindCold, kindAnonymous))
		line("cold ÷ cached", "", rowRatio(kindCold, kindCached))
		line("cold ÷ "+peerName, "≥ 1.0", rowRatio(kindCold, kindPeer))
		line("anonymous ÷ "+peerName, "", rowRatio(kindAnonymous, kindPeer))
		line("cached ÷ "+peerName, "", rowRatio(kindCached, kindPeer))
		cpuRatio := func(kindA, kindB string) func(string) (float64, bool) {
			return func(store string) (float64, bool) {
				a, okA := rep.find(conns, store, kindA)
				b, okB := rep.find(conns, store, kindB)
				if kindB == kindPeer {
					b, okB = rep.peerRow(conns)
				}
				if !okA || !okB {
					return 0, false
				}
				v := b.cpuPerToken() / a.cpuPerToken()
				return v, !math.IsNaN(v)
			}
		}
		line("CPU per token: anonymous ÷ cold", "≥ 0.85", cpuRatio(kindCold, kindAnonymous))
		line("CPU per token: "+peerName+" ÷ cold", "≥ 1.0", cpuRatio(kindCold, kindPeer))
		line("cold p99 ÷ p50", "≤ 3", tail)
		if pr, ok := rep.peerRow(conns); ok {
			p99 := float64(pr.latency(func(x wrkResult) time.Duration { return x.p99 }))
			p50 := float64(pr.latency(func(x wrkResult) time.Duration { return x.p50 }))
			fmt.Fprintf(tw, "%s p99 ÷ p50 (the machine's own tail)\t%s\t\n", peerName, optFloat(p99/p50, 2))
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\ncold runs, whole run")
	for _, s := range rep.Servers {
		var hits, misses, native, granted, denied, helper float64
		var n int64
		helperKnown := true
		for _, r := range rep.rows() {
			if r.target.store != s.store || r.target.kind != kindCold {
				continue
			}
			for _, x := range r.samples {
				hits += x.counters.cacheHits
				misses += x.counters.cacheMisses
				native += x.counters.native
				granted += x.counters.granted
				denied += x.counters.denied
				n += x.wrk.requests
				if x.helperCPU < 0 {
					helperKnown = false
				}
				helper += float64(x.helperCPU)
			}
		}
		extra := ""
		if s.helper != nil && helperKnown && n > 0 {
			extra = fmt.Sprintf("; redis-server CPU %s per token", dur(time.Duration(helper/float64(n))))
		}
		fmt.Fprintf(w, "  %s: %.2f%% of decisions native, %.2f%% evaluated, %.2f%% from the decision cache; %.0f%% of requested actions granted%s\n",
			s.store, 100*native/math.Max(1, hits+misses+native), 100*misses/math.Max(1, hits+misses+native), 100*hits/math.Max(1, hits+misses+native),
			100*granted/math.Max(1, granted+denied), extra)
	}
	fmt.Fprintln(w, "\nmemory (RSS of the server process; the warm-up fills its caches, then it must stay flat)")
	for _, s := range rep.Servers {
		parts := []string{fmt.Sprintf("%s at start", mib(s.idle)), fmt.Sprintf("%s after the warm-up", mib(s.warm))}
		for _, m := range s.marks {
			parts = append(parts, fmt.Sprintf("%s after %s (+%s)", mib(m.rss), m.label, m.at.Sub(s.warmAt).Round(time.Second)))
		}
		fmt.Fprintf(w, "  %s: %s; peak %s\n", s.store, strings.Join(parts, ", "), mib(s.peak.Load()))
		if n := len(s.marks); n >= 1 {
			last := s.marks[n-1]
			fmt.Fprintf(w, "  %s: end ÷ after the warm-up (of %.0f cold decisions) %.2f over %s of load",
				s.store, s.warmDecisions, float64(last.rss)/float64(s.warm), last.at.Sub(s.warmAt).Round(time.Second))
			if n >= 2 {
				// The heap target settles during the first block; a leak keeps growing after it.
				first := s.marks[0]
				fmt.Fprintf(w, "; end ÷ end of the first block %.2f over %s (flat: ≤ 1.10)",
					float64(last.rss)/float64(first.rss), last.at.Sub(first.at).Round(time.Second))
			}
			fmt.Fprintln(w)
		}
	}
	if rep.PeerRSS[0] > 0 {
		fmt.Fprintf(w, "  %s: %s before its first run, %s after its last\n", cfg.Peer.Name, mib(rep.PeerRSS[0]), mib(rep.PeerRSS[1]))
	}
	if bad := rep.Failures(); len(bad) > 0 {
		fmt.Fprintf(w, "\nINVALID RUN: %s\n", strings.Join(bad, "; "))
	} else {
		fmt.Fprintln(w, "\nevery response 2xx, no socket error; every request of a regoauth run issued a token")
	}
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// dur prints a latency with three significant digits.
func dur(d time.Duration) string {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func optDur(ns float64) string {
	if math.IsNaN(ns) || ns < 0 {
		return "-"
	}
	return dur(time.Duration(ns))
}

func optFloat(v float64, decimals int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", decimals, v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
