// Command redisscale measures what the token server costs per request, and how much memory it
// holds, with 1,000 keys and with 1,000,000 keys (and as many grants) in Redis. It starts two
// redis-servers and two `regoauth serve` processes on loopback ports, loads each store through
// the keystore API, then alternates rounds of token requests between the two servers so that
// both figures see the same machine load, and reports the large figure as a ratio of the small
// one measured in the same run. Everything it starts, it stops.
//
//	go run ./bench/redisscale -regoauth ./regoauth [-keys 1000000] [-baseline 1000]
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore"
)

// Config is one benchmark run.
type Config struct {
	Regoauth, RedisServer string
	Baseline, Keys        int // keys (and grants) in the small and the large store
	KeysPerAccount        int
	Rounds, PerRound      int // alternating rounds of sequential token requests per server
	Workers               int
	Out                   io.Writer
}

// Figures are what one server measured.
type Figures struct {
	Keys, Grants   int
	RedisMemory    string
	P50, P90, Mean time.Duration
	RSSKiB         int64
}

// Report is the result of a run.
type Report struct {
	Small, Large                     Figures
	LatencyRatio, P90Ratio, RSSRatio float64
}

func main() {
	cfg := Config{Out: os.Stdout}
	flag.StringVar(&cfg.Regoauth, "regoauth", "./regoauth", "the regoauth binary")
	flag.StringVar(&cfg.RedisServer, "redis-server", "redis-server", "the redis-server program")
	flag.IntVar(&cfg.Baseline, "baseline", 1000, "keys and grants in the small store")
	flag.IntVar(&cfg.Keys, "keys", 1000000, "keys and grants in the large store")
	flag.IntVar(&cfg.KeysPerAccount, "keys-per-account", 10, "keys (and grants) per account")
	flag.IntVar(&cfg.Rounds, "rounds", 10, "alternating measurement rounds")
	flag.IntVar(&cfg.PerRound, "requests", 500, "sequential token requests per server per round")
	flag.IntVar(&cfg.Workers, "workers", 4, "concurrent writers while loading")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "redisscale:", err)
		os.Exit(1)
	}
	if !r.Pass() {
		os.Exit(3)
	}
}

// Pass is the claim: latency within 20% of the baseline and memory that does not grow with
// the data (also within 20%).
func (r Report) Pass() bool { return r.LatencyRatio <= 1.2 && r.RSSRatio <= 1.2 }

