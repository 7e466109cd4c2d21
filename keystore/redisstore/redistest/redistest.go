// Package redistest starts real Redis processes for tests: a standalone redis-server, a Sentinel
// setup (a primary, one or more replicas and three sentinels) and a Cluster (three primaries,
// three replicas), both of which can fail over on demand.
// Every process listens on a free loopback port, lives in a temporary folder, and is stopped when
// the test ends. A test that needs a program that is not installed is skipped, or fails when
// REGOAUTH_E2E=1 (as in CI). It never touches a Redis server it did not start.
package redistest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Program returns the path of a Redis program, skipping the test without it, or failing it when
// REGOAUTH_E2E=1.
func Program(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("REGOAUTH_E2E") == "1" {
		t.Fatalf("%s is not installed, and REGOAUTH_E2E=1 requires it", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

// FreePort returns a loopback port nobody listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is one Redis program run by a test.
type process struct {
	t      testing.TB
	name   string
	args   []string
	port   int
	dir    string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	output *bytes.Buffer
}

func (p *process) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.output = &bytes.Buffer{}
	p.cmd = exec.Command(Program(p.t, p.name), p.args...)
	p.cmd.Dir = p.dir
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("starting %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	p.exited = exited
	cmd := p.cmd
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := redis.NewClient(&redis.Options{Addr: p.addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
		err := c.Ping(context.Background()).Err()
		c.Close()
		var reply redis.Error
		if err == nil || errors.As(err, &reply) { // a server that asks for a password answers too
			return
		}
		select {
		case <-exited:
			p.t.Fatalf("%s on port %d exited at start:\n%s", p.name, p.port, p.output)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s on port %d did not answer within 10s: %v\n%s", p.name, p.port, err, p.output)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process with sig and waits for it.
func (p *process) stop(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// running reports whether the process was started and has not exited.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *process) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// Server is a redis-server process.
type Server struct {
	p *process
	// Addr is 127.0.0.1:PORT.
	Addr string
}

// Start runs a redis-server on a free loopback port with an append-only file in a temporary
// folder, so that Stop and Start keep its data. extra are more command-line settings, e.g.
// "--replicaof", "127.0.0.1", "6380".
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	s := newServer(t, FreePort(t), t.TempDir(), extra...)
	s.p.start()
	return s
}

func newServer(t testing.TB, port int, dir string, extra ...string) *Server {
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
		"--protected-mode", "no", "--daemonize", "no", "--logfile", "",
		// A new replica is sent a snapshot file at once, and the writes after it right away: a
		// diskless sync waits 5s for other replicas first, then holds the writes back until the
		// replica's first acknowledgement, up to a second later.
		"--repl-diskless-sync", "no",
	}, extra...)
	s := &Server{p: &process{t: t, name: "redis-server", args: args, port: port, dir: dir}, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	t.Cleanup(func() { s.p.stop(syscall.SIGKILL) })
	return s
}

// URL is the standalone URL of the server, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Port is the server's port.
func (s *Server) Port() int { return s.p.port }

// Stop shuts the server down cleanly (it writes its data first).
func (s *Server) Stop() { s.p.stop(syscall.SIGTERM) }

// Kill ends the server at once, as a crash would.
func (s *Server) Kill() { s.p.stop(syscall.SIGKILL) }

// StartReplica starts a replica of s and waits until it holds everything s wrote.
func (s *Server) StartReplica(t testing.TB) *Server {
	t.Helper()
	r := Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.Port()))
	waitFor(t, 15*time.Second, "the replica to sync", func() error { return inSync(s, r) })
	return r
}

// Restart starts the server again on the same port and folder, after Stop or Kill.
func (s *Server) Restart() {
	s.p.t.Helper()
	s.p.start()
}

// Client returns a client of this server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.p.t.Cleanup(func() { c.Close() })
	return c
}

// Sentinel is a primary, its replicas and three sentinels watching them.
type Sentinel struct {
	t         testing.TB
	Master    string
	servers   []*Server
	sentinels []*process
}

// StartSentinel starts a Sentinel setup of a primary and one replica, and waits until the
// sentinels know them and each other, so that a failover can happen.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return StartSentinelReplicas(t, 1)
}

// StartSentinelReplicas is StartSentinel with n replicas. With two, one is left to replicate
// the new primary after a failover.
func StartSentinelReplicas(t testing.TB, n int) *Sentinel {
	t.Helper()
	Program(t, "redis-sentinel")
	primary := Start(t)
	s := &Sentinel{t: t, Master: "regoauth", servers: []*Server{primary}}
	for range n {
		replica := Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port()))
		s.servers = append(s.servers, replica)
		waitFor(t, 15*time.Second, "the replica to sync", func() error {
			return inSync(primary, replica)
		})
	}
	// Each sentinel is told of the replicas and of the other sentinels, as the configuration a
	// sentinel rewrites itself records them, instead of discovering them, which takes seconds
	// (replicas from the primary's INFO every 10s, sentinels from hellos every 2s).
	type sentinel struct {
		port int
		id   string
	}
	peers := make([]sentinel, 3)
	for i := range peers {
		id := make([]byte, 20)
		rand.Read(id)
		peers[i] = sentinel{FreePort(t), hex.EncodeToString(id)}
	}
	for i, me := range peers {
		dir := t.TempDir()
		var conf strings.Builder
		fmt.Fprintf(&conf, "port %d\nbind 127.0.0.1\ndir %s\nsentinel myid %s\nsentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %[4]s 1000\nsentinel failover-timeout %[4]s 10000\nsentinel parallel-syncs %[4]s 1\n",
			me.port, dir, me.id, s.Master, primary.Port())
		for _, r := range s.servers[1:] {
			fmt.Fprintf(&conf, "sentinel known-replica %s 127.0.0.1 %d\n", s.Master, r.Port())
		}
		for j, other := range peers {
			if j != i {
				fmt.Fprintf(&conf, "sentinel known-sentinel %s 127.0.0.1 %d %s\n", s.Master, other.port, other.id)
			}
		}
		path := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		p := &process{t: t, name: "redis-sentinel", args: []string{path}, port: me.port, dir: dir}
		t.Cleanup(func() { p.stop(syscall.SIGKILL) })
		p.start()
		s.sentinels = append(s.sentinels, p)
	}
	waitFor(t, 30*time.Second, "the sentinels to reach the replicas and each other", func() error {
		for _, p := range s.sentinels {
			if err := s.ready(p, n); err != nil {
				return fmt.Errorf("sentinel %d: %w", p.port, err)
			}
		}
		return nil
	})
	return s
}

