package verify

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors returned (wrapped) by Verifier.Verify. Test for them with
// errors.Is; every error Verify returns wraps exactly one of them, so a
// service can tell an expired token from a forged one without parsing
// messages.
var (
	// ErrMalformed means the string is not a compact JWS carrying a JSON
	// claims object with the claims an access token must have, or is larger
	// than the size limit.
	ErrMalformed = errors.New("verify: malformed token")
	// ErrInvalidSignature means the signature does not verify with the key
	// the token names, or the token uses an algorithm outside the allowlist
	// (including "none" and every HMAC algorithm).
	ErrInvalidSignature = errors.New("verify: invalid signature")
	// ErrUnknownKey means no key in the issuer's key set matches the token's
	// key ID, even after a (rate-limited) refresh of the key set.
	ErrUnknownKey = errors.New("verify: unknown signing key")
	// ErrWrongIssuer means the iss claim is not exactly the configured issuer.
	ErrWrongIssuer = errors.New("verify: wrong issuer")
	// ErrWrongAudience means the aud claim does not contain the configured
	// audience.
	ErrWrongAudience = errors.New("verify: wrong audience")
	// ErrWrongType means the JOSE typ header is not "at+jwt": an ID token or
	// any other JWT presented as an access token.
	ErrWrongType = errors.New("verify: wrong token type")
	// ErrExpired means exp is in the past beyond the leeway. The error also
	// matches *ExpiredError, which carries the expiry.
	ErrExpired = errors.New("verify: token expired")
	// ErrNotYetValid means nbf or iat lies in the future beyond the leeway.
	ErrNotYetValid = errors.New("verify: token not yet valid")
	// ErrInsufficientScope means the token is valid but lacks a required
	// scope. The error also matches *ScopeError, which names the scopes.
	ErrInsufficientScope = errors.New("verify: insufficient scope")
	// ErrDPoPRequired means the token is bound to a DPoP key (cnf.jkt) but
	// was presented as a bearer token, without a proof (RFC 9449 §7.2).
	ErrDPoPRequired = errors.New("verify: token bound to a DPoP key presented without a proof")
	// ErrNotDPoPBound means a token presented with a DPoP proof is not
	// bound to a DPoP key: it has no cnf.jkt.
	ErrNotDPoPBound = errors.New("verify: token not bound to a DPoP key")
	// ErrInvalidDPoPProof means the DPoP proof presented with a bound token
	// is missing, fails a check of RFC 9449 §4.3 (errors.Is also matches
	// dpop.ErrInvalidProof then), is signed by another key than the one
	// the token is bound to, or was used before.
	ErrInvalidDPoPProof = errors.New("verify: invalid DPoP proof")
)

// ExpiredError reports a token whose exp lies in the past beyond the leeway.
// errors.Is(err, ErrExpired) is true for it.
type ExpiredError struct {
	// Expiry is the token's exp claim.
	Expiry time.Time
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("verify: token expired at %s", e.Expiry.UTC().Format(time.RFC3339))
}

// Is reports whether target is ErrExpired.
func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// ScopeError reports a valid token that lacks required scopes.
// errors.Is(err, ErrInsufficientScope) is true for it.
type ScopeError struct {
	// Required is every scope the caller asked for, in the caller's order.
	Required []string
	// Missing is the subset of Required the token does not carry.
	Missing []string
}

func (e *ScopeError) Error() string {
	return fmt.Sprintf("verify: insufficient scope: missing %q", strings.Join(e.Missing, " "))
}

// Is reports whether target is ErrInsufficientScope.
func (e *ScopeError) Is(target error) bool { return target == ErrInsufficientScope }
