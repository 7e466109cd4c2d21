package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGrantEnds: a grant added with --expires gives its actions until then and nothing from
// then on, on a running server with its principal cache and decision cache on; listing shows
// the end; --until takes a date.
func TestGrantEnds(t *testing.T) {
	d := startDev(t, "")
	buyer := d.account(t, "buyer")
	d.cli(t, d.AdminKey, "grants", "add", "--account", "buyer", "--repo", "shop/app", "--actions", "pull", "--expires", "3s")
	start := time.Now()
	out := d.cli(t, d.AdminKey, "grants", "list", "--account", "buyer")
	if !strings.Contains(out, "ENDS") || !strings.Contains(out, time.Now().UTC().Format("2006-01-02T")) {
		t.Fatalf("grants list does not show the end:\n%s", out)
	}
	// Asked repeatedly, so that both caches hold the principal and the decision.
	for range 3 {
		if got := d.actions(t, "buyer", buyer, "repository:shop/app:pull"); !slices.Equal(got, []string{"pull"}) {
			t.Fatalf("before the end: %v", got)
		}
	}
	// The server set the end before the command returned, so it has passed once start+3s has:
	// the very next request gets nothing, whatever either cache holds.
	time.Sleep(time.Until(start.Add(3 * time.Second)))
	if got := d.actions(t, "buyer", buyer, "repository:shop/app:pull"); len(got) != 0 {
		t.Fatalf("after the end the grant still gives %v", got)
	}

	d.cli(t, d.AdminKey, "grants", "add", "--account", "buyer", "--repo", "shop/tool", "--actions", "pull", "--until", "2099-03-01")
	if out := d.cli(t, d.AdminKey, "grants", "list", "--account", "buyer"); !strings.Contains(out, "2099-03-01T00:00:00Z") {
		t.Fatalf("--until 2099-03-01 lists as:\n%s", out)
	}
}
