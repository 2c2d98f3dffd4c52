package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/jwks"
)

// Codes of the *connectors.UserError values the connectors return, for the
// audit log.
const (
	CodeAccessDenied     = "access_denied"        // the person or the upstream refused the sign-in
	CodeUpstreamError    = "upstream_error"       // the upstream answered with another OAuth error
	CodeUnavailable      = "upstream_unavailable" // down, slow or 5xx; wraps connectors.ErrUnavailable
	CodeInvalidResponse  = "invalid_response"     // malformed or incomplete upstream answer
	CodeInvalidToken     = "invalid_token"        // ID token failed a check (signature, iss, aud, nonce, alg, key)
	CodeTokenExpired     = "token_expired"        // ID token past its exp
	CodeInvalidState     = "invalid_state"        // connState missing or malformed
	CodeEmailNotVerified = "email_not_verified"   // email claim present, email_verified not true
	CodeRefreshDenied    = "refresh_denied"       // upstream refused the refresh token (invalid_grant), or the sign-in brought none (offline_access_missing)
	CodeIssuerMismatch   = "issuer_mismatch"      // callback iss missing (when advertised) or not the upstream's issuer (RFC 9207)
)

// userError builds a UserError, its cause wrapping connectors.ErrRefused or
// connectors.ErrUpstream for the codes that mean so.
func userError(code, msg string, err error) *connectors.UserError {
	switch code {
	case CodeAccessDenied, CodeEmailNotVerified:
		err = wrapKind(connectors.ErrRefused, err)
	case CodeUpstreamError:
		err = wrapKind(connectors.ErrUpstream, err)
	}
	return &connectors.UserError{Code: code, Message: msg, Err: err}
}

func wrapKind(kind, err error) error {
	if err == nil {
		return kind
	}
	return fmt.Errorf("%w: %w", kind, err)
}

// UserError builds a *connectors.UserError; for packages built on this one.
func UserError(code, msg string, err error) error { return userError(code, msg, err) }

var safeCode = regexp.MustCompile(`^[a-z_]{1,40}$`)

// authorizeError turns an error=... callback into a UserError. Only a
// well-formed error code is echoed; the description is logged, never shown.
func authorizeError(code, desc string) error {
	cause := fmt.Errorf("oidc: upstream authorize error %q: %q", code, desc)
	switch {
	case code == "access_denied":
		return userError(CodeAccessDenied, "Sign-in was refused at the identity provider.", cause)
	case code == "temporarily_unavailable" || code == "server_error":
		return userError(CodeUnavailable, "The identity provider is not available. Please try again later.", fmt.Errorf("%w: %w", connectors.ErrUnavailable, cause))
	case safeCode.MatchString(code):
		return userError(CodeUpstreamError, fmt.Sprintf("The identity provider refused the sign-in (%s).", code), cause)
	}
	return userError(CodeUpstreamError, "The identity provider refused the sign-in.", cause)
}

// tokenError classifies a failed token request.
func tokenError(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		switch {
		case re.Response != nil && re.Response.StatusCode >= http.StatusInternalServerError:
			return userError(CodeUnavailable, "The identity provider is not available. Please try again later.", fmt.Errorf("oidc: %s: %w: %w", op, connectors.ErrUnavailable, err))
		case re.ErrorCode == "invalid_grant" && op == "refresh":
			return userError(CodeRefreshDenied, "Your session at the identity provider has ended. Please sign in again.", fmt.Errorf("oidc: %s: %w", op, err))
		case re.ErrorCode == "invalid_grant":
			return userError(CodeInvalidResponse, "The sign-in code was refused by the identity provider. Please start again.", fmt.Errorf("oidc: %s: %w", op, err))
		}
		return userError(CodeUpstreamError, "The identity provider refused the sign-in.", fmt.Errorf("oidc: %s: %w", op, err))
	}
	return userError(CodeUnavailable, "The identity provider could not be reached. Please try again later.", fmt.Errorf("oidc: %s: %w: %w", op, connectors.ErrUnavailable, err))
}

// signatureError classifies a keySet failure.
func signatureError(err error) error {
	switch {
	case errors.Is(err, connectors.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return userError(CodeUnavailable, "The identity provider could not be reached. Please try again later.", err)
	case errors.Is(err, jwks.ErrUnknownKey):
		return userError(CodeInvalidToken, "The identity provider's answer is signed with an unknown key.", err)
	}
	return userError(CodeInvalidToken, "The identity provider's answer has an invalid signature.", err)
}

// verifyError classifies a go-oidc verifier failure after the signature
// passed (issuer, audience, expiry).
func verifyError(err error) error {
	var exp *oidc.TokenExpiredError
	if errors.As(err, &exp) {
		return userError(CodeTokenExpired, "The identity provider's answer has expired. Please start again.", err)
	}
	return userError(CodeInvalidToken, "The identity provider's answer failed verification.", err)
}
