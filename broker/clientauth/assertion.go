package clientauth

import (
	"context"
	"encoding/json"
	"net/url"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/jwa"
)

// acceptedAlgs are the algorithms a presented JWT may name (jwa), built
// once rather than per request.
var acceptedAlgs = jwa.Asymmetric[jose.SignatureAlgorithm]()

const (
	// maxAssertionLifetime caps exp - now of a client assertion.
	maxAssertionLifetime = 10 * time.Minute
	// assertionSkew is the clock skew allowed on exp, nbf and iat.
	assertionSkew = 30 * time.Second
	// maxAssertionBytes caps a client assertion.
	maxAssertionBytes = 16 << 10
)

// assertion is private_key_jwt client authentication (RFC 7523 §2.2, §3):
// the assertion is a canonically encoded JWT signed by one of the client's
// keys (its header asking for no compression or extension), iss and sub
// are the client id, aud is this issuer, its token endpoint or its PAR endpoint
// (RFC 9126 §2) alone, it
// expires soon, it was not issued in the future, and its jti is accepted
// once.
func (a *Authenticator) assertion(ctx context.Context, rt *runtime.Runtime, form url.Values) (*runtime.Client, error) {
	if form.Get("client_assertion_type") != oauth.AssertionTypeJWTBearer {
		return nil, oauth.InvalidClient("client_assertion_type must be %s", oauth.AssertionTypeJWTBearer)
	}
	raw := form.Get("client_assertion")
	if raw == "" || len(raw) > maxAssertionBytes {
		return nil, oauth.InvalidClient("client_assertion is missing or too large")
	}
	if err := jwa.CheckCompact(raw); err != nil {
		return nil, oauth.InvalidClient("client_assertion is not a JWT in compact serialization")
	}
	tok, err := jwt.ParseSigned(raw, acceptedAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return nil, oauth.InvalidClient("client_assertion is not a JWT signed with an accepted algorithm")
	}
	if err := jwa.CheckHeader(tok.Headers[0].ExtraHeaders); err != nil {
		return nil, oauth.InvalidClient("client_assertion header asks for compression or an extension")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer == "" {
		return nil, oauth.InvalidClient("client_assertion claims are malformed")
	}
	cl, ok := rt.Client(unverified.Issuer)
	if !ok || cl.TokenEndpointAuthMethod != oauth.AuthPrivateKeyJWT {
		return nil, oauth.InvalidClient("unknown client or client not registered for private_key_jwt")
	}
	if id := form.Get("client_id"); id != "" && id != cl.ID {
		return nil, oauth.InvalidClient("client_id does not match the assertion")
	}
	if cl.Keys == nil {
		return nil, oauth.InvalidClient("the client's keys are unavailable")
	}
	payload, err := cl.Keys.VerifySignature(ctx, raw)
	if err != nil {
		a.audit.Event("client_auth_failed", "client_id", cl.ID, "method", oauth.AuthPrivateKeyJWT, "reason", "bad signature")
		return nil, oauth.InvalidClient("client_assertion signature does not verify")
	}
	var claims jwt.Claims
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, oauth.InvalidClient("client_assertion claims are malformed")
	}
	now := a.now()
	switch {
	case claims.Issuer != cl.ID || claims.Subject != cl.ID:
		return nil, oauth.InvalidClient("client_assertion iss and sub must both be the client id")
	case len(claims.Audience) != 1 || (claims.Audience[0] != a.issuer && claims.Audience[0] != a.tokenEndpoint && claims.Audience[0] != a.parEndpoint):
		return nil, oauth.InvalidClient("client_assertion aud must be the issuer, the token endpoint or the PAR endpoint, alone")
	case claims.Expiry == nil || !claims.Expiry.Time().After(now.Add(-assertionSkew)):
		return nil, oauth.InvalidClient("client_assertion is expired or has no exp")
	case claims.Expiry.Time().Sub(now) > maxAssertionLifetime:
		return nil, oauth.InvalidClient("client_assertion lives too long (at most %s)", maxAssertionLifetime)
	case claims.NotBefore != nil && claims.NotBefore.Time().After(now.Add(assertionSkew)):
		return nil, oauth.InvalidClient("client_assertion is not valid yet")
	case claims.IssuedAt != nil && claims.IssuedAt.Time().After(now.Add(assertionSkew)):
		return nil, oauth.InvalidClient("client_assertion is issued in the future")
	case claims.ID == "":
		return nil, oauth.InvalidClient("client_assertion needs a jti")
	}
	fresh, err := a.replay.MarkSeen(ctx, "client_assertion:"+cl.ID, claims.ID, claims.Expiry.Time().Add(time.Minute))
	if err != nil {
		return nil, err
	}
	if !fresh {
		a.audit.Event("client_auth_failed", "client_id", cl.ID, "method", oauth.AuthPrivateKeyJWT, "reason", "replayed jti")
		return nil, oauth.InvalidClient("client_assertion was already used")
	}
	return cl, nil
}
