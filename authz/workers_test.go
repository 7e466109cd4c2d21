package authz_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/regoauth/regoauth/authz"
	"github.com/regoauth/regoauth/policy"
)

// heldDecider tells which request entered the decision and holds it there until released.
type heldDecider struct {
	inner   authz.Decider
	entered chan string
	release chan struct{}
}

func (d *heldDecider) Decide(ctx context.Context, in *policy.Input) (policy.Decision, error) {
	d.entered <- in.Scopes[0].Name
	<-d.release
	return d.inner.Decide(ctx, in)
}

// TestDecisionWorkersTakeTurnsInOrder: with one decision worker, requests are decided one at a
// time, in the order they came, each getting its own token; a request whose client gives up
// while it waits leaves with a 503 and is never decided.
func TestDecisionWorkersTakeTurnsInOrder(t *testing.T) {
	e := newEnv(t)
	d := &heldDecider{inner: e.Engine, entered: make(chan string, 10), release: make(chan struct{})}
	h := e.newHandler(authz.Deps{Decider: d}, authz.Options{DecisionWorkers: 1})
	statuses := make(chan int, 10)
	send := func(ctx context.Context, repo string) {
		r := httptest.NewRequestWithContext(ctx, "GET", "/token?"+q("repository:"+repo+":pull"), nil)
		r.SetBasicAuth("user1", e.keys["user1"])
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		statuses <- w.Code
	}
	go send(context.Background(), "first")
	if got := <-d.entered; got != "first" {
		t.Fatalf("entered %q, want first", got)
	}
	for _, repo := range []string{"second", "third"} {
		go send(context.Background(), repo)
		time.Sleep(100 * time.Millisecond) // each waits before the next arrives
	}
	gone, giveUp := context.WithCancel(context.Background())
	go send(gone, "abandoned")
	time.Sleep(100 * time.Millisecond)
	giveUp()
	if status := <-statuses; status != http.StatusServiceUnavailable {
		t.Fatalf("a request given up while waiting: status %d, want 503", status)
	}
	select {
	case got := <-d.entered:
		t.Fatalf("%q was decided while another request held the only worker", got)
	case <-time.After(100 * time.Millisecond):
	}
	for _, want := range []string{"second", "third"} {
		d.release <- struct{}{}
		if status := <-statuses; status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		if got := <-d.entered; got != want {
			t.Fatalf("entered %q, want %q: requests are decided in the order they came", got, want)
		}
	}
	d.release <- struct{}{}
	if status := <-statuses; status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	select {
	case got := <-d.entered:
		t.Fatalf("%q was decided after its client gave up", got)
	default:
	}
}

// stuckWriter is a client that never reads its response: every write blocks until released.
type stuckWriter struct {
	header  http.Header
	writing chan struct{}
	release chan struct{}
}

func (w *stuckWriter) Header() http.Header { return w.header }
func (w *stuckWriter) WriteHeader(int)     {}
func (w *stuckWriter) Write(p []byte) (int, error) {
	w.writing <- struct{}{}
	<-w.release
	return len(p), nil
}

// TestAClientThatDoesNotReadHoldsNoWorker: a response is written after its decision worker is
// given back, so a client that never reads what it asked for (its socket full) holds its own
// connection, not the one worker everyone else needs.
func TestAClientThatDoesNotReadHoldsNoWorker(t *testing.T) {
	e := newEnv(t)
	h := e.newHandler(authz.Deps{}, authz.Options{DecisionWorkers: 1})
	stuck := &stuckWriter{header: http.Header{}, writing: make(chan struct{}, 1), release: make(chan struct{})}
	defer close(stuck.release)
	r := httptest.NewRequest("GET", "/token?"+q("repository:image:pull"), nil)
	r.SetBasicAuth("user1", e.keys["user1"])
	go h.ServeHTTP(stuck, r)
	select {
	case <-stuck.writing:
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck client's response was never written")
	}
	served := make(chan int, 1)
	go func() {
		r := httptest.NewRequest("GET", "/token?"+q("repository:image:pull"), nil)
		r.SetBasicAuth("user1", e.keys["user1"])
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		served <- w.Code
	}()
	select {
	case code := <-served:
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a request waited for the worker held by a client that does not read")
	}
}
