package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// outcomes tallies what clients saw: answers by status, connections refused (the clean end of
// a server), and anything else (a request lost in flight).
type outcomes struct {
	mu       sync.Mutex
	status   map[int]int
	refused  int
	failures []string
}

func (o *outcomes) add(status int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err == nil:
		o.status[status]++
	case errors.Is(err, syscall.ECONNREFUSED):
		o.refused++
	default:
		o.failures = append(o.failures, err.Error())
	}
}

// TestSIGTERMDrainsInFlightRequests sends SIGTERM to `regoauth serve` while eight clients
// request tokens over kept-alive connections and one request is in flight, its body still
// being sent: /readyz turns 503 first while tokens are still issued (shutdown.drain_delay),
// then the listener closes and new connections are refused, the request in flight gets its
// token, no client sees an error other than a refused connection, and the process exits 0.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	keyFile, certFile := signingFiles(t)
	storeURL := "bolt://" + filepath.Join(t.TempDir(), "store.db")
	s := configured(t, storeURL, keyFile, certFile, "shutdown: {drain_delay: 1500ms, timeout: 20s}")
	adminKey := s.bootstrap(t, storeURL)
	s.start(t, storeURL)
	s.cli(t, adminKey, "accounts", "create", "user1")
	key := strings.TrimSpace(s.cli(t, adminKey, "keys", "create", "--account", "user1"))
	s.cli(t, adminKey, "grants", "add", "--account", "user1", "--repo", "image", "--actions", "pull")

	res := &outcomes{status: map[int]int{}}
	var stop atomic.Bool
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	q := url.Values{"service": {redisService}, "scope": {"repository:image:pull"}}.Encode()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				req, _ := http.NewRequest("GET", "http://"+s.Token+"/token?"+q, nil)
				req.SetBasicAuth("user1", key)
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				res.add(resp0(resp, err))
				if errors.Is(err, syscall.ECONNREFUSED) {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}

	// A request in flight across the shutdown: its headers are sent, its body comes later.
	body, bodyWriter := io.Pipe()
	slow := make(chan answerOrErr, 1)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+s.Token+"/token", body)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			slow <- answerOrErr{err: err}
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		slow <- answerOrErr{status: resp.StatusCode, raw: string(raw)}
	}()
	form := url.Values{"grant_type": {"password"}, "username": {"user1"}, "password": {key}, "service": {redisService}, "scope": {"repository:image:pull"}}.Encode()
	bodyWriter.Write([]byte(form[:10]))

	time.Sleep(time.Second)
	issuedBefore := res.count(http.StatusOK)
	if issuedBefore == 0 {
		t.Fatalf("no token issued before the signal: %+v", res.snapshot())
	}
	sent := time.Now()
	if err := s.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	within(t, time.Second, "/readyz answering 503 after SIGTERM", func() bool { return s.readyzStatus() == http.StatusServiceUnavailable })
	issuedAtNotReady := res.count(http.StatusOK)
	time.Sleep(500 * time.Millisecond)
	if res.count(http.StatusOK) <= issuedAtNotReady {
		t.Fatal("no token was issued while /readyz said not ready, during the drain delay")
	}
	within(t, 5*time.Second, "new connections refused", func() bool {
		_, err := http.Get("http://" + s.Token + "/healthz")
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	if d := time.Since(sent); d < 1400*time.Millisecond {
		t.Fatalf("the listener closed %s after SIGTERM, before the drain delay", d)
	}
	// The listener is closed; the request in flight is still being served.
	bodyWriter.Write([]byte(form[10:]))
	bodyWriter.Close()
	select {
	case a := <-slow:
		if a.err != nil || a.status != http.StatusOK || !strings.Contains(a.raw, `"access_token"`) {
			t.Fatalf("the request in flight at shutdown: %v HTTP %d %s", a.err, a.status, a.raw)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the request in flight was not answered")
	}
	select {
	case <-s.proc.exited:
		if s.proc.err != nil {
			t.Fatalf("regoauth serve exited with %v after SIGTERM", s.proc.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("regoauth serve did not exit within 20s of SIGTERM")
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	snap := res.snapshot()
	t.Logf("clients saw: %s", snap)
	if len(res.failures) > 0 {
		t.Fatalf("%d requests failed in flight, e.g. %s", len(res.failures), res.failures[0])
	}
	if res.refused == 0 {
		t.Fatal("no client saw its connection refused after the shutdown")
	}
	for status, n := range res.status {
		if status != http.StatusOK {
			t.Fatalf("%d answers with HTTP %d", n, status)
		}
	}
}

type answerOrErr struct {
	status int
	raw    string
	err    error
}

func resp0(resp *http.Response, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

func (o *outcomes) count(status int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.status[status]
}

func (o *outcomes) snapshot() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return fmt.Sprintf("answers %v, refused %d, failed %d", o.status, o.refused, len(o.failures))
}

func (s *redisServe) readyzStatus() int {
	resp, err := http.Get("http://" + s.Token + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

var _ = context.Background
