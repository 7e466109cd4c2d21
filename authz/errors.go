package authz

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/regoauth/regoauth/authz/input"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// Sentinel errors of the token path. Internal detail is wrapped below them with %w for logs;
// clients only ever see the public message of the sentinel.
var (
	ErrBadCredentials   = keystore.ErrBadCredentials
	ErrBadRequest       = errors.New("invalid token request")
	ErrUnsupportedGrant = errors.New("unsupported grant_type")
	ErrUnavailable      = errors.New("authorization temporarily unavailable")
	ErrMethod           = errors.New("method not allowed")
	ErrTooLarge         = errors.New("request too large")
)

// problem is how an error is shown on the wire.
type problem struct {
	status int
	code   string // registry error code (errors[].code)
	oauth  string // OAuth 2 error code, for clients that read RFC 6749 errors
	msg    string
}

// classify is the one place where internal errors become HTTP status codes and bodies.
func classify(err error) problem {
	var scopeErr *input.ScopeError
	switch {
	case errors.Is(err, ErrBadCredentials):
		return problem{http.StatusUnauthorized, "UNAUTHORIZED", "invalid_grant", ErrBadCredentials.Error()}
	case errors.As(err, &scopeErr):
		return problem{http.StatusBadRequest, "INVALID_REQUEST", "invalid_scope", scopeErr.Error()}
	case errors.Is(err, ErrUnsupportedGrant):
		return problem{http.StatusBadRequest, "UNSUPPORTED", "unsupported_grant_type", err.Error()}
	case errors.Is(err, ErrBadRequest):
		return problem{http.StatusBadRequest, "INVALID_REQUEST", "invalid_request", err.Error()}
	case errors.Is(err, ErrTooLarge):
		return problem{http.StatusRequestEntityTooLarge, "INVALID_REQUEST", "invalid_request", ErrTooLarge.Error()}
	case errors.Is(err, ErrMethod):
		return problem{http.StatusMethodNotAllowed, "UNSUPPORTED", "invalid_request", ErrMethod.Error()}
	case errors.Is(err, ErrUnavailable), errors.Is(err, keystore.ErrUnavailable), errors.Is(err, policy.ErrNotReady):
		return problem{http.StatusServiceUnavailable, "UNAVAILABLE", "temporarily_unavailable", ErrUnavailable.Error()}
	default:
		return problem{http.StatusInternalServerError, "UNKNOWN", "server_error", "internal error"}
	}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
	// Details is read by docker's client for a one-line message.
	Details string `json:"details"`
	// RFC 6749 §5.2 fields, for OAuth 2 clients (containerd reads them on POST).
	OAuthError       string `json:"error"`
	OAuthDescription string `json:"error_description"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError writes err as a JSON error response and returns its status.
func WriteError(w http.ResponseWriter, err error) int {
	p := classify(err)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if p.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", "GET, POST")
	}
	w.WriteHeader(p.status)
	json.NewEncoder(w).Encode(errorBody{
		Errors:           []errorEntry{{Code: p.code, Message: p.msg}},
		Details:          p.msg,
		OAuthError:       p.oauth,
		OAuthDescription: p.msg,
	})
	return p.status
}
