// Command keycost measures what the most expensive API key an account can give itself costs
// everybody else. It starts `regoauth serve` (bolt store, built-in policy) on a loopback port,
// creates a victim account (an ordinary key, three grants) and an attacker account whose own
// key carries as many repository patterns as the server accepts (it asks for -patterns and
// halves the number until the server takes it), then measures over loopback:
//
//   - the victim's token request alone (three scopes, each a decision the cache cannot serve);
//   - the attacker's token request with -scopes scopes that match none of its patterns;
//   - the victim's token request while -workers attackers send such requests without pause;
//   - one `policy explain` of the attacker's request: time and the server's RSS before and after;
//   - the server's heap and RSS after the flood (the decision cache full of attacker inputs).
//
// Latencies are reported as ratios to the victim's alone, measured in the same run. Everything
// it starts, it stops.
//
//	go run ./bench/keycost -regoauth ./regoauth [-patterns 5000] [-scopes 32] [-flood 10s]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/tokens"
)

// Config is one run.
type Config struct {
	Regoauth string
	Patterns int
	Scopes   int
	Requests int
	Workers  int
	Flood    time.Duration
	Out      io.Writer
}

func main() {
	cfg := Config{Out: os.Stdout}
	flag.StringVar(&cfg.Regoauth, "regoauth", "./regoauth", "the regoauth binary")
	flag.IntVar(&cfg.Patterns, "patterns", 5000, "repository patterns the attacker asks for on its key")
	flag.IntVar(&cfg.Scopes, "scopes", 32, "scopes per attacker token request")
	flag.IntVar(&cfg.Requests, "requests", 200, "sequential victim token requests per measurement")
	flag.IntVar(&cfg.Workers, "workers", 2, "attackers flooding at once")
	flag.DurationVar(&cfg.Flood, "flood", 10*time.Second, "how long the attackers flood")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "keycost:", err)
		os.Exit(1)
	}
}

