package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

var errMethod = errors.New("method not allowed")

// ErrBusy refuses work the server does one at a time while another is running.
var ErrBusy = errors.New("another explanation is being computed; retry in a moment")

// errorBody is every admin error response.
type errorBody struct {
	Error      string   `json:"error"`
	Code       string   `json:"code"`
	Reasons    []string `json:"reasons,omitempty"`
	DecisionID string   `json:"decision_id,omitempty"`
}

// writeError is the one place where admin errors become status codes and bodies.
func writeError(w http.ResponseWriter, err error) {
	var f *Forbidden
	body := errorBody{Error: err.Error()}
	status := http.StatusInternalServerError
	var throttled interface{ RetryAfterSeconds() int }
	switch {
	// Before ErrBadCredentials: a failure beyond an account's budget (throttle.Throttled) wraps
	// both.
	case errors.As(err, &throttled):
		status, body.Code = http.StatusTooManyRequests, "too_many_requests"
		w.Header().Set("Retry-After", strconv.Itoa(throttled.RetryAfterSeconds()))
	case errors.Is(err, keystore.ErrBadCredentials):
		status, body.Code, body.Error = http.StatusUnauthorized, "unauthorized", keystore.ErrBadCredentials.Error()
		w.Header().Set("WWW-Authenticate", `Bearer realm="regoauth admin"`)
	case errors.As(err, &f):
		status, body.Code, body.Reasons, body.DecisionID = http.StatusForbidden, "forbidden", f.Reasons, f.DecisionID
	case errors.Is(err, keystore.ErrLimit):
		status, body.Code = http.StatusForbidden, "limit"
	case errors.Is(err, keystore.ErrInvalid):
		status, body.Code = http.StatusBadRequest, "invalid"
	case errors.Is(err, keystore.ErrNotFound):
		status, body.Code = http.StatusNotFound, "not_found"
	case errors.Is(err, keystore.ErrExists):
		status, body.Code = http.StatusConflict, "exists"
	case errors.Is(err, keystore.ErrConflict):
		status, body.Code = http.StatusConflict, "conflict"
	case errors.Is(err, errMethod):
		status, body.Code = http.StatusMethodNotAllowed, "method_not_allowed"
	case errors.Is(err, keystore.ErrNotWritable):
		// The reason (disk full, read-only) is the operator's to fix; say it.
		status, body.Code = http.StatusServiceUnavailable, "store_not_writable"
	case errors.Is(err, keystore.ErrUnconfirmed):
		// Made on the primary, not yet on enough replicas: say so, so that it can be checked
		// and repeated rather than trusted.
		status, body.Code = http.StatusServiceUnavailable, "unconfirmed"
		body.Error += "; should the store's primary fail now the change may be lost: check it and repeat it"
	case errors.Is(err, ErrBusy):
		status, body.Code = http.StatusServiceUnavailable, "busy"
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, keystore.ErrUnavailable), errors.Is(err, policy.ErrNotReady):
		status, body.Code, body.Error = http.StatusServiceUnavailable, "unavailable", "temporarily unavailable"
	default:
		body.Code, body.Error = "internal", "internal error"
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
