package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regoauth/regoauth/keystore"
)

// Confirm makes every change wait until Redis replicas have it. Redis replicates
// asynchronously: a primary acknowledges a write before any replica holds it, so a revocation
// acknowledged just before the primary fails can be lost when a replica takes its place, and
// the revoked key works again. With Replicas set, each write is followed on the same
// connection by WAIT, and a write fewer replicas confirmed within Timeout is
// keystore.ErrUnconfirmed: it was made on the primary, but the caller is told it may not last.
//
// Failure budgets and last-used times are not confirmed: losing a few of them costs nothing.
type Confirm struct {
	// Replicas is how many replicas must confirm each change; 0 waits for none.
	Replicas int
	// Timeout bounds the wait (default DefaultConfirmTimeout).
	Timeout time.Duration
}

// DefaultConfirmTimeout bounds the wait for replicas when the URL does not say.
const DefaultConfirmTimeout = time.Second

// MaxConfirmTimeout bounds confirm_timeout: an administrator's request waits this long at most
// for replicas that do not answer.
const MaxConfirmTimeout = 10 * time.Second

// on reports whether writes wait for replicas.
func (c Confirm) on() bool { return c.Replicas > 0 }

// check validates a Confirm read from a URL.
func (c Confirm) check() error {
	switch {
	case c.Replicas < 0 || c.Replicas > 100:
		return fmt.Errorf("confirm_replicas: use 0 to 100 replicas, not %d", c.Replicas)
	case c.Timeout < 10*time.Millisecond || c.Timeout > MaxConfirmTimeout:
		return fmt.Errorf("confirm_timeout: use 10ms to %s, not %s", MaxConfirmTimeout, c.Timeout)
	}
	return nil
}

// primary is a connection to the primary holding the store's keys (all in one Cluster slot),
// on which a write and the WAIT after it must both run: WAIT waits for the writes of its own
// connection.
func (s *Store) primary(ctx context.Context) (*redis.Conn, error) {
	switch c := s.client.(type) {
	case *redis.Client: // standalone, and Sentinel's failover client (always the primary)
		return c.Conn(), nil
	case *redis.ClusterClient:
		node, err := c.MasterForKey(ctx, s.prefix)
		if err != nil {
			return nil, err
		}
		return node.Conn(), nil
	}
	return nil, fmt.Errorf("confirming writes needs a standalone, Sentinel or Cluster client, not %T", s.client)
}

// writer is what a change runs on: the store's client, or one connection to the primary.
type writer interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
}

// exec runs a change: with the store's client, or, when changes are confirmed, on a connection
// to the primary followed by WAIT. A change that failed is not waited for.
func (s *Store) exec(ctx context.Context, change func(writer) error) error {
	if !s.confirm.on() {
		return change(s.client)
	}
	conn, err := s.primary(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := change(conn); err != nil {
		return err
	}
	return s.waitReplicas(ctx, conn)
}

// Confirm waits until the replicas hold every change the primary took so far, and is
// keystore.ErrUnconfirmed when fewer than Replicas do in time. An import that finds every record
// already present writes nothing to wait for, though an earlier run may have written them
// unconfirmed: it asks this instead. Without confirm_replicas it does nothing.
func (s *Store) Confirm(ctx context.Context) error {
	if !s.confirm.on() {
		return nil
	}
	// WAIT counts the replicas holding its connection's last write, and a connection that wrote
	// nothing has none: every replica still connected, a stalled one too, would count. A marker
	// written first (gone a second later) makes that write now, after every earlier change.
	return s.fail("confirm", s.exec(ctx, func(c writer) error {
		return confirmMarker.Run(ctx, c, []string{s.prefix + "confirmed"}).Err()
	}), nil)
}

// waitReplicas waits on conn for the replicas to confirm its writes.
func (s *Store) waitReplicas(ctx context.Context, conn *redis.Conn) error {
	start := time.Now()
	n, err := conn.Wait(ctx, s.confirm.Replicas, s.confirm.Timeout).Result()
	s.metrics.confirmWait.Observe(time.Since(start).Seconds())
	if demoted(err) {
		s.metrics.unconfirmed.Inc()
		return fmt.Errorf("%w: the primary was made a replica while waiting for them: %v", keystore.ErrUnconfirmed, err)
	}
	if err != nil {
		return err
	}
	if n < int64(s.confirm.Replicas) {
		s.metrics.unconfirmed.Inc()
		return fmt.Errorf("%w: %d of %d replicas within %s", keystore.ErrUnconfirmed, n, s.confirm.Replicas, s.confirm.Timeout)
	}
	return nil
}

// demoted tells WAIT refused because the server stopped being a primary: made a replica while the
// change waited, it unblocks the WAIT with UNBLOCKED; made one between the change and the WAIT,
// it refuses WAIT on a replica. Either way the change was made on it and no replica confirmed it
// (as a replica it may well drop it): unconfirmed, not a failure of the store's own. Sentinel
// closes the connections of a primary it demotes instead, which reads as the store unavailable.
func demoted(err error) bool {
	return redis.HasErrorPrefix(err, "UNBLOCKED") || redis.HasErrorPrefix(err, "WAIT cannot be used with replica")
}
