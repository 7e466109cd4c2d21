package policy

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/prometheus/client_golang/prometheus"
)

func cachedEngine(t *testing.T, rego string) (*Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	e := New(Options{DecisionCacheBytes: 1 << 20, Registerer: reg})
	if err := e.LoadFS(ctx, fstest.MapFS{"p.rego": {Data: []byte(rego)}}, "t"); err != nil {
		t.Fatal(err)
	}
	return e, reg
}

func cacheCount(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "regoauth_policy_decision_cache_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// The allowed actions come from data, so a data change must reach the very next decision.
const dataPolicy = `package regoauth.authz
decision := {"access": [{"type": s.type, "name": s.name, "actions": [a | some a in s.actions; a in data.allowed]} | some s in input.scopes]}
`

func TestDecisionCacheServesRepeatsAndForgetsOnDataChange(t *testing.T) {
	e, reg := cachedEngine(t, dataPolicy)
	write := func(v any) {
		t.Helper()
		if err := storage.WriteOne(context.Background(), e.store, storage.AddOp, storage.MustParsePath("/allowed"), v); err != nil {
			t.Fatal(err)
		}
	}
	write([]any{"pull"})
	decide := func() []string {
		t.Helper()
		d, err := e.Decide(ctx, storyInput())
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed("repository", "image")
	}
	// Kept the second time it is evaluated, then served.
	for range 4 {
		if got := decide(); len(got) != 1 || got[0] != "pull" {
			t.Fatalf("allowed = %v", got)
		}
	}
	if hits := cacheCount(t, reg, "hit"); hits != 2 {
		t.Fatalf("cache hits = %v, want 2", hits)
	}
	write([]any{"pull", "push"})
	if got := decide(); len(got) != 2 {
		t.Fatalf("after the data change, allowed = %v: a stale decision was served", got)
	}
	// A different input is a different decision.
	in := storyInput()
	in.Scopes[0].Name = "other"
	if d, _ := e.Decide(ctx, in); len(d.Allowed("repository", "other")) != 2 || len(d.Allowed("repository", "image")) != 0 {
		t.Fatalf("decision for another input = %+v", d)
	}
}

func TestDecisionCacheSkipsNondeterministicPolicies(t *testing.T) {
	e, reg := cachedEngine(t, `package regoauth.authz
decision := {"access": [], "reasons": [sprintf("%d", [time.now_ns()])]}
`)
	first, _ := e.Decide(ctx, storyInput())
	second, _ := e.Decide(ctx, storyInput())
	if first.Reasons[0] == second.Reasons[0] || cacheCount(t, reg, "hit") != 0 {
		t.Fatalf("a policy calling time.now_ns was answered from the cache: %v %v", first.Reasons, second.Reasons)
	}
}

func TestDecisionCacheOff(t *testing.T) {
	e := New(Options{})
	if e.cache != nil {
		t.Fatal("a cache without DecisionCache")
	}
	if err := e.LoadFS(ctx, fstest.MapFS{"p.rego": {Data: []byte(dataPolicy)}}, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Decide(ctx, storyInput()); err != nil {
		t.Fatal(err)
	}
}

// A policy may reason about a grant's end; a row with another end (a purchase renewed or cut
// short) is another input, never answered from a decision cached for the old one.
const endPolicy = `package regoauth.authz
decision := {"access": [{"type": s.type, "name": s.name, "actions": [a | some a in s.actions; some g in input.grants; g.repository == s.name; a in g.actions; not g.expires]} | some s in input.scopes]}
`

func TestDecisionCacheKeysOnGrantEnds(t *testing.T) {
	e, reg := cachedEngine(t, endPolicy)
	decide := func(end string) []string {
		t.Helper()
		in := storyInput()
		in.Grants[0].Expires = end
		d, err := e.Decide(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed("repository", "image")
	}
	if got := decide(""); len(got) != 1 {
		t.Fatalf("allowed without an end = %v", got)
	}
	if got := decide("2026-12-31T00:00:00Z"); len(got) != 0 {
		t.Fatalf("allowed with an end = %v: the decision cached for the row without one was served", got)
	}
	if hits := cacheCount(t, reg, "hit"); hits != 0 {
		t.Fatalf("cache hits = %v, want 0", hits)
	}
}

// TestDecisionCacheKeepsOnlyRepeatedInputs: an input evaluated once is remembered by its hash
// alone; the second evaluation keeps the decision and the third is served from it.
func TestDecisionCacheKeepsOnlyRepeatedInputs(t *testing.T) {
	e, reg := cachedEngine(t, dataPolicy)
	for i := range 500 {
		in := storyInput()
		in.Scopes[0].Name = fmt.Sprintf("image%d", i)
		if _, err := e.Decide(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if n, size := e.cache.lru.Len(), e.cache.size(); n != 0 || size != 0 {
		t.Fatalf("500 inputs seen once left %d entries (%d bytes) in the cache", n, size)
	}
	for range 3 {
		if _, err := e.Decide(ctx, storyInput()); err != nil {
			t.Fatal(err)
		}
	}
	if n, hits := e.cache.lru.Len(), cacheCount(t, reg, "hit"); n != 1 || hits != 1 {
		t.Fatalf("an input seen three times: %d entries, %v hits; want 1 and 1", n, hits)
	}
}
