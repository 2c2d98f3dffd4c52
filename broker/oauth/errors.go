// Package oauth holds what every OAuth endpoint of the broker shares: the
// protocol's error codes and error types, the one writer that turns them
// into responses (JSON, a redirect back to the client with `iss`, or an
// HTML page for a person), the token-type and client-authentication names,
// PKCE, and random tokens. It knows nothing of echo: handlers hand it a
// ResponseWriter.
package oauth

import (
	"fmt"
	"net/http"
)

// OAuth error codes (RFC 6749 §4.1.2.1, §5.2; OpenID Connect Core §3.1.2.6;
// RFC 6750 §3.1; RFC 7009; RFC 8693; RFC 8707).
const (
	ErrInvalidRequest          = "invalid_request"
	ErrInvalidClient           = "invalid_client"
	ErrInvalidGrant            = "invalid_grant"
	ErrUnauthorizedClient      = "unauthorized_client"
	ErrUnsupportedGrantType    = "unsupported_grant_type"
	ErrUnsupportedResponseType = "unsupported_response_type"
	ErrInvalidScope            = "invalid_scope"
	ErrAccessDenied            = "access_denied"
	ErrServerError             = "server_error"
	ErrTemporarilyUnavailable  = "temporarily_unavailable"
	ErrLoginRequired           = "login_required"
	ErrInvalidTarget           = "invalid_target"
	ErrRequestNotSupported     = "request_not_supported"
	ErrRequestURINotSupported  = "request_uri_not_supported"
	ErrInvalidToken            = "invalid_token"
	ErrInsufficientScope       = "insufficient_scope"
	// RFC 9449 §5, §7.1 and §8.
	ErrInvalidDPoPProof = "invalid_dpop_proof"
	ErrUseDPoPNonce     = "use_dpop_nonce"
)

// Error is an OAuth error answered as JSON (RFC 6749 §5.2). It is the one
// error type endpoints return for protocol failures; Description is shown
// to the client, so it never carries internal error text.
type Error struct {
	Code        string
	Description string
	Status      int
	// BasicChallenge adds WWW-Authenticate: Basic to a 401.
	BasicChallenge bool
	// BearerChallenge adds WWW-Authenticate: Bearer error=... to a 401.
	BearerChallenge bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// NewError returns an Error with a formatted description.
func NewError(status int, code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...), Status: status}
}

// InvalidRequest is a 400 invalid_request.
func InvalidRequest(format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, ErrInvalidRequest, format, args...)
}

// InvalidGrant is a 400 invalid_grant.
func InvalidGrant(format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, ErrInvalidGrant, format, args...)
}

// InvalidScope is a 400 invalid_scope.
func InvalidScope(format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, ErrInvalidScope, format, args...)
}

// UnauthorizedClient is a 400 unauthorized_client.
func UnauthorizedClient(format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, ErrUnauthorizedClient, format, args...)
}

// InvalidClient is a 401 invalid_client with a Basic challenge.
func InvalidClient(format string, args ...any) *Error {
	e := NewError(http.StatusUnauthorized, ErrInvalidClient, format, args...)
	e.BasicChallenge = true
	return e
}

// ErrTokenInvalid answers a bearer token that is invalid, expired or
// revoked (RFC 6750 §3.1), without saying which.
var ErrTokenInvalid = &Error{Code: ErrInvalidToken, Description: "the access token is invalid, expired or revoked", Status: http.StatusUnauthorized, BearerChallenge: true}

// PageError is a failure shown to a person as an HTML error page. Message
// must be safe to show; Cause is logged and never shown.
type PageError struct {
	Status  int
	Heading string
	Message string
	Code    string
	Cause   error
}

func (e *PageError) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *PageError) Unwrap() error { return e.Cause }

// BadRequestPage is a 400 page for a sign-in request that cannot go on.
func BadRequestPage(code, message string) *PageError {
	return &PageError{Status: http.StatusBadRequest, Heading: "This sign-in request cannot be completed", Message: message, Code: code}
}

// RedirectError is an authorization error sent back to the client's
// redirect_uri (RFC 6749 §4.1.2.1) with `iss` (RFC 9207). Only use it once
// the client and its redirect_uri are known to be valid.
type RedirectError struct {
	RedirectURI string
	State       string
	Code        string
	Description string
}

func (e *RedirectError) Error() string { return e.Code + ": " + e.Description }
