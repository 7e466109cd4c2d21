package isolation

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The shrinker keeps exactly the steps a failure needs, whatever surrounds them.
func TestShrinkKeepsOnlyTheStepsThatMatter(t *testing.T) {
	needed := []op{
		{Kind: "reserve", Actor: "root", Repo: "shop/app"},
		{Kind: "grant", Actor: "root", Account: "bob", Repo: "shop/app", Actions: []string{"pull"}},
		{Kind: "release", Actor: "root", Repo: "shop/app"},
	}
	g := &generator{r: rand.New(rand.NewPCG(1, 2))}
	m := newRootedModel(library)
	var ops []op
	for i := range 60 {
		o := g.op(m)
		m.runs(o)
		ops = append(ops, o)
		if i%20 == 5 {
			ops = append(ops, needed[i/20])
		}
	}
	// A failure that shows once the three needed steps have run, in order.
	fails := func(seq []op) *divergence {
		next := 0
		for i, o := range seq {
			if next < len(needed) && o.String() == needed[next].String() {
				next++
				if next == len(needed) {
					return &divergence{step: i, msg: "the release left the grant"}
				}
			}
		}
		return nil
	}
	shrunk, d := shrink(ops, fails, time.Now().Add(time.Minute))
	if d == nil || d.msg != "the release left the grant" {
		t.Fatalf("the shrunk sequence's divergence: %+v", d)
	}
	if !slices.EqualFunc(shrunk, needed, func(a, b op) bool { return a.String() == b.String() }) {
		t.Fatalf("%d steps shrank to:\n%s\nwant the 3 needed:\n%s", len(ops), numbered(shrunk), numbered(needed))
	}
}

// A rule deliberately left out of the model (owners may delete what they reserved) makes the
// test fail against the real server, and shrinking brings the random sequence that showed it
// down to the three steps it takes: an account, its key, a reservation for it.
func TestShrinkingABrokenModelRule(t *testing.T) {
	if testing.Short() {
		t.Skip("a real server and up to a few hundred replays")
	}
	cfg := config{backend: "bolt", bundle: library}
	dir := t.TempDir()
	deadline := time.Now().Add(time.Minute)
	for seed := uint64(1); time.Now().Before(deadline); seed++ {
		ops, _, d := explore(t, cfg, dir, seed, sequenceLength, deadline, "owners-never-delete")
		if d == nil {
			continue
		}
		shrunk, sd := shrink(ops, func(seq []op) *divergence {
			return replayWith(t, cfg, dir, seq, "owners-never-delete")
		}, deadline)
		t.Logf("seed %d: %d steps, the first divergence at step %d; shrunk to %d:\n%s%s", seed, len(ops), d.step+1, len(shrunk), numbered(shrunk), sd.msg)
		if len(shrunk) != 3 {
			t.Fatalf("shrunk to %d steps, want the 3 it takes", len(shrunk))
		}
		if replay(t, cfg, dir, shrunk) != nil {
			t.Fatal("the shrunk sequence fails with the model unbroken too")
		}
		return
	}
	t.Fatal("no sequence showed the broken rule")
}