// Run performs the measurement and prints the report to cfg.Out.
func Run(ctx context.Context, cfg Config) error {
	dir, err := os.MkdirTemp("", "keycost")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	keyFile, certFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	if _, err := tokens.EnsureKeyFiles(keyFile, certFile, jose.ES256, "regoauth", time.Now()); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := filepath.Join(dir, "regoauth.yaml")
	yaml := fmt.Sprintf("issuer: regoauth\nservices: [registry.bench]\nlisten: {addr: %q}\nsigning: {key_file: %q, cert_file: %q}\n"+
		"store: {url: \"bolt://%s\"}\nlimits: {max_in_flight: 4096}\nlog: {format: json, level: warn}\n", addr, keyFile, certFile, filepath.Join(dir, "store.db"))
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, cfg.Regoauth, "bootstrap", "--config", cfgPath).Output()
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	adminKey := strings.TrimSpace(string(out))
	server := exec.CommandContext(ctx, cfg.Regoauth, "serve", "--config", cfgPath)
	server.Stderr = os.Stderr
	if err := server.Start(); err != nil {
		return err
	}
	defer func() {
		server.Process.Signal(os.Interrupt)
		server.Wait()
	}()
	if err := waitReady(ctx, addr); err != nil {
		return err
	}
	base := "http://" + addr
	adm, err := admin.NewClient(base, adminKey, nil)
	if err != nil {
		return err
	}

	// The victim: an ordinary key and three grants.
	if _, err := adm.CreateAccount(ctx, admin.AccountRequest{Name: "victim"}); err != nil {
		return err
	}
	victim, err := adm.CreateKey(ctx, admin.KeyRequest{Account: "victim"})
	if err != nil {
		return err
	}
	for _, p := range []string{"victim/*", "team/app", "base/**"} {
		if _, err := adm.AddGrant(ctx, admin.GrantRequest{Account: "victim", Repository: p, Actions: []string{"pull", "push"}}); err != nil {
			return err
		}
	}
	// The attacker gives its own key as many patterns as the server takes.
	if _, err := adm.CreateAccount(ctx, admin.AccountRequest{Name: "attacker"}); err != nil {
		return err
	}
	first, err := adm.CreateKey(ctx, admin.KeyRequest{Account: "attacker"})
	if err != nil {
		return err
	}
	self, err := admin.NewClient(base, first.Secret, nil)
	if err != nil {
		return err
	}
	var attacker admin.KeyCreated
	patterns := cfg.Patterns
	for {
		req := admin.KeyRequest{Account: "attacker", Restrictions: keystore.Restrictions{Repositories: make([]string, patterns)}}
		for i := range patterns {
			req.Restrictions.Repositories[i] = fmt.Sprintf("a%05d/*x", i)
		}
		attacker, err = self.CreateKey(ctx, req)
		var apiErr *admin.APIError
		if err == nil {
			break
		}
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || patterns == 1 {
			return fmt.Errorf("creating the attacker's key: %w", err)
		}
		fmt.Fprintf(cfg.Out, "the server refuses a key with %d patterns: %s\n", patterns, apiErr.Message)
		patterns /= 2
	}
	fmt.Fprintf(cfg.Out, "attacker key: %d repository patterns\n", patterns)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 5 * time.Minute}
	var seq atomic.Int64
	victimRequest := func() (time.Duration, error) {
		n := seq.Add(1)
		scopes := []string{fmt.Sprintf("repository:victim/r%d:pull,push", n), "repository:team/app:pull", fmt.Sprintf("repository:base/x/r%d:pull", n)}
		return tokenRequest(ctx, client, base, "victim", victim.Secret, scopes)
	}
	attackerRequest := func() (time.Duration, error) {
		n := seq.Add(1)
		scopes := make([]string, cfg.Scopes)
		for i := range scopes {
			scopes[i] = fmt.Sprintf("repository:z%d/s%d:pull,push", n, i)
		}
		return tokenRequest(ctx, client, base, "attacker", attacker.Secret, scopes)
	}
	for range 50 { // warm up
		if _, err := victimRequest(); err != nil {
			return err
		}
	}
	alone, err := repeat(cfg.Requests, victimRequest)
	if err != nil {
		return err
	}
	att, err := repeat(max(cfg.Requests/20, 5), attackerRequest)
	if err != nil {
		return err
	}

	// The flood: attackers without pause, the victim measured meanwhile.
	floodCtx, stop := context.WithTimeout(ctx, cfg.Flood)
	var attacks atomic.Int64
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for floodCtx.Err() == nil {
				if _, err := attackerRequest(); err == nil {
					attacks.Add(1)
				}
			}
		})
	}
	var during []time.Duration
	for floodCtx.Err() == nil {
		d, err := victimRequest()
		if err != nil {
			break
		}
		during = append(during, d)
	}
	stop()
	wg.Wait()
	if len(during) == 0 {
		return errors.New("no victim request completed during the flood")
	}
	afterFlood, err := memory(ctx, client, base, server.Process.Pid)
	if err != nil {
		return err
	}

	// One explain of the attacker's request, by the attacker itself.
	before, err := memory(ctx, client, base, server.Process.Pid)
	if err != nil {
		return err
	}
	scopes := make([]string, cfg.Scopes)
	for i := range scopes {
		scopes[i] = fmt.Sprintf("repository:explain/s%d:pull,push", i)
	}
	start := time.Now()
	_, err = self.Explain(ctx, admin.ExplainRequest{Account: "attacker", KeyID: attacker.ID, Scopes: scopes})
	explainTime := time.Since(start)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	peak, err := memory(ctx, client, base, server.Process.Pid)
	if err != nil {
		return err
	}

	p50 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	p90 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)*9/10] }
	a := p50(alone)
	w := cfg.Out
	fmt.Fprintf(w, "\n%-46s %12s %12s %8s\n", "over loopback, "+strconv.Itoa(cfg.Workers)+" attackers in the flood", "p50", "p90", "p50/base")
	fmt.Fprintf(w, "%-46s %12s %12s %8.2f\n", "victim token request, alone (baseline)", a.Round(time.Microsecond), p90(alone).Round(time.Microsecond), 1.0)
	fmt.Fprintf(w, "%-46s %12s %12s %8.2f\n", fmt.Sprintf("attacker token request, %d scopes", cfg.Scopes), p50(att).Round(time.Microsecond), p90(att).Round(time.Microsecond), float64(p50(att))/float64(a))
	fmt.Fprintf(w, "%-46s %12s %12s %8.2f\n", "victim token request during the flood", p50(during).Round(time.Microsecond), p90(during).Round(time.Microsecond), float64(p50(during))/float64(a))
	fmt.Fprintf(w, "attacker requests served during the %s flood: %d (%.1f/s)\n", cfg.Flood, attacks.Load(), float64(attacks.Load())/cfg.Flood.Seconds())
	fmt.Fprintf(w, "after the flood: heap in use %d MiB, RSS %d MiB\n", afterFlood.heap>>20, afterFlood.rss>>20)
	fmt.Fprintf(w, "explain of the attacker's request: %s; RSS %d MiB before, %d MiB after (heap %d -> %d MiB)\n",
		explainTime.Round(time.Millisecond), before.rss>>20, peak.rss>>20, before.heap>>20, peak.heap>>20)
	return nil
}

func repeat(n int, fn func() (time.Duration, error)) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		d, err := fn()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func tokenRequest(ctx context.Context, c *http.Client, base, user, key string, scopes []string) (time.Duration, error) {
	q := url.Values{"service": {"registry.bench"}, "scope": scopes}
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, key)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("token request of %s: HTTP %d %s", user, resp.StatusCode, body)
	}
	return d, nil
}

type mem struct{ heap, rss int64 }

// memory reads the server's heap in use from /metrics and its RSS from /proc.
func memory(ctx context.Context, c *http.Client, base string, pid int) (mem, error) {
	var m mem
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	resp, err := c.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			m.heap = int64(f)
		}
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			m.rss = kb << 10
		}
	}
	return m, nil
}

func waitReady(ctx context.Context, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("regoauth did not become ready within 30s")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
