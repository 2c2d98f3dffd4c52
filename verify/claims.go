package verify

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Claims are the verified claims of an access token (RFC 9068). A *Claims
// returned by Verifier.Verify or ClaimsFromContext has passed every check;
// callers must not modify it.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	Expiry    time.Time
	IssuedAt  time.Time
	NotBefore time.Time // zero when the token has no nbf
	ClientID  string    // client_id: the OAuth client the token was issued to
	Scope     string    // scope: space-separated scopes as issued
	JTI       string    // jti
	Groups    []string  // groups, when the broker's mapping issued them
	Roles     []string  // roles, when the broker's mapping issued them
	// KeyThumbprint is cnf.jkt (RFC 9449 §6): the SHA-256 JWK thumbprint
	// of the DPoP key the token is bound to, empty for a bearer token. A
	// bound token passes only VerifyDPoP, with a proof signed by that key.
	KeyThumbprint string
	// Raw holds every claim of the payload as decoded by encoding/json
	// (numbers as float64), including those above.
	Raw map[string]any
}

// Scopes returns the scopes of the space-separated scope claim.
func (c *Claims) Scopes() []string { return strings.Fields(c.Scope) }

// HasScope reports whether the scope claim contains scope exactly.
func (c *Claims) HasScope(scope string) bool {
	return scope != "" && slices.Contains(c.Scopes(), scope)
}

// HasGroup reports whether the groups claim contains group exactly.
func (c *Claims) HasGroup(group string) bool { return slices.Contains(c.Groups, group) }

// HasRole reports whether the roles claim contains role exactly.
func (c *Claims) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// RequireScopes returns nil when the token carries every scope in required,
// and otherwise a *ScopeError (which matches ErrInsufficientScope).
func (c *Claims) RequireScopes(required ...string) error {
	if len(required) == 0 {
		return nil
	}
	have := c.Scopes()
	var missing []string
	for _, s := range required {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &ScopeError{Required: slices.Clone(required), Missing: missing}
}

type claimsKey struct{}

// ContextWithClaims returns a copy of ctx carrying c. The middlewares use it;
// it is exported for tests of handlers that read ClaimsFromContext.
func ContextWithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFromContext returns the verified claims the middleware stored in the
// request context, and false when there are none.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}
