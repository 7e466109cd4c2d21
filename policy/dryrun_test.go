package policy

import (
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestDryRunReportsDisagreements(t *testing.T) {
	var logs logBuffer
	reg := prometheus.NewRegistry()
	active := New(Options{Logger: logs.logger(), Registerer: reg})
	if err := active.LoadFS(ctx, genFS(1, "pull"), "active"); err != nil {
		t.Fatal(err)
	}
	candidate := New(Options{})
	if err := candidate.LoadFS(ctx, fstest.MapFS{"p.rego": {Data: []byte(`package regoauth.authz

decision := {"access": [{"type": s.type, "name": s.name, "actions": actions(s)} | some s in input.scopes]}

actions(s) := ["pull"] if s.name != "secret"

actions(s) := [] if s.name == "secret"
`)}}, "candidate"); err != nil {
		t.Fatal(err)
	}
	active.DryRun(candidate)
	for _, name := range []string{"image", "secret", "image"} {
		d, err := active.Decide(ctx, &Input{Principal: Principal{Account: "user1"}, Scopes: []Scope{{Type: "repository", Name: name, Actions: []string{"pull"}}}})
		if err != nil {
			t.Fatal(err)
		}
		// The active policy decides, whatever the candidate says.
		if got := d.Allowed("repository", name); len(got) != 1 || got[0] != "pull" {
			t.Fatalf("%s: %v", name, got)
		}
	}
	active.Stop(ctx) // waits for the queued comparisons
	agree := testutil.ToFloat64(active.metrics.dryRun.WithLabelValues("authz", "agree"))
	disagree := testutil.ToFloat64(active.metrics.dryRun.WithLabelValues("authz", "disagree"))
	if agree != 2 || disagree != 1 {
		t.Fatalf("agree=%v disagree=%v, want 2 and 1", agree, disagree)
	}
	lines := logs.lines("dry-run disagreement")
	if len(lines) != 1 {
		t.Fatalf("%d disagreement lines:\n%s", len(lines), logs.String())
	}
	l := lines[0]
	if l["active"] != "repository:secret:pull" || l["candidate"] != "repository:secret:" || l["account"] != "user1" || l["decision_id"] == "" {
		t.Fatalf("disagreement = %v", l)
	}
}

func TestDryRunCandidateNotReadyCountsErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	active := New(Options{Registerer: reg})
	if err := active.LoadFS(ctx, genFS(1, "pull"), "active"); err != nil {
		t.Fatal(err)
	}
	active.DryRun(New(Options{}))
	if _, err := active.Decide(ctx, &Input{Scopes: []Scope{{Type: "repository", Name: "x", Actions: []string{"pull"}}}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { active.Stop(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop hung")
	}
	if n := testutil.ToFloat64(active.metrics.dryRun.WithLabelValues("authz", "error")); n != 1 {
		t.Fatalf("errors = %v", n)
	}
}
