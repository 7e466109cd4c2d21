package redissub

import (
	"testing"
	"time"
)

// TestLiveness moves an injected clock: alive only while subscribed and within MaxSilence of
// the subscription or the last pong.
func TestLiveness(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := &Liveness{Now: func() time.Time { return clock }}
	if l.Alive() {
		t.Fatal("alive before any subscription")
	}
	l.SetSubscribed(true)
	if !l.Alive() {
		t.Fatal("not alive once subscribed")
	}
	clock = clock.Add(MaxSilence - time.Millisecond)
	l.Pong()
	clock = clock.Add(MaxSilence - time.Millisecond)
	if !l.Alive() {
		t.Fatal("a pong did not extend the liveness")
	}
	clock = clock.Add(time.Millisecond)
	if l.Alive() {
		t.Fatalf("alive after %v without a pong", MaxSilence)
	}
	l.Pong()
	l.SetSubscribed(false)
	if l.Alive() {
		t.Fatal("alive after the subscription dropped")
	}
}
