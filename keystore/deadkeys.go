package keystore

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// DeadKeysKept is how many dead keys (revoked, or expired) an account keeps. Revoking a key
// keeps its record, so that the account and its admins still see what it was; without a bound an
// account revoking the keys it creates, in a loop, would grow the store without end. Creating or
// revoking a key removes the account's dead keys beyond the newest DeadKeysKept
// (DeadKeysBeyond).
const DeadKeysKept = 100

// lastWorked is the last instant a dead key is known to have worked: the expiry of a key that
// expired unrevoked; for a revoked key, whose revocation time is not recorded, its last use, or
// its creation when it was never used.
func (k Key) lastWorked() time.Time {
	if !k.Revoked {
		return k.Expires
	}
	if k.LastUsed.After(k.Created) {
		return k.LastUsed
	}
	return k.Created
}

// DeadKeysBeyond returns the ids of the keys among keys that are dead at now and beyond the
// newest keep of them, oldest first. Dead keys are ordered by the last instant each is known to
// have worked (its expiry, or for a revoked key its last use or its creation), then by creation,
// then by id: the keys kept are those that stopped working most recently. Live keys are never
// among the ids.
func DeadKeysBeyond(keys []Key, now time.Time, keep int) []string {
	keep = max(keep, 0)
	var dead []Key
	for _, k := range keys {
		if !k.Live(now) {
			dead = append(dead, k)
		}
	}
	if len(dead) <= keep {
		return nil
	}
	slices.SortFunc(dead, func(a, b Key) int {
		return cmp.Or(a.lastWorked().Compare(b.lastWorked()), a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	ids := make([]string, 0, len(dead)-keep)
	for _, k := range dead[:len(dead)-keep] {
		ids = append(ids, k.ID)
	}
	return ids
}
