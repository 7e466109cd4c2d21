package policy

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	evalSeconds      *prometheus.HistogramVec
	outcomes         *prometheus.CounterVec
	activations      *prometheus.CounterVec
	activeGeneration prometheus.Gauge
	bundleFailing    *prometheus.GaugeVec
	bundleActivated  *prometheus.GaugeVec
	dryRun           *prometheus.CounterVec
	logFailures      prometheus.Counter
	cache            *prometheus.CounterVec
	native           prometheus.Gauge
	nativeDecisions  prometheus.Counter
	authzDefined     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "policy", Name: "decision_cache_total",
			Help: "Decisions answered from the decision cache (hit) or evaluated and cached (miss).",
		}, []string{"query", "result"}),
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
		activeGeneration: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "regoauth", Subsystem: "policy", Name: "active_generation",
			Help: "Activations since the start of the revision now active; 0 while none is.",
		}),
		bundleFailing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "regoauth", Subsystem: "policy", Name: "bundle_failing",
			Help: "1 when the newest load of the bundle failed (its previous revision stays active), else 0.",
		}, []string{"bundle"}),
		bundleActivated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "regoauth", Subsystem: "policy", Name: "bundle_last_activation_timestamp_seconds",
			Help: "When the bundle's active revision was activated (Unix time).",
		}, []string{"bundle"}),
		dryRun: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "policy", Name: "dry_run_comparisons_total",
			Help: "Decisions evaluated by the dry-run candidate policy, by query and result (agree, disagree, error, dropped).",
		}, []string{"query", "result"}),
		logFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "regoauth", Subsystem: "policy", Name: "decision_log_failures_total",
			Help: "Decisions that could not be handed to the decision logger.",
		}),
	}
	m.native = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "regoauth", Subsystem: "policy", Name: "native",
		Help: "1 while the active policy is the library alone, configured by data, and its token decisions are made natively; 0 while they are evaluated.",
	})
	m.nativeDecisions = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "regoauth", Subsystem: "policy", Name: "native_decisions_total",
		Help: "Token decisions made natively (also counted in decisions_total).",
	})
	m.authzDefined = m.outcomes.WithLabelValues("authz", "defined")
	if reg != nil {
		reg.MustRegister(m.evalSeconds, m.outcomes, m.activations, m.activeGeneration, m.bundleFailing,
			m.bundleActivated, m.dryRun, m.logFailures, m.cache, m.native, m.nativeDecisions)
	}
	return m
}
