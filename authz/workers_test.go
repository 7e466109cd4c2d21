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
