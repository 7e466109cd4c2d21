package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
)

// TestRedisThatMayEvictIsRefused: a Redis whose maxmemory-policy lets it evict keys would drop
// API keys, grants, reservations and their indexes without a word once full (a released name's
// grants then pass to its next owner, a reservation can be taken by another account), so a
// server refuses to start on one, naming the policy and the fix. A real redis-server is set
// with each policy. A Redis user not allowed INFO cannot be checked: the server starts and
// warns.
func TestRedisThatMayEvictIsRefused(t *testing.T) {
	for _, policy := range []string{"allkeys-lru", "volatile-lru", "allkeys-random"} {
		t.Run(policy, func(t *testing.T) {
			srv := redistest.Start(t, "--maxmemory", "100mb", "--maxmemory-policy", policy)
			cfg := testConfig(t)
			cfg.Store.URL = Secret{Value: srv.URL()}
			s, err := New(ctx, cfg, Options{})
			if err == nil {
				s.Close()
				t.Fatalf("a server started on a Redis with maxmemory-policy %s", policy)
			}
			if msg := err.Error(); !strings.Contains(msg, "maxmemory-policy is "+policy) || !strings.Contains(msg, "set maxmemory-policy noeviction") {
				t.Fatalf("error = %q, want it to name the policy and the fix", msg)
			}
		})
	}
	t.Run("noeviction", func(t *testing.T) {
		srv := redistest.Start(t, "--maxmemory", "100mb", "--maxmemory-policy", "noeviction")
		cfg := testConfig(t)
		cfg.Store.URL = Secret{Value: srv.URL()}
		newServer(t, cfg)
	})
	t.Run("the documented Redis user", func(t *testing.T) {
		srv := redistest.Start(t, "--maxmemory-policy", "allkeys-lru",
			"--user", "regoauth", "on", ">acl-secret", "~{regoauth}:*", "~rate:{regoauth}:*", "&{regoauth}:*", "+@all", "-@dangerous", "+info")
		cfg := testConfig(t)
		cfg.Store.URL = Secret{Value: "redis://regoauth:acl-secret@" + srv.Addr + "/0"}
		if s, err := New(ctx, cfg, Options{}); err == nil || !strings.Contains(err.Error(), "maxmemory-policy is allkeys-lru") {
			if s != nil {
				s.Close()
			}
			t.Fatalf("New = %v, want the policy refused as the user of docs/security.md", err)
		}
	})
	t.Run("INFO not allowed", func(t *testing.T) {
		srv := redistest.Start(t, "--user", "regoauth", "on", ">acl-secret", "~{regoauth}:*", "&{regoauth}:*", "+@all", "-@dangerous")
		cfg := testConfig(t)
		cfg.Store.URL = Secret{Value: "redis://regoauth:acl-secret@" + srv.Addr + "/0"}
		var logs bytes.Buffer
		s, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if !strings.Contains(logs.String(), "make sure its maxmemory-policy is noeviction") || strings.Contains(logs.String(), "acl-secret") {
			t.Fatalf("log = %s, want one warning that the policy could not be checked, without the password", logs.String())
		}
	})
}
