package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore/redisstore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
	"github.com/regoauth/regoauth/keystore/storetest"
)

// TestConformanceAsARestrictedACLUser runs the suite as a Redis ACL user that reaches only the
// store's own keys and channels and may not run Redis's dangerous commands (FLUSHALL, CONFIG,
// KEYS, DEBUG, ...), as an operator should configure it: the store needs nothing more. The user
// is shown to be refused everything else, so the restriction is in force.
func TestConformanceAsARestrictedACLUser(t *testing.T) {
	// Every store of the suite has its own prefix t<N>, so its keys are {t<N>}:... .
	srv := redistest.Start(t, "--user", "regoauth", "on", ">acl-secret", "~{t*}:*", "&{t*}:*", "+@all", "-@dangerous")
	url := "redis://regoauth:acl-secret@" + srv.Addr + "/0"

	raw := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "regoauth", Password: "acl-secret"})
	t.Cleanup(func() { raw.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := raw.Set(ctx, "{t0}:probe", "x", 0).Err(); err != nil {
		t.Fatalf("the user writes its own keys: %v", err)
	}
	for name, err := range map[string]error{
		"another key":         raw.Get(ctx, "elsewhere").Err(),
		"another channel":     raw.Publish(ctx, "elsewhere", "x").Err(),
		"a dangerous command": raw.FlushAll(ctx).Err(),
	} {
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Fatalf("%s as the restricted user: %v, want NOPERM", name, err)
		}
	}

	for _, tt := range []struct {
		name string
		opts redisstore.Options
	}{
		{"uncached", redisstore.Options{}},
		{"cached", redisstore.Options{CacheTTL: time.Minute, CacheSize: 100, NegativeTTL: time.Minute}},
	} {
		t.Run(tt.name, func(t *testing.T) { storetest.Run(t, opener(url, tt.opts)) })
	}
}
