package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// denial is the RFC 6750 answer to a request the middleware refuses.
type denial struct {
	status int
	header string // WWW-Authenticate
	code   string // RFC 6750 error code; empty when no token was sent
	desc   string
}

// authenticate verifies the request's bearer token and checks the route's
// required scopes. It reads the token from the Authorization header only,
// never from the query string or body (RFC 6750 §2.1).
func (v *Verifier) authenticate(ctx context.Context, r *http.Request, required []string) (*Claims, *denial) {
	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return nil, v.deny(http.StatusBadRequest, "invalid_request", "more than one Authorization header", nil)
	}
	token, ok := bearer(values)
	if !ok {
		return nil, &denial{
			status: http.StatusUnauthorized,
			header: fmt.Sprintf("Bearer realm=%q", v.realm),
		}
	}
	claims, err := v.Verify(ctx, token)
	if err == nil {
		err = claims.RequireScopes(required...)
	}
	var se *ScopeError
	switch {
	case err == nil:
		return claims, nil
	case errors.As(err, &se):
		return nil, v.deny(http.StatusForbidden, "insufficient_scope", "the token lacks a required scope", se.Required)
	default:
		return nil, v.deny(http.StatusUnauthorized, "invalid_token", description(err), nil)
	}
}

func (v *Verifier) deny(status int, code, desc string, scopes []string) *denial {
	h := fmt.Sprintf("Bearer realm=%q, error=%q, error_description=%q", v.realm, code, desc)
	if len(scopes) > 0 {
		h += fmt.Sprintf(", scope=%q", strings.Join(scopes, " "))
	}
	return &denial{status: status, header: h, code: code, desc: desc}
}

// bearer returns the token of an "Authorization: Bearer <token>" header;
// the scheme is case-insensitive.
func bearer(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
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
// with a valid bearer access token carrying every scope in required (on top
// of WithRequiredScopes). The verified *Claims are in the request context
// for ClaimsFromContext. Refusals follow RFC 6750: 401 with
// `WWW-Authenticate: Bearer realm="..."` when no bearer token is sent; 401
// with error="invalid_token" when the token fails verification; 403 with
// error="insufficient_scope" and the required scopes when a scope is
// missing; 400 with error="invalid_request" for repeated Authorization
// headers.
func (v *Verifier) Middleware(required ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			claims, d := v.authenticate(r.Context(), r, required)
			if d != nil {
				w.Header().Set("WWW-Authenticate", d.header)
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
