package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run reports through token.lua's done().
type wrkResult struct {
	requests int64
	duration time.Duration
	// errStatus counts responses with a status above 399 (wrk's "Non-2xx or 3xx responses").
	errStatus, errConnect, errRead, errWrite, errTimeout int64
	p50, p75, p90, p99, p999, max                        time.Duration
	mean                                                 time.Duration
}

func (r wrkResult) rate() float64 {
	if r.duration <= 0 {
		return 0
	}
	return float64(r.requests) / r.duration.Seconds()
}

func (r wrkResult) socketErrors() int64 {
	return r.errConnect + r.errRead + r.errWrite + r.errTimeout
}

// wrkArgs is a wrk command line: threads, connections, duration, the Lua script, headers, the
// URL, and the script's arguments after "--". The timeout is long so that a slow response is
// counted in the latency tail instead of being dropped from it as wrk's 2s default would.
func wrkArgs(cfg Config, script string, conns int, d time.Duration, url string, headers []string, scriptArgs ...string) []string {
	secs := max(1, int(math.Round(d.Seconds())))
	args := []string{cfg.Wrk, "-t" + strconv.Itoa(min(cfg.Threads, conns)), "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(secs) + "s", "--timeout", "10s", "--latency", "-s", script}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	if len(scriptArgs) > 0 {
		args = append(append(args, "--"), scriptArgs...)
	}
	return args
}

func runWrk(ctx context.Context, argv []string) (wrkResult, string, error) {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return wrkResult{}, string(out), fmt.Errorf("wrk: %w: %s", err, out)
	}
	r, err := parseWrk(string(out))
	return r, string(out), err
}

// parseWrk reads the "tokenload key=value …" line token.lua prints.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "tokenload ")
		if !ok {
			continue
		}
		fields := map[string]float64{}
		for f := range strings.FieldsSeq(rest) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return r, fmt.Errorf("wrk output: field %q", f)
			}
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return r, fmt.Errorf("wrk output: field %q: %w", f, err)
			}
			fields[k] = n
		}
		var missing []string
		get := func(k string) float64 {
			v, ok := fields[k]
			if !ok {
				missing = append(missing, k)
			}
			return v
		}
		us := func(k string) time.Duration { return time.Duration(get(k) * float64(time.Microsecond)) }
		r = wrkResult{
			requests: int64(get("requests")), duration: us("duration_us"),
			errStatus: int64(get("errors_status")), errConnect: int64(get("errors_connect")),
			errRead: int64(get("errors_read")), errWrite: int64(get("errors_write")),
			errTimeout: int64(get("errors_timeout")),
			p50:        us("p50_us"), p75: us("p75_us"), p90: us("p90_us"), p99: us("p99_us"),
			p999: us("p999_us"), max: us("max_us"), mean: us("mean_us"),
		}
		if len(missing) > 0 {
			return r, fmt.Errorf("wrk output lacks %s", strings.Join(missing, ", "))
		}
		return r, nil
	}
	return r, errors.New("wrk output has no tokenload line (is the script token.lua?)")
}

// shellJoin quotes argv for a shell, to print the exact command line.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r))
		}) < 0 {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
