package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// denial is the RFC 6750 or RFC 9449 answer to a request the middleware
// refuses.
type denial struct {
	status  int
	headers []string // WWW-Authenticate, one challenge each
	code    string   // error code; empty when no token was sent
	desc    string
}

// The authentication schemes of the Authorization header.
const (
	schemeBearer = "Bearer"
	schemeDPoP   = "DPoP"
)

// authenticate verifies the request's access token, a bearer token or a
// DPoP-bound token with its proof, and checks the route's required scopes.
// It reads the token from the Authorization header only, never from the
// query string or body (RFC 6750 §2.1).
func (v *Verifier) authenticate(ctx context.Context, r *http.Request, required []string) (*Claims, *denial) {
	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return nil, v.deny(schemeBearer, http.StatusBadRequest, "invalid_request", "more than one Authorization header", nil)
	}
	scheme, token, ok := credentials(values)
	if !ok {
		return nil, &denial{
			status: http.StatusUnauthorized,
			headers: []string{
				fmt.Sprintf("Bearer realm=%q", v.realm),
				fmt.Sprintf("DPoP realm=%q, algs=%q", v.realm, dpopAlgorithms),
			},
		}
	}
	var (
		claims *Claims
		err    error
	)
	if scheme == schemeDPoP {
		claims, err = v.verifyDPoPRequest(ctx, r, token)
	} else {
		claims, err = v.Verify(ctx, token)
	}
	if err == nil {
		err = claims.RequireScopes(required...)
	}
	var se *ScopeError
	switch {
	case err == nil:
		return claims, nil
	case errors.As(err, &se):
		return nil, v.deny(scheme, http.StatusForbidden, "insufficient_scope", "the token lacks a required scope", se.Required)
	case errors.Is(err, ErrDPoPRequired):
		// RFC 9449 §7.2: a bound token is refused as a bearer token, with
		// the challenge that says how to present it.
		return nil, v.deny(schemeDPoP, http.StatusUnauthorized, "invalid_token", description(err), nil)
	case errors.Is(err, ErrReplayUnavailable):
		// Not the client's fault, and not to be let through: the same
		// request may pass once the store answers again.
		return nil, &denial{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the DPoP proof cannot be checked now"}
	case errors.Is(err, ErrInvalidDPoPProof):
		return nil, v.deny(schemeDPoP, http.StatusUnauthorized, "invalid_dpop_proof", dpopDescription(err), nil)
	default:
		return nil, v.deny(scheme, http.StatusUnauthorized, "invalid_token", description(err), nil)
	}
}

// deny builds the refusal's challenge in scheme; a DPoP challenge names
// the accepted proof algorithms (RFC 9449 §7.1).
func (v *Verifier) deny(scheme string, status int, code, desc string, scopes []string) *denial {
	h := fmt.Sprintf("%s realm=%q, error=%q, error_description=%q", scheme, v.realm, code, desc)
	if len(scopes) > 0 {
		h += fmt.Sprintf(", scope=%q", strings.Join(scopes, " "))
	}
	if scheme == schemeDPoP {
		h += fmt.Sprintf(", algs=%q", dpopAlgorithms)
	}
	return &denial{status: status, headers: []string{h}, code: code, desc: desc}
}

// credentials returns the scheme (schemeBearer or schemeDPoP) and token of
// an "Authorization: Bearer <token>" or "Authorization: DPoP <token>"
// header; the scheme is case-insensitive.
func credentials(values []string) (string, string, bool) {
	if len(values) != 1 {
		return "", "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	switch {
	case !ok:
		return "", "", false
	case strings.EqualFold(scheme, schemeBearer):
		scheme = schemeBearer
	case strings.EqualFold(scheme, schemeDPoP):
		scheme = schemeDPoP
	default:
		return "", "", false
	}
	token = strings.TrimSpace(token)
	return scheme, token, token != ""
}

// description names the class of a verification failure without echoing
// token contents.
func description(err error) string {
	switch {
	case errors.Is(err, ErrExpired):
		return "the token expired"
	case errors.Is(err, ErrNotYetValid):
		return "the token is not valid yet"
	case errors.Is(err, ErrWrongType):
		return "not an access token"
	case errors.Is(err, ErrWrongAudience):
		return "the token is not for this service"
	case errors.Is(err, ErrWrongIssuer):
		return "the token is from another issuer"
	case errors.Is(err, ErrUnknownKey), errors.Is(err, ErrInvalidSignature):
		return "the token signature is invalid"
	case errors.Is(err, ErrDPoPRequired):
		return "the token is bound to a DPoP key: present it with a DPoP proof"
	case errors.Is(err, ErrNotDPoPBound):
		return "the token is not bound to a DPoP key"
	default:
		return "the token is malformed"
	}
}

func (d *denial) body() map[string]string {
	if d.code == "" {
		return map[string]string{"error": "unauthorized"}
	}
	return map[string]string{"error": d.code, "error_description": d.desc}
}

// Middleware returns net/http middleware that lets a request through only
// with a valid access token carrying every scope in required (on top of
// WithRequiredScopes): a bearer token (`Authorization: Bearer <token>`),
// or a token bound to a DPoP key (`Authorization: DPoP <token>`) with one
// `DPoP` proof header for this request, checked by VerifyDPoP against the
// request's method and URL (see WithDPoPBaseURL). A bound token presented
// as a bearer token is refused. The verified *Claims are in the request
// context for ClaimsFromContext.
//
// Refusals follow RFC 6750 and RFC 9449 §7.1: 401 with the challenges
// `Bearer realm="..."` and `DPoP realm="...", algs="..."` when no token
// is sent; 401 with error="invalid_token" when the token fails
// verification, is bound but sent as a bearer token (a DPoP challenge), or
// is sent with the DPoP scheme but not bound; 401 with a DPoP challenge
// and error="invalid_dpop_proof" when the proof is missing, invalid,
// signed by another key or replayed; 403 with error="insufficient_scope"
// and the required scopes when a scope is missing; 400 with
// error="invalid_request" for repeated Authorization headers; 503 with
// error="temporarily_unavailable" when the ReplayStore (WithReplayStore)
// cannot say whether a DPoP proof was used before.
func (v *Verifier) Middleware(required ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			claims, d := v.authenticate(r.Context(), r, required)
			if d != nil {
				for _, h := range d.headers {
					w.Header().Add("WWW-Authenticate", h)
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(d.status)
				_ = json.NewEncoder(w).Encode(d.body())
				return
			}
			next.ServeHTTP(w, r.WithContext(ContextWithClaims(r.Context(), claims)))
		})
	}
}
