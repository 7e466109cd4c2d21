package redisstore

import "context"

// The cache is only as good as its invalidation channel. Every write publishes a message in the
// same script, and each replica's listener evicts what it names. The channel is a
// redissub.Liveness: alive while pongs keep coming, so no invalidation can be pending longer
// than a ping period. When no pong has come for redissub.MaxSilence, or the subscription drops,
// the cache is bypassed (and emptied) until the channel is back: a replica that cannot hear
// revocations never serves from memory.

// subscribed records the channel's state. Any change empties the cache, because messages may
// have been missed while it was down; the purge comes after the change, so a lookup that read
// the cache's epoch before it does not keep what it loaded.
func (s *Store) subscribed(on bool) {
	s.live.SetSubscribed(on)
	s.cache.Purge()
}

// watch listens to the invalidation channel until ctx ends; every new subscription
// confirmation starts from an empty cache.
func (s *Store) watch(ctx context.Context) {
	s.live.Watch(ctx, s.client, s.channel, func(up bool) {
		s.subscribed(up)
		if up {
			s.metrics.listening.Set(1)
		} else {
			s.metrics.listening.Set(0)
		}
	}, func(payload string) {
		s.metrics.invalidations.Inc()
		s.changed(payload)
	})
}
