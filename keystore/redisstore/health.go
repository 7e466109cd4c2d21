package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

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
			Help: "Principal cache lookups by result: hit, negative_hit (a key id known not to exist), miss, or bypass (the invalidation channel is not proven alive).",
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

// health remembers whether Redis answered the last operation, so that the moment it stops (and
// the moment it returns) is logged once with the reason, not on every request.
type health struct {
	logger  *slog.Logger
	metrics *metrics
	mu      sync.Mutex
	isDown  bool
}

func (h *health) init(logger *slog.Logger, m *metrics) {
	h.logger, h.metrics = logger, m
	m.up.Set(1)
}

func (h *health) up() {
	h.mu.Lock()
	was := h.isDown
	h.isDown = false
	h.mu.Unlock()
	if was {
		h.metrics.up.Set(1)
		h.logger.Info("redis store reachable again; serving tokens")
	}
}

func (h *health) down(op string, err error) {
	h.metrics.unavailable.WithLabelValues(op).Inc()
	h.mu.Lock()
	was := h.isDown
	h.isDown = true
	h.mu.Unlock()
	if !was {
		h.metrics.up.Set(0)
		h.logger.Error("redis store unreachable; token requests fail closed (503, no token) until it returns", "operation", op, "error", err)
	}
}

// clientLog sends go-redis' own messages (one per failed dial, while Redis is down) to slog at
// debug level: the store already logs an outage once, with its reason.
type clientLog struct{ logger *slog.Logger }

func (l clientLog) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
}

// RouteClientLogs sends the messages go-redis writes to its process-wide logger to logger. A
// program calls it once, before opening stores.
func RouteClientLogs(logger *slog.Logger) { redis.SetLogger(clientLog{logger}) }