// ready reports an error until sentinel p knows the primary, its n replicas and the two other
// sentinels, and is in touch with each: it has the replicas' INFO, which a failover needs to
// choose one, and the other sentinels are connected.
func (s *Sentinel) ready(p *process, n int) error {
	ctx := context.Background()
	c := redis.NewSentinelClient(&redis.Options{Addr: p.addr()})
	defer c.Close()
	m, err := c.Master(ctx, s.Master).Result()
	if err != nil {
		return err
	}
	if m["num-other-sentinels"] != "2" || m["num-slaves"] != strconv.Itoa(n) {
		return fmt.Errorf("%s other sentinels and %s replicas", m["num-other-sentinels"], m["num-slaves"])
	}
	replicas, err := c.Replicas(ctx, s.Master).Result()
	if err != nil {
		return err
	}
	for _, r := range replicas {
		if refresh, _ := strconv.Atoi(r["info-refresh"]); r["flags"] != "slave" || r["master-link-status"] != "ok" || refresh > 5000 {
			return fmt.Errorf("replica %s:%s: flags %s, link %s, INFO %sms ago", r["ip"], r["port"], r["flags"], r["master-link-status"], r["info-refresh"])
		}
	}
	sentinels, err := c.Sentinels(ctx, s.Master).Result()
	if err != nil {
		return err
	}
	for _, o := range sentinels {
		if o["flags"] != "sentinel" {
			return fmt.Errorf("sentinel %s:%s: flags %s", o["ip"], o["port"], o["flags"])
		}
	}
	return nil
}

// URL is the redis+sentinel URL of the setup.
func (s *Sentinel) URL() string {
	hosts := make([]string, len(s.sentinels))
	for i, p := range s.sentinels {
		hosts[i] = p.addr()
	}
	return "redis+sentinel://" + strings.Join(hosts, ",") + "/" + s.Master + "/0"
}

// Primary is the server the sentinels currently name as primary.
func (s *Sentinel) Primary() *Server {
	s.t.Helper()
	addr, err := s.primaryAddr()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, srv := range s.servers {
		if srv.Addr == addr {
			return srv
		}
	}
	s.t.Fatalf("sentinels name %s as primary, which this setup did not start", addr)
	return nil
}

func (s *Sentinel) primaryAddr() (string, error) {
	var lastErr error
	for _, p := range s.sentinels {
		addr, err := s.primaryNamedBy(p)
		if err == nil {
			return addr, nil
		}
		lastErr = err
	}
	return "", lastErr
}

