package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
)

func sessionID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// testSessions checks console sessions: stored and read back whole, gone at their expiry by the
// store's clock, gone at once when deleted, ids unique, bad records refused.
func testSessions(t *testing.T, s keystore.Store, c *clock) {
	k, _ := NewKey(t, "alice")
	sess := keystore.Session{ID: sessionID("one"), KeyID: k.ID, Account: "alice", Created: now, Expires: now.Add(time.Hour)}
	must(t, s.CreateSession(ctx, sess, 0))
	wantErr(t, s.CreateSession(ctx, sess, 0), keystore.ErrExists)
	got, err := s.GetSession(ctx, sess.ID)
	must(t, err)
	if got.ID != sess.ID || got.KeyID != k.ID || got.Account != "alice" || !got.Created.Equal(now) || !got.Expires.Equal(sess.Expires) {
		t.Fatalf("GetSession = %+v, want %+v", got, sess)
	}
	_, err = s.GetSession(ctx, sessionID("other"))
	wantErr(t, err, keystore.ErrNotFound)

	c.Set(sess.Expires.Add(-time.Nanosecond))
	if _, err := s.GetSession(ctx, sess.ID); err != nil {
		t.Fatalf("a nanosecond before its expiry: %v", err)
	}
	c.Set(sess.Expires)
	_, err = s.GetSession(ctx, sess.ID)
	wantErr(t, err, keystore.ErrNotFound)

	two := keystore.Session{ID: sessionID("two"), KeyID: k.ID, Account: "alice", Created: sess.Expires, Expires: sess.Expires.Add(time.Hour)}
	must(t, s.CreateSession(ctx, two, 0))
	must(t, s.DeleteSession(ctx, two.ID))
	_, err = s.GetSession(ctx, two.ID)
	wantErr(t, err, keystore.ErrNotFound)
	must(t, s.DeleteSession(ctx, two.ID)) // ending it twice is fine

	for name, bad := range map[string]keystore.Session{
		"id not a hash":  {ID: "x", KeyID: k.ID, Account: "alice", Created: now, Expires: now.Add(time.Hour)},
		"no expiry":      {ID: sessionID("3"), KeyID: k.ID, Account: "alice", Created: now},
		"bad key id":     {ID: sessionID("4"), KeyID: "nope", Account: "alice", Created: now, Expires: now.Add(time.Hour)},
		"bad account":    {ID: sessionID("5"), KeyID: k.ID, Account: "Alice!", Created: now, Expires: now.Add(time.Hour)},
		"ends too early": {ID: sessionID("6"), KeyID: k.ID, Account: "alice", Created: now, Expires: now},
	} {
		t.Run(name, func(t *testing.T) { wantErr(t, s.CreateSession(ctx, bad, 0), keystore.ErrInvalid) })
	}
}

// testSessionsPerAccount checks the bound on an account's live sessions: past it, creating one
// ends those that would end first, of that account only; ended, deleted and expired sessions
// leave room; 0 is no bound.
func testSessionsPerAccount(t *testing.T, s keystore.Store, c *clock) {
	c.Set(now)
	k, _ := NewKey(t, "alice")
	at := func(name, account string, created, ends time.Duration) keystore.Session {
		return keystore.Session{ID: sessionID(name), KeyID: k.ID, Account: account, Created: now.Add(created), Expires: now.Add(ends)}
	}
	live := func(names ...string) {
		t.Helper()
		for _, n := range names {
			if _, err := s.GetSession(ctx, sessionID(n)); err != nil {
				t.Fatalf("session %s: %v, want it live", n, err)
			}
		}
	}
	ended := func(names ...string) {
		t.Helper()
		for _, n := range names {
			if _, err := s.GetSession(ctx, sessionID(n)); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("session %s: %v, want it ended", n, err)
			}
		}
	}
	const most = 3
	for i := 1; i <= 5; i++ {
		must(t, s.CreateSession(ctx, at(fmt.Sprint("a", i), "alice", time.Duration(i)*time.Minute, time.Hour+time.Duration(i)*time.Minute), most))
		if i == 2 {
			must(t, s.CreateSession(ctx, at("b1", "bob", 0, time.Hour), most))
			must(t, s.CreateSession(ctx, at("b2", "bob", 0, time.Hour), most))
		}
	}
	ended("a1", "a2")
	live("a3", "a4", "a5", "b1", "b2")

	// The one that ends first goes, whenever it began; the new one stays even if it ends
	// sooner still.
	must(t, s.CreateSession(ctx, at("a6", "alice", 10*time.Minute, 30*time.Minute), most))
	ended("a3")
	live("a4", "a5", "a6")

	// A deleted session leaves room.
	must(t, s.DeleteSession(ctx, sessionID("a4")))
	must(t, s.CreateSession(ctx, at("a7", "alice", 11*time.Minute, 2*time.Hour), most))
	live("a5", "a6", "a7")

	// So does an expired one.
	c.Set(now.Add(31 * time.Minute))
	must(t, s.CreateSession(ctx, at("a8", "alice", 31*time.Minute, 2*time.Hour), most))
	live("a5", "a7", "a8", "b1", "b2")

	// 0 is no bound.
	for i := range 2 * most {
		must(t, s.CreateSession(ctx, at(fmt.Sprint("c", i), "carol", 31*time.Minute, time.Hour), 0))
	}
	for i := range 2 * most {
		live(fmt.Sprint("c", i))
	}
	live("a5", "a7", "a8")
}
