// Command keycost measures what the most expensive API key an account can give itself costs
// everybody else. It starts `regoauth serve` (bolt store, built-in policy) on a loopback port,
// creates a victim account (an ordinary key, three grants) and an attacker account with two
// keys of its own: an unrestricted one, and one with as many repository patterns as the server
// accepts (it asks for -patterns, halves until the server takes it, then searches up to the
// limit). Then it measures over loopback, every request a decision the cache cannot serve:
//
//   - the victim's token request alone (three scopes): the baseline;
//   - -scopes-scope requests (matching nothing) with the unrestricted key and with the
//     worst-case key, alternately: what the restrictions add to one request;
//   - the victim's request while -workers senders flood with each key: what a flood of
//     worst-case requests costs others compared with a flood of ordinary ones;
//   - one `policy explain` of the worst-case request: its time, and the server's heap and RSS;
//   - heap and RSS after the floods (the decision cache full of the attacker's decisions).
//
// Each figure is a ratio to a baseline measured in the same run. Everything it starts, it
// stops.
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
	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/keystore"
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
	if _, err := secretfile.EnsureSigningKey(keyFile, certFile, jose.ES256, "regoauth", time.Now()); err != nil {
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
	self, err := admin.NewClient(base, first.Secret, &http.Client{Timeout: 5 * time.Minute}) // an explain can take long
	if err != nil {
		return err
	}
	var attacker admin.KeyCreated
	create := func(n int) (admin.KeyCreated, error) {
		req := admin.KeyRequest{Account: "attacker", Restrictions: keystore.Restrictions{Repositories: make([]string, n)}}
		for i := range n {
			req.Restrictions.Repositories[i] = fmt.Sprintf("a%05d/*x", i)
		}
		return self.CreateKey(ctx, req)
	}
	// The most patterns the server accepts: halve until one is taken, then search up to the
	// first refused.
	patterns, refused := cfg.Patterns, 0
	for {
		k, err := create(patterns)
		var apiErr *admin.APIError
		if err == nil {
			attacker = k
			break
		}
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || patterns == 1 {
			return fmt.Errorf("creating the attacker's key: %w", err)
		}
		if refused == 0 {
			fmt.Fprintf(cfg.Out, "the server refuses a key with %d patterns: %s\n", patterns, apiErr.Message)
		}
		refused, patterns = patterns, patterns/2
	}
	for lo, hi := patterns, refused; refused > 0 && hi-lo > 1; {
		mid := (lo + hi) / 2
		if k, err := create(mid); err == nil {
			attacker, patterns, lo = k, mid, mid
		} else {
			hi = mid
		}
	}
	fmt.Fprintf(cfg.Out, "attacker key: %d repository patterns\n", patterns)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 5 * time.Minute}
	var seq atomic.Int64
	victimRequest := func() (time.Duration, error) {
		n := seq.Add(1)
		scopes := []string{fmt.Sprintf("repository:victim/r%d:pull,push", n), "repository:team/app:pull", fmt.Sprintf("repository:base/x/r%d:pull", n)}
		return tokenRequest(ctx, client, base, "victim", victim.Secret, scopes)
	}
	// request32 asks for 32 (cfg.Scopes) scopes no grant matches, with key of account.
	request32 := func(account, key string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			n := seq.Add(1)
			scopes := make([]string, cfg.Scopes)
			for i := range scopes {
				scopes[i] = fmt.Sprintf("repository:z%d/s%d:pull,push", n, i)
			}
			return tokenRequest(ctx, client, base, account, key, scopes)
		}
	}
	attackerRequest := request32("attacker", attacker.Secret)
	ordinaryRequest := request32("attacker", first.Secret) // the same account, its unrestricted key
	for range 50 {                                         // warm up
		if _, err := victimRequest(); err != nil {
			return err
		}
	}
	alone, err := repeat(cfg.Requests, victimRequest)
	if err != nil {
		return err
	}
	var ord, att []time.Duration
	for range max(cfg.Requests/10, 5) { // alternately, so that both see the same machine
		for _, x := range []struct {
			fn  func() (time.Duration, error)
			out *[]time.Duration
		}{{ordinaryRequest, &ord}, {attackerRequest, &att}} {
			d, err := x.fn()
			if err != nil {
				return err
			}
			*x.out = append(*x.out, d)
		}
	}

	// flood runs cfg.Workers senders of fn for cfg.Flood and measures the victim meanwhile.
	flood := func(fn func() (time.Duration, error)) (during []time.Duration, served int64, err error) {
		floodCtx, stop := context.WithTimeout(ctx, cfg.Flood)
		defer stop()
		var n atomic.Int64
		var wg sync.WaitGroup
		for range cfg.Workers {
			wg.Go(func() {
				for floodCtx.Err() == nil {
					if _, err := fn(); err == nil {
						n.Add(1)
					}
				}
			})
		}
		for floodCtx.Err() == nil {
			d, err := victimRequest()
			if err != nil {
				break
			}
			during = append(during, d)
		}
		wg.Wait()
		if len(during) == 0 {
			return nil, 0, errors.New("no victim request completed during the flood")
		}
		return during, n.Load(), nil
	}
	beforeFlood, err := memory(ctx, client, base, server.Process.Pid)
	if err != nil {
		return err
	}
	duringOrdinary, ordinaryServed, err := flood(ordinaryRequest)
	if err != nil {
		return err
	}
	during, attacks, err := flood(attackerRequest)
	if err != nil {
		return err
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
	row := func(label string, d []time.Duration, base time.Duration) {
		fmt.Fprintf(w, "%-58s %10s %10s %8.2f\n", label, p50(d).Round(time.Microsecond), p90(d).Round(time.Microsecond), float64(p50(d))/float64(base))
	}
	fmt.Fprintf(w, "\n%-58s %10s %10s %8s\n", "over loopback", "p50", "p90", "ratio")
	row("victim token request, alone (baseline)", alone, a)
	row(fmt.Sprintf("%d-scope request, unrestricted key (vs victim alone)", cfg.Scopes), ord, a)
	row(fmt.Sprintf("%d-scope request, worst-case key (vs unrestricted)", cfg.Scopes), att, p50(ord))
	row(fmt.Sprintf("victim during %d unrestricted-key senders (vs alone)", cfg.Workers), duringOrdinary, a)
	row(fmt.Sprintf("victim during %d worst-case-key senders (vs unrestricted)", cfg.Workers), during, p50(duringOrdinary))
	fmt.Fprintf(w, "requests served in %s floods: unrestricted key %d (%.1f/s), worst-case key %d (%.1f/s)\n", cfg.Flood,
		ordinaryServed, float64(ordinaryServed)/cfg.Flood.Seconds(), attacks, float64(attacks)/cfg.Flood.Seconds())
	fmt.Fprintf(w, "heap in use %d MiB before the floods, %d MiB after; RSS %d MiB before, %d MiB after\n",
		beforeFlood.heap>>20, afterFlood.heap>>20, beforeFlood.rss>>20, afterFlood.rss>>20)
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