// primaryNamedBy is the primary's address as sentinel p knows it.
func (s *Sentinel) primaryNamedBy(p *process) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: p.addr(), DialTimeout: time.Second})
	defer c.Close()
	hp, err := c.GetMasterAddrByName(context.Background(), s.Master).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// Replicas are the running servers of the setup other than its primary.
func (s *Sentinel) Replicas() []*Server {
	s.t.Helper()
	primary := s.Primary()
	var replicas []*Server
	for _, srv := range s.servers {
		if srv != primary && srv.p.running() {
			replicas = append(replicas, srv)
		}
	}
	return replicas
}

// Failover kills the primary once every replica holds everything it wrote, then waits as
// AwaitFailover does, and returns the new primary.
func (s *Sentinel) Failover() *Server {
	s.t.Helper()
	old := s.Primary()
	for _, replica := range s.Replicas() {
		waitFor(s.t, 15*time.Second, "the replicas to catch up before the failover", func() error { return inSync(old, replica) })
	}
	old.Kill()
	return s.AwaitFailover(old)
}

// AwaitFailover waits, after old failed (e.g. killed at once, as a crash would, whatever its
// replicas hold), until every sentinel names one of the running replicas as primary and it
// accepts writes, and until the other running replicas replicate it; it returns the new primary.
func (s *Sentinel) AwaitFailover(old *Server) *Server {
	s.t.Helper()
	var replicas []*Server
	for _, srv := range s.servers {
		if srv != old && srv.p.running() {
			replicas = append(replicas, srv)
		}
	}
	var primary *Server
	waitFor(s.t, 60*time.Second, "the sentinels to promote a replica", func() error {
		// Every sentinel, not just the first to answer: the others learn of the promotion a
		// moment later, and a client that asked one of them meanwhile would be sent to the
		// primary that failed.
		primary = nil
		for _, p := range s.sentinels {
			addr, err := s.primaryNamedBy(p)
			if err != nil {
				return fmt.Errorf("sentinel %d: %w", p.port, err)
			}
			if primary != nil && addr != primary.Addr {
				return fmt.Errorf("sentinel %d names %s as primary, another %s", p.port, addr, primary.Addr)
			}
			for _, r := range replicas {
				if r.Addr == addr {
					primary = r
				}
			}
			if primary == nil {
				return fmt.Errorf("sentinel %d names %s as primary", p.port, addr)
			}
		}
		c := redis.NewClient(&redis.Options{Addr: primary.Addr})
		defer c.Close()
		role, err := c.Do(context.Background(), "ROLE").Slice()
		if err != nil {
			return err
		}
		if role[0] != "master" {
			return fmt.Errorf("%s is still a %v", primary.Addr, role[0])
		}
		return nil
	})
	for _, r := range replicas {
		if r != primary {
			waitFor(s.t, 30*time.Second, "the other replicas to replicate the new primary", func() error { return replicates(r, primary) })
		}
	}
	return primary
}

// replicates reports an error until replica's link to primary is up.
func replicates(replica, primary *Server) error {
	c := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer c.Close()
	ctx := context.Background()
	host, _ := infoField(ctx, c, "master_host")
	port, _ := infoField(ctx, c, "master_port")
	if net.JoinHostPort(host, port) != primary.Addr {
		return fmt.Errorf("%s replicates %s:%s", replica.Addr, host, port)
	}
	if link, _ := infoField(ctx, c, "master_link_status"); link != "up" {
		return fmt.Errorf("%s: link to %s is %q", replica.Addr, primary.Addr, link)
	}
	return nil
}

// inSync reports an error until replica has applied everything primary wrote.
func inSync(primary, replica *Server) error {
	ctx := context.Background()
	pc := redis.NewClient(&redis.Options{Addr: primary.Addr})
	defer pc.Close()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	want, err := infoField(ctx, pc, "master_repl_offset")
	if err != nil {
		return err
	}
	if link, _ := infoField(ctx, rc, "master_link_status"); link != "up" {
		return fmt.Errorf("replica link is %q", link)
	}
	got, err := infoField(ctx, rc, "slave_repl_offset")
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("replica offset %s, primary %s", got, want)
	}
	return nil
}

func infoField(ctx context.Context, c *redis.Client, field string) (string, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("INFO has no %s", field)
}

// Cluster is a Redis Cluster of three primaries, each with one replica.
type Cluster struct {
	t       testing.TB
	servers []*Server
}

