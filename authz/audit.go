package authz

import (
	"context"
	"log/slog"
	"net/http"
	"time"

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
	// working is true while the request holds a decision worker, which ServeHTTP gives back
	// once the response is encoded and logged, before it is written.
	working bool
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
