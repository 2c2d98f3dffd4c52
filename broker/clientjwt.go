package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/connectors/workload"
)

const (
	assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	authPrivateKeyJWT      = "private_key_jwt"
	maxAssertionLifetime   = 10 * time.Minute
)

// clientKeys returns the key set of a private_key_jwt client: its inline
// JWKS, or its jwks_uri (fetched and cached by go-oidc's RemoteKeySet). It
// is built once per configuration load.
func (s *Server) clientKeys(ctx context.Context, jwks, jwksURI string) (oidc.KeySet, error) {
	if jwks != "" {
		ks, err := workload.StaticKeySet([]byte(jwks))
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		return ks, nil
	}
	return oidc.NewRemoteKeySet(oidc.ClientContext(context.WithoutCancel(ctx), s.client), jwksURI), nil
}

// asymmetricAlgs are the algorithms a JWT presented to the broker (a client
// assertion, a subject token) may name: asymmetric only, so a secret or a
// public key never doubles as an HMAC key. The verifier that then checks
// the signature may allow fewer.
var asymmetricAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// authenticateAssertion is private_key_jwt client authentication (RFC 7523
// §2.2, §3): the assertion is signed by one of the client's keys, iss and
// sub are the client id, aud names this issuer or its token endpoint, it
// expires soon, and its jti is accepted once.
func (s *Server) authenticateAssertion(c echo.Context, rt *runtime) (*client, error) {
	form := c.Request().PostForm
	if form.Get("client_assertion_type") != assertionTypeJWTBearer {
		return nil, invalidClient("client_assertion_type must be %s", assertionTypeJWTBearer)
	}
	raw := form.Get("client_assertion")
	if raw == "" || len(raw) > 16<<10 {
		return nil, invalidClient("client_assertion is missing or too large")
	}
	tok, err := jwt.ParseSigned(raw, asymmetricAlgs)
	if err != nil {
		return nil, invalidClient("client_assertion is not a JWT signed with an accepted algorithm")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer == "" {
		return nil, invalidClient("client_assertion claims are malformed")
	}
	cl, ok := rt.clients[unverified.Issuer]
	if !ok || cl.TokenEndpointAuthMethod != authPrivateKeyJWT {
		return nil, invalidClient("unknown client or client not registered for private_key_jwt")
	}
	if id := form.Get("client_id"); id != "" && id != cl.ID {
		return nil, invalidClient("client_id does not match the assertion")
	}
	ctx := c.Request().Context()
	if cl.keys == nil {
		return nil, invalidClient("the client's keys are unavailable")
	}
	payload, err := cl.keys.VerifySignature(ctx, raw)
	if err != nil {
		s.auditEvent("client_auth_failed", "client_id", cl.ID, "method", authPrivateKeyJWT, "reason", "bad signature")
		return nil, invalidClient("client_assertion signature does not verify")
	}
	var claims jwt.Claims
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, invalidClient("client_assertion claims are malformed")
	}
	now := s.now()
	switch {
	case claims.Issuer != cl.ID || claims.Subject != cl.ID:
		return nil, invalidClient("client_assertion iss and sub must both be the client id")
	case !slices.ContainsFunc(claims.Audience, func(a string) bool { return a == s.issuer || a == s.issuer+"/token" }):
		return nil, invalidClient("client_assertion aud must be the issuer or the token endpoint")
	case claims.Expiry == nil || !claims.Expiry.Time().After(now.Add(-30*time.Second)):
		return nil, invalidClient("client_assertion is expired or has no exp")
	case claims.Expiry.Time().Sub(now) > maxAssertionLifetime:
		return nil, invalidClient("client_assertion lives too long (at most %s)", maxAssertionLifetime)
	case claims.NotBefore != nil && claims.NotBefore.Time().After(now.Add(30*time.Second)):
		return nil, invalidClient("client_assertion is not valid yet")
	case claims.ID == "":
		return nil, invalidClient("client_assertion needs a jti")
	}
	fresh, err := s.store.MarkSeen(ctx, "client_assertion:"+cl.ID, claims.ID, claims.Expiry.Time().Add(time.Minute))
	if err != nil {
		return nil, err
	}
	if !fresh {
		s.auditEvent("client_auth_failed", "client_id", cl.ID, "method", authPrivateKeyJWT, "reason", "replayed jti")
		return nil, invalidClient("client_assertion was already used")
	}
	return cl, nil
}
