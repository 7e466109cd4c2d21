package keystore

import (
	"slices"
	"testing"
	"time"
)

// TestDeadKeysBeyond: live keys are never chosen; dead ones go oldest first by the last instant
// each is known to have worked — its expiry, or for a revoked key its last use or its creation —
// so that a key used for years and revoked yesterday outlasts keys made and revoked since.
func TestDeadKeysBeyond(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	day := func(n int) time.Time { return now.AddDate(0, 0, n) }
	keys := []Key{
		{ID: "live", Created: day(-400)},
		{ID: "live-expiring", Created: day(-400), Expires: day(1)},
		{ID: "old-but-used", Created: day(-300), LastUsed: day(-1), Revoked: true},
		{ID: "revoked-10", Created: day(-10), Revoked: true},
		{ID: "revoked-20", Created: day(-20), Revoked: true},
		{ID: "expired-5", Created: day(-30), Expires: day(-5)},
		{ID: "expired-now", Created: day(-30), Expires: now},
		{ID: "revoked-expired", Created: day(-50), Expires: day(-40), Revoked: true},
		// The same instants: by creation, then by id.
		{ID: "b-tie", Created: day(-60), Revoked: true},
		{ID: "a-tie", Created: day(-60), Revoked: true},
	}
	for _, tt := range []struct {
		keep int
		want []string
	}{
		{100, nil},
		{8, nil},
		{7, []string{"a-tie"}},
		{5, []string{"a-tie", "b-tie", "revoked-expired"}},
		{2, []string{"a-tie", "b-tie", "revoked-expired", "revoked-20", "revoked-10", "expired-5"}},
		{0, []string{"a-tie", "b-tie", "revoked-expired", "revoked-20", "revoked-10", "expired-5", "old-but-used", "expired-now"}},
		{-1, []string{"a-tie", "b-tie", "revoked-expired", "revoked-20", "revoked-10", "expired-5", "old-but-used", "expired-now"}},
	} {
		if got := DeadKeysBeyond(keys, now, tt.keep); !slices.Equal(got, tt.want) {
			t.Errorf("keeping %d: %v, want %v", tt.keep, got, tt.want)
		}
	}
}
