package redisstore

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	up            prometheus.Gauge
	unavailable   *prometheus.CounterVec
	cache         *prometheus.CounterVec
	invalidations prometheus.Counter
	listening     prometheus.Gauge
	confirmWait   prometheus.Histogram
	unconfirmed   prometheus.Counter
	recordsLost   prometheus.Counter
	evicting      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "up",
			Help: "1 when the last Redis operation reached Redis, 0 when it could not (token requests then fail closed).",
		}),
		unavailable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "unavailable_total",
			Help: "Redis operations that failed because Redis could not be reached or was not ready, by operation.",
		}, []string{"operation"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "cache_lookups_total",
			Help: "Principal cache lookups by result: hit, negative_hit (a key id known not to exist), miss, or bypass (the invalidation channel is not proven alive).",
		}, []string{"result"}),
		invalidations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "invalidations_received_total",
			Help: "Invalidation messages received from other replicas (and this one).",
		}),
		listening: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "invalidation_channel_up",
			Help: "1 while the invalidation channel is subscribed and its own probe came back within the last second; the cache serves only then.",
		}),
		confirmWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "replica_wait_seconds",
			Help:    "How long changes waited for replicas to confirm them (confirm_replicas).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		unconfirmed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "unconfirmed_writes_total",
			Help: "Changes made on the primary that fewer replicas than confirm_replicas confirmed in time; the caller was told to check and repeat them.",
		}),
		recordsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "records_lost_total",
			Help: "Times the store found its records gone from Redis (a restart without persistence, a flush, a failover to an empty replica).",
		}),
		evicting: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "evicting",
			Help: "1 when Redis' maxmemory-policy is not noeviction, so that a full Redis drops records without a word.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.up, m.unavailable, m.cache, m.invalidations, m.listening, m.confirmWait, m.unconfirmed, m.recordsLost, m.evicting)
	}
	return m
}
