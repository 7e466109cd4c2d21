package authz

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

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
			Help: "Time spent in each stage of the token path (authn; queue, waiting for a decision worker; decide; sign).", Buckets: buckets,
		}, []string{"stage"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "token", Name: "actions_total",
			Help: "Requested actions by result (granted or denied).",
		}, []string{"result"}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.duration = register(reg, m.duration)
		m.stages = register(reg, m.stages)
		m.actions = register(reg, m.actions)
	}
	return m
}

// register registers c, or returns the collector registered before under the same name: a
// handler built again on the same registry (a server reloading its configuration builds a new
// one) goes on counting in the same series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
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
