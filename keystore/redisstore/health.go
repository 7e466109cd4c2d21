package redisstore

import (
	"log/slog"
	"sync"
)

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
