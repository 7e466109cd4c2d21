package storetest

import (
	"crypto/sha256"
	"encoding/hex"
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
	must(t, s.CreateSession(ctx, sess))
	wantErr(t, s.CreateSession(ctx, sess), keystore.ErrExists)
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
	must(t, s.CreateSession(ctx, two))
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
		t.Run(name, func(t *testing.T) { wantErr(t, s.CreateSession(ctx, bad), keystore.ErrInvalid) })
	}
}
