package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
)

// TestRunSmall runs the whole benchmark at a small scale, so that the script keeps working: it
// must load both stores, get a token for every request, and report figures and ratios. The 20%
// claim itself is for bench/redis-scale.sh on a quiet machine, not for a test on a busy one.
func TestRunSmall(t *testing.T) {
	redisServer := redistest.Program(t, "redis-server")
	bin := filepath.Join(t.TempDir(), "regoauth")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/regoauth").CombinedOutput(); err != nil {
		t.Fatalf("building regoauth: %v\n%s", err, out)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Regoauth: bin, RedisServer: redisServer, Baseline: 100, Keys: 5000, KeysPerAccount: 10,
		Rounds: 2, PerRound: 50, Workers: 2, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Small.Keys != 100 || rep.Large.Keys != 5000 || rep.Small.P50 <= 0 || rep.Large.P90 < rep.Large.P50 ||
		rep.Small.RSSKiB <= 0 || rep.RSSRatio <= 0 || rep.LatencyRatio <= 0 {
		t.Fatalf("report = %+v", rep)
	}
	for _, want := range []string{"latency ratio", "memory ratio", "baseline", "large"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}
