package policy

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	evalSeconds *prometheus.HistogramVec
	outcomes    *prometheus.CounterVec
	activations *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		evalSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "regoauth", Subsystem: "policy", Name: "evaluation_seconds",
			Help:    "Time to evaluate one policy decision.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05},
		}, []string{"query"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "policy", Name: "decisions_total",
			Help: "Policy decisions by query and outcome (defined, undefined, malformed, error).",
		}, []string{"query", "outcome"}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "policy", Name: "activations_total",
			Help: "Attempts to activate a policy revision, by result.",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.evalSeconds, m.outcomes, m.activations)
	}
	return m
}
