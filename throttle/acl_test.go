package throttle_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/throttle"
)

// TestRedisBudgetsAsARestrictedACLUser: the budgets work for a Redis ACL user limited to what
// docs/security.md tells operators to allow: the store's prefix, and redis_rate's keys, which it
// names "rate:" + key, so "rate:{PREFIX}:*". A user without the second pattern would leave every
// budget unreadable, and unreadable budgets allow every attempt.
func TestRedisBudgetsAsARestrictedACLUser(t *testing.T) {
	srv := redistest.Start(t, "--user", "regoauth", "on", ">acl-secret", "~{test}:*", "~rate:{test}:*", "&{test}:*", "+@all", "-@dangerous")
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "regoauth", Password: "acl-secret"})
	limits := throttle.Limits{Address: throttle.Limit{Burst: 2, Every: time.Minute}}
	b := throttle.NewRedis(client, throttle.RedisOptions{Prefix: "{test}:", Forget: limits.Refill()})
	t.Cleanup(func() { b.Close(); client.Close() })
	waitLive(t, b)
	g := throttle.NewGuard(b, limits, nil, nil)
	for i := range 2 {
		if err := fail(t, g, attacker, ""); err != nil {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	wantThrottled(t, g.Allow(ctx, attacker, ""), throttle.ByAddress)
}