// StartCluster starts six cluster-enabled servers, joins them with redis-cli as three primaries
// with one replica each, and waits until every replica is in sync.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli := Program(t, "redis-cli")
	c := &Cluster{t: t}
	var addrs []string
	for range 6 {
		// The cluster bus listens on port+10000, which must be free too.
		var port int
		for {
			port = FreePort(t)
			if port+10000 > 65535 {
				continue
			}
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000))); err == nil {
				l.Close()
				break
			}
		}
		s := newServer(t, port, t.TempDir(), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000")
		s.p.start()
		c.servers = append(c.servers, s)
		addrs = append(addrs, s.Addr)
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, "the cluster to be ready, every replica in sync", func() error {
		for _, s := range c.servers {
			cc := redis.NewClient(&redis.Options{Addr: s.Addr})
			info, err := cc.ClusterInfo(context.Background()).Result()
			cc.Close()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: cluster state not ok", s.Addr)
			}
		}
		for _, s := range c.servers {
			if primary := c.primaryOf(s); primary != nil {
				if err := inSync(primary, s); err != nil {
					return fmt.Errorf("replica %s: %w", s.Addr, err)
				}
			}
		}
		return nil
	})
	return c
}

// primaryOf returns the primary s replicates, or nil when s is a primary.
func (c *Cluster) primaryOf(s *Server) *Server {
	cc := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer cc.Close()
	role, err := cc.Do(context.Background(), "ROLE").Slice()
	if err != nil || len(role) < 3 || role[0] != "slave" {
		return nil
	}
	addr := net.JoinHostPort(fmt.Sprint(role[1]), fmt.Sprint(role[2]))
	for _, p := range c.servers {
		if p.Addr == addr {
			return p
		}
	}
	return nil
}

// servingPair returns the primary serving key's hash slot and its replica.
func (c *Cluster) servingPair(key string) (primary, replica *Server) {
	c.t.Helper()
	ctx := context.Background()
	any := redis.NewClient(&redis.Options{Addr: c.servers[0].Addr})
	slot, err := any.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		c.t.Fatal(err)
	}
	slots, err := any.ClusterSlots(ctx).Result()
	any.Close()
	if err != nil {
		c.t.Fatal(err)
	}
	var primaryAddr string
	for _, r := range slots {
		if int64(r.Start) <= slot && slot <= int64(r.End) {
			primaryAddr = r.Nodes[0].Addr
		}
	}
	for _, s := range c.servers {
		if s.Addr == primaryAddr {
			primary = s
		}
	}
	for _, s := range c.servers {
		if primary != nil && c.primaryOf(s) == primary {
			replica = s
		}
	}
	if primary == nil || replica == nil {
		c.t.Fatalf("slot %d: primary %q, no replica of it among %d servers", slot, primaryAddr, len(c.servers))
	}
	return primary, replica
}

// ManualFailover has the replica of the primary serving key's hash slot take its place, as an
// operator's CLUSTER FAILOVER does: the former primary keeps running, a replica of the new one,
// and answers MOVED for the slot.
func (c *Cluster) ManualFailover(key string) {
	c.t.Helper()
	primary, replica := c.servingPair(key)
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	if err := rc.Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
		c.t.Fatal(err)
	}
	waitFor(c.t, 30*time.Second, "the replica to take the primary's place", func() error {
		if c.primaryOf(replica) != nil || c.primaryOf(primary) != replica {
			return errors.New("roles not switched yet")
		}
		return nil
	})
}

// Failover kills the primary that serves key's hash slot, once its replica holds everything it
// wrote, then waits until the cluster has promoted the replica and is whole again.
func (c *Cluster) Failover(key string) {
	c.t.Helper()
	ctx := context.Background()
	primary, replica := c.servingPair(key)
	waitFor(c.t, 15*time.Second, "the replica to catch up before the failover", func() error { return inSync(primary, replica) })
	primary.Kill()
	waitFor(c.t, 60*time.Second, "the cluster to promote the replica", func() error {
		rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
		defer rc.Close()
		role, err := rc.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if role[0] != "master" {
			return fmt.Errorf("%s is still a %v", replica.Addr, role[0])
		}
		info, err := rc.ClusterInfo(ctx).Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return errors.New("cluster state not ok")
		}
		return nil
	})
}

// URL is the redis+cluster URL of the cluster.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.servers))
	for i, s := range c.servers {
		addrs[i] = s.Addr
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// waitFor polls check until it succeeds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
