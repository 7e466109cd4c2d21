package redisstore

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	up            prometheus.Gauge
	unavailable   *prometheus.CounterVec
	cache         *prometheus.CounterVec
	invalidations prometheus.Counter
	listening     prometheus.Gauge
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
			Help: "Principal cache lookups by result: hit, miss, or bypass (the invalidation channel is not proven alive).",
		}, []string{"result"}),
		invalidations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "invalidations_received_total",
			Help: "Invalidation messages received from other replicas (and this one).",
		}),
		listening: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "regoauth", Subsystem: "store", Name: "invalidation_channel_up",
			Help: "1 while the invalidation channel is subscribed and answered a ping within the last second; the cache serves only then.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.up, m.unavailable, m.cache, m.invalidations, m.listening)
	}
	return m
}
