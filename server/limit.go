package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regoauth/regoauth/authz"
)

// limitInFlight answers 503 at once when max requests are already being served, so a flood
// queues nowhere and costs nothing but the refusal. GET /healthz, the liveness probe, is never
// refused: requests piling up on a slow store make the server overloaded, not dead, and a
// probe that failed with them would have the orchestrator restart every replica at once, which
// /readyz (refused with the rest) handles by taking the replica out of the load balancer.
func limitInFlight(next http.Handler, max int, reg prometheus.Registerer) http.Handler {
	slots := make(chan struct{}, max)
	rejected := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "regoauth", Name: "overload_rejections_total",
		Help: "Requests refused because max_in_flight requests were already being served.",
	})
	reg.MustRegister(rejected)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		default:
			rejected.Inc()
			w.Header().Set("Retry-After", "1")
			authz.WriteError(w, authz.ErrUnavailable)
		}
	})
}