// Run performs the benchmark and prints the report to cfg.Out.
func Run(ctx context.Context, cfg Config) (Report, error) {
	var rep Report
	dir, err := os.MkdirTemp("", "redisscale")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	keyFile, certFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	if _, err := secretfile.EnsureSigningKey(keyFile, certFile, jose.ES256, "regoauth", time.Now()); err != nil {
		return rep, err
	}
	redisstore.RouteClientLogs(discard())

	type side struct {
		name   string
		keys   int
		redis  *exec.Cmd
		url    string
		server *exec.Cmd
		addr   string
		creds  []credential
		lat    []time.Duration
	}
	sides := []*side{{name: "small", keys: cfg.Baseline}, {name: "large", keys: cfg.Keys}}
	defer func() {
		for _, s := range sides {
			for _, c := range []*exec.Cmd{s.server, s.redis} {
				if c != nil && c.Process != nil {
					c.Process.Signal(os.Interrupt)
					c.Wait()
				}
			}
		}
	}()
	for _, s := range sides {
		port, err := freePort()
		if err != nil {
			return rep, err
		}
		rdir := filepath.Join(dir, s.name)
		os.MkdirAll(rdir, 0o700)
		s.redis = exec.CommandContext(ctx, cfg.RedisServer, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", rdir,
			"--save", "", "--appendonly", "no", "--protected-mode", "no", "--logfile", "")
		if err := s.redis.Start(); err != nil {
			return rep, fmt.Errorf("starting redis-server: %w", err)
		}
		s.url = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
		if err := waitRedis(ctx, s.url); err != nil {
			return rep, err
		}
		start := time.Now()
		fmt.Fprintf(cfg.Out, "loading %d keys and %d grants into the %s store…\n", s.keys, s.keys, s.name)
		if s.creds, err = load(ctx, s.url, s.keys, cfg.KeysPerAccount, cfg.Workers); err != nil {
			return rep, fmt.Errorf("loading the %s store: %w", s.name, err)
		}
		fmt.Fprintf(cfg.Out, "  loaded in %s\n", time.Since(start).Round(time.Second))
		if s.server, s.addr, err = startServer(ctx, cfg.Regoauth, filepath.Join(dir, s.name+".yaml"), s.url, keyFile, certFile); err != nil {
			return rep, err
		}
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
	// Warm up both servers (connections, policy caches, the Go runtime) before measuring.
	for _, s := range sides {
		if _, err := measure(ctx, client, s.addr, s.creds, 300); err != nil {
			return rep, err
		}
	}
	for round := range cfg.Rounds {
		for _, s := range sides {
			lat, err := measure(ctx, client, s.addr, s.creds, cfg.PerRound)
			if err != nil {
				return rep, fmt.Errorf("round %d, %s store: %w", round, s.name, err)
			}
			s.lat = append(s.lat, lat...)
		}
	}
	figs := make([]Figures, 2)
	for i, s := range sides {
		f := &figs[i]
		f.Keys, f.Grants = s.keys, s.keys
		slices.Sort(s.lat)
		f.P50, f.P90 = s.lat[len(s.lat)/2], s.lat[len(s.lat)*9/10]
		var sum time.Duration
		for _, d := range s.lat {
			sum += d
		}
		f.Mean = sum / time.Duration(len(s.lat))
		if f.RSSKiB, err = rss(s.server.Process.Pid); err != nil {
			return rep, err
		}
		f.RedisMemory = redisMemory(ctx, s.url)
	}
	rep.Small, rep.Large = figs[0], figs[1]
	rep.LatencyRatio = float64(rep.Large.P50) / float64(rep.Small.P50)
	rep.P90Ratio = float64(rep.Large.P90) / float64(rep.Small.P90)
	rep.RSSRatio = float64(rep.Large.RSSKiB) / float64(rep.Small.RSSKiB)
	rep.print(cfg.Out, cfg.Rounds*cfg.PerRound)
	return rep, nil
}

func (r Report) print(w io.Writer, n int) {
	fmt.Fprintf(w, "\n%d sequential token requests per store over loopback, rounds alternating between the stores\n", n)
	fmt.Fprintf(w, "%-8s %10s %10s %14s %10s %10s %10s %14s\n", "store", "keys", "grants", "redis memory", "p50", "p90", "mean", "regoauth RSS")
	for _, x := range []struct {
		name string
		f    Figures
	}{{"baseline", r.Small}, {"large", r.Large}} {
		fmt.Fprintf(w, "%-8s %10d %10d %14s %10s %10s %10s %11d KiB\n", x.name, x.f.Keys, x.f.Grants, x.f.RedisMemory,
			x.f.P50.Round(time.Microsecond), x.f.P90.Round(time.Microsecond), x.f.Mean.Round(time.Microsecond), x.f.RSSKiB)
	}
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	fmt.Fprintf(w, "\nlatency ratio (p50 large / p50 baseline): %.2f  (p90: %.2f)  %s (limit 1.20)\n", r.LatencyRatio, r.P90Ratio, verdict(r.LatencyRatio <= 1.2))
	fmt.Fprintf(w, "memory ratio  (RSS large / RSS baseline): %.2f  %s (limit 1.20)\n", r.RSSRatio, verdict(r.RSSRatio <= 1.2))
}

// credential is one key the benchmark can log in with, and a repository it was granted.
type credential struct{ account, key, repo string }

// load creates keys/perAccount accounts with perAccount keys and perAccount grants each, through
// the Redis store's batched writes (each record one atomic script, as in an import), and returns
// a sample of credentials spread over the whole store.
func load(ctx context.Context, storeURL string, keys, perAccount, workers int) ([]credential, error) {
	s, err := redisstore.Open(storeURL, redisstore.Options{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	accounts := max(keys/perAccount, 1)
	sampleEvery := max(accounts/2000, 1)
	var mu sync.Mutex
	var sample []credential
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	now := time.Now().UTC().Truncate(time.Second)
	const accountsPerBatch = 25
	for first := 0; first < accounts; first += accountsPerBatch {
		g.Go(func() error {
			var recs []keystore.Record
			for i := first; i < min(first+accountsPerBatch, accounts); i++ {
				name := fmt.Sprintf("acct%d", i)
				recs = append(recs, keystore.Record{Account: &keystore.Account{Name: name, Groups: []string{"g" + strconv.Itoa(i%100)}, Created: now}})
				for j := range perAccount {
					plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
					if err != nil {
						return err
					}
					repo := fmt.Sprintf("%s/r%d", name, j)
					recs = append(recs,
						keystore.Record{Key: &keystore.Key{ID: id, Account: name, Name: "bench", Hash: hash, Created: now}},
						keystore.Record{Grant: &keystore.Grant{Subject: keystore.Subject{Kind: keystore.SubjectAccount, Name: name}, Repository: repo, Actions: []string{"pull"}}})
					if j == 0 && i%sampleEvery == 0 {
						mu.Lock()
						sample = append(sample, credential{account: name, key: plain, repo: repo})
						mu.Unlock()
					}
				}
			}
			return s.WriteBatch(gctx, recs)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// Sampled in completion order; spread them so consecutive requests hit distant records.
	mrand.Shuffle(len(sample), func(i, j int) { sample[i], sample[j] = sample[j], sample[i] })
	return sample, nil
}

// measure sends n sequential token requests, each with another sampled key (so a cache could
// not help), and returns their latencies. Every answer must grant the one pull asked for.
func measure(ctx context.Context, c *http.Client, addr string, creds []credential, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := range n {
		cr := creds[i%len(creds)]
		q := url.Values{"service": {"registry.bench"}, "scope": {"repository:" + cr.repo + ":pull"}}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/token?"+q.Encode(), nil)
		req.SetBasicAuth(cr.account, cr.key)
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, time.Since(start))
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"access_token"`) {
			return nil, fmt.Errorf("token request for %s: HTTP %d %s", cr.account, resp.StatusCode, body)
		}
	}
	return out, nil
}

func startServer(ctx context.Context, binary, cfgPath, storeURL, keyFile, certFile string) (*exec.Cmd, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf("issuer: regoauth\nservices: [registry.bench]\nlisten: {addr: %q}\nsigning: {key_file: %q, cert_file: %q}\n"+
		"store: {url: %q, cache: {ttl: 0s}}\nlog: {format: json, level: warn}\n", addr, keyFile, certFile, storeURL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.CommandContext(ctx, binary, "serve", "--config", cfgPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("starting regoauth: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd, addr, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd, addr, errors.New("regoauth did not become ready within 30s")
}

func rss(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

func redisMemory(ctx context.Context, storeURL string) string {
	opts, _ := redis.ParseURL(storeURL)
	c := redis.NewClient(opts)
	defer c.Close()
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory_human:"); ok {
			return v
		}
	}
	return "?"
}

func waitRedis(ctx context.Context, storeURL string) error {
	opts, _ := redis.ParseURL(storeURL)
	c := redis.NewClient(opts)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Ping(ctx).Err()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
