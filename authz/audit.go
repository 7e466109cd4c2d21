package authz

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/policy"
)

// event is what one token request did: one audit log line and the metrics.
type event struct {
	method, service, clientID, clientIP string
	grant                               string // anonymous, password or refresh_token
	account, keyID                      string
	decisionID                          string
	requested, granted                  []policy.Scope
	status                              int
	err                                 error
	duration                            time.Duration
}

func (e event) outcome() string {
	switch e.status {
	case http.StatusOK:
		return "issued"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusTooManyRequests:
		return "throttled"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	if e.status >= 500 {
		return "error"
	}
	return "rejected"
}

// log writes the audit event. It never carries a secret: keys appear by id only, and error
// texts of the token path are built without credentials.
func (h *Handler) log(e event) {
	level := slog.LevelInfo
	if e.status >= 500 {
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("outcome", e.outcome()),
		slog.Int("status", e.status),
		slog.String("method", e.method),
		slog.String("service", e.service),
		slog.String("client_ip", e.clientIP),
		slog.String("client_id", e.clientID),
		slog.String("grant", e.grant),
		slog.String("account", e.account),
		slog.String("key_id", e.keyID),
		slog.String("decision_id", e.decisionID),
		slog.String("requested", scopeString(e.requested)),
		slog.String("granted", scopeString(e.granted)),
		slog.Duration("duration", e.duration),
	}
	if e.err != nil {
		attrs = append(attrs, slog.String("error", e.err.Error()))
	}
	h.opts.Logger.LogAttrs(context.Background(), level, "token request", attrs...)
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	stages   *prometheus.HistogramVec
	actions  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	buckets := []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "token", Name: "requests_total",
			Help: "Token requests by method, outcome (issued, unauthorized, throttled, rejected, unavailable, error) and status code.",
		}, []string{"method", "outcome", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "regoauth", Subsystem: "token", Name: "request_duration_seconds",
			Help: "Time to answer a token request, by outcome.", Buckets: buckets,
		}, []string{"outcome"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "regoauth", Subsystem: "token", Name: "stage_duration_seconds",
			Help: "Time spent in each stage of the token path (authn, decide, sign).", Buckets: buckets,
		}, []string{"stage"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "token", Name: "actions_total",
			Help: "Requested actions by result (granted or denied).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.stages, m.actions)
	}
	return m
}

func (m *metrics) stage(name string, start time.Time) {
	m.stages.WithLabelValues(name).Observe(time.Since(start).Seconds())
}

func (m *metrics) observe(e event) {
	outcome := e.outcome()
	method := e.method
	if method != http.MethodGet && method != http.MethodPost {
		method = "other" // a client-chosen label value must not grow the series
	}
	m.requests.WithLabelValues(method, outcome, strconv.Itoa(e.status)).Inc()
	m.duration.WithLabelValues(outcome).Observe(e.duration.Seconds())
	if e.status != http.StatusOK {
		return
	}
	var requested, granted int
	for i := range e.requested {
		requested += len(e.requested[i].Actions)
		granted += len(e.granted[i].Actions)
	}
	m.actions.WithLabelValues("granted").Add(float64(granted))
	m.actions.WithLabelValues("denied").Add(float64(requested - granted))
}
