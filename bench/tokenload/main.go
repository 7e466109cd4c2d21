// Command tokenload is the load benchmark of the token endpoint. It starts `regoauth serve` on
// a bolt file, on a redis-server of its own, and on a second bolt file with every decision
// evaluated by OPA (policy.native: false) (loopback ports), fills each store with the same
// accounts (each with its own API key and 10–100 grants) through `regoauth import`, and drives
// GET /token with wrk and token.lua: cold requests (a random account, 1–3 scopes over 100,000+
// repositories, so no decision cache can answer), and in the same run three references — the
// raw ES256 signing rate of these cores (the ceiling), anonymous requests for a public
// repository (the server's HTTP + signing wall) and one request repeated (the caches answer) —
// plus, optionally, any other token server's URL (a peer). Machines drift, so every figure is
// also printed as a ratio to a reference measured in the same run, with the runs interleaved.
// Everything it starts, it stops.
//
//	go run ./bench/tokenload -regoauth ./regoauth [-duration 15s] [-connections 8,64] [-peer-url URL]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config is one benchmark run.
type Config struct {
	// Regoauth, RedisServer and Wrk are the programs run.
	Regoauth, RedisServer, Wrk string
	// Stores are the servers measured, by store: "bolt", "redis"; "-evaluated" after either
	// (bolt-evaluated) is a server with `policy.native: false`, whose every decision OPA
	// evaluates, as a policy with an extension is.
	Stores []string
	// Connections are wrk's connection counts, each measured in turn.
	Connections []int
	// Threads is wrk's thread count.
	Threads int
	// Duration is one wrk run; Warmup is one unrecorded run of the cold mix. Each server gets
	// warm-up runs until it has made WarmDecisions decisions (its decision cache is full).
	Duration, Warmup time.Duration
	WarmDecisions    int
	// Ceiling is how long each signing reference runs.
	Ceiling time.Duration
	// Rounds repeats the whole sequence; figures are medians over rounds.
	Rounds int
	// Accounts each get one key and MinGrants–MaxGrants grants over Namespaces ×
	// PerNamespace repositories.
	Accounts             int
	MinGrants, MaxGrants int
	Namespaces           int
	PerNamespace         int
	// Peer is another token server measured with the same wrk settings.
	Peer Peer
	// ServerEnv is added to the environment of the regoauth processes (e.g. GOGC=400).
	ServerEnv []string
	// Work is where files and logs go (a new temporary directory when empty); it is removed
	// at the end unless Keep.
	Work string
	Keep bool
	Out  io.Writer
}

// Peer is a token server the benchmark does not start: its URL (with the query of a token
// request) is sent as it is, repeated. With a PID its CPU time and memory are read too.
type Peer struct {
	Name string
	URL  string
	PID  int
}

func defaults() Config {
	return Config{
		Regoauth: "./regoauth", RedisServer: "redis-server", Wrk: "wrk",
		Stores: []string{"bolt", "redis", "bolt" + evaluatedSuffix}, Connections: []int{8, 64}, Threads: 2,
		Duration: 15 * time.Second, Warmup: 5 * time.Second, WarmDecisions: 10000, Ceiling: 3 * time.Second, Rounds: 1,
		Accounts: 1000, MinGrants: 10, MaxGrants: 100, Namespaces: 1000, PerNamespace: 100,
		Out: os.Stdout,
	}
}

// smoke is a run short enough for CI: it proves the harness works, not how fast anything is.
func smoke(cfg Config) Config {
	cfg.Duration, cfg.Warmup, cfg.Ceiling, cfg.Rounds = 2*time.Second, time.Second, 500*time.Millisecond, 1
	cfg.WarmDecisions = 0
	cfg.Connections = []int{8}
	cfg.Accounts = 50
	return cfg
}

func main() {
	cfg := defaults()
	var stores, conns string
	var isSmoke bool
	flag.StringVar(&cfg.Regoauth, "regoauth", cfg.Regoauth, "the regoauth binary")
	flag.StringVar(&cfg.RedisServer, "redis-server", cfg.RedisServer, "the redis-server program")
	flag.StringVar(&cfg.Wrk, "wrk", cfg.Wrk, "the wrk program")
	flag.StringVar(&stores, "stores", strings.Join(cfg.Stores, ","), "servers to measure, by store: bolt, redis, and either with -evaluated (policy.native: false)")
	flag.StringVar(&conns, "connections", "8,64", "wrk connection counts")
	flag.IntVar(&cfg.Threads, "threads", cfg.Threads, "wrk threads")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "one wrk run")
	flag.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "one unrecorded run of the cold mix before the first round")
	flag.IntVar(&cfg.WarmDecisions, "warm-decisions", cfg.WarmDecisions, "warm each server up until it has made this many decisions (every account is in its principal cache by then)")
	flag.DurationVar(&cfg.Ceiling, "ceiling", cfg.Ceiling, "each signing reference")
	flag.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "times the whole sequence is measured (medians are reported)")
	flag.IntVar(&cfg.Accounts, "accounts", cfg.Accounts, "accounts, each with one API key")
	flag.IntVar(&cfg.MinGrants, "min-grants", cfg.MinGrants, "fewest grants of an account")
	flag.IntVar(&cfg.MaxGrants, "max-grants", cfg.MaxGrants, "most grants of an account")
	flag.StringVar(&cfg.Peer.URL, "peer-url", os.Getenv("PEER_URL"), "another token server's URL with the query of a token request (default $PEER_URL)")
	flag.StringVar(&cfg.Peer.Name, "peer-name", envOr("PEER_NAME", "peer"), "the peer's name in the report (default $PEER_NAME)")
	peerPID := flag.String("peer-pid", os.Getenv("PEER_PID"), "the peer's process id, for its CPU time and memory (default $PEER_PID)")
	env := flag.String("server-env", "", "comma-separated NAME=VALUE added to the environment of regoauth serve, e.g. GOGC=400,GOMEMLIMIT=200MiB")
	flag.StringVar(&cfg.Work, "work", "", "directory for files and logs (default: a new temporary one)")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the work directory (logs, data, configuration)")
	flag.BoolVar(&isSmoke, "smoke", false, "a run of a few seconds that checks the harness, not the speed")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up after this long")
	flag.Parse()
	var err error
	if cfg.Stores, err = list(stores, func(s string) (string, error) { return s, nil }); err == nil {
		cfg.Connections, err = list(conns, strconv.Atoi)
	}
	if err == nil && *env != "" {
		cfg.ServerEnv, err = list(*env, func(s string) (string, error) {
			if !strings.Contains(s, "=") {
				return "", errors.New("not NAME=VALUE")
			}
			return s, nil
		})
	}
	if err == nil && *peerPID != "" {
		cfg.Peer.PID, err = strconv.Atoi(*peerPID)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokenload:", err)
		os.Exit(2)
	}
	if isSmoke {
		cfg = smoke(cfg)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, *timeout)
	defer cancelTimeout()
	fmt.Fprintf(cfg.Out, "$ %s\n", shellJoin(os.Args))
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokenload:", err)
		os.Exit(1)
	}
	if bad := rep.Failures(); len(bad) > 0 {
		fmt.Fprintln(os.Stderr, "tokenload: the run is not valid:", strings.Join(bad, "; "))
		os.Exit(3)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func list[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", f, err)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("an empty list")
	}
	return out, nil
}
