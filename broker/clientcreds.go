package broker

import (
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// clientCredentialsGrant issues an access token to a confidential client
// for itself (RFC 6749 §4.4): no ID token, no refresh token. The requested
// scopes and audiences must be among the client's own.
func (s *Server) clientCredentialsGrant(c echo.Context, rt *runtime, cl *client) (*issued, error) {
	if cl.Public {
		return nil, newOAuthError(400, errUnauthorizedClient, "public clients cannot use client_credentials")
	}
	form := c.Request().PostForm
	scopes := dedupe(strings.Fields(form.Get("scope")))
	for _, sc := range scopes {
		if sc == "openid" || sc == "offline_access" || !cl.scopes[sc] {
			return nil, newOAuthError(400, errInvalidScope, "scope %q is not allowed for client_credentials", sc)
		}
	}
	aud, err := requestedAudiences(form["audience"], form["resource"], cl.Audiences)
	if err != nil {
		return nil, err
	}
	now := s.now()
	g := storage.Grant{ClientID: cl.ID, Subject: cl.ID, Scopes: scopes}
	at, exp, err := s.mintAccessToken(cl, g, aud, now)
	if err != nil {
		return nil, err
	}
	s.auditEvent("token", "grant_type", "client_credentials", "client_id", cl.ID)
	return &issued{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(exp.Sub(now).Seconds()), Scope: strings.Join(scopes, " ")}, nil
}

// requestedAudiences resolves the audience and resource parameters (RFC
// 8693 §2.1, RFC 8707) against what the client may ask for; none asked
// means all the client's audiences.
func requestedAudiences(audience, resource, allowed []string) ([]string, error) {
	asked := append(slices.Clone(audience), resource...)
	if len(asked) == 0 {
		return allowed, nil
	}
	asked = dedupe(asked)
	for _, a := range asked {
		if !slices.Contains(allowed, a) {
			return nil, newOAuthError(400, errInvalidTarget, "audience %q is not allowed for this client", a)
		}
	}
	return asked, nil
}
