package broker

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// accessToken is a verified access token of ours.
type accessToken struct {
	raw    map[string]any
	sub    string
	client string
	scopes []string
	jti    string
	exp    time.Time
	aud    []string
}

// revokedNamespace holds the jti of access tokens revoked through /revoke,
// until they expire.
const revokedNamespace = "revoked_at"

// verifyAccessToken checks one of our own access tokens: signature by a
// published key, typ at+jwt, issuer, expiry, and that it was not revoked
// through /revoke. Revoking a refresh token does not recall access tokens
// already issued from it (they are short-lived); services that verify
// tokens locally do not see revocations at all.
func (s *Server) verifyAccessToken(c echo.Context, token string) (*accessToken, error) {
	if token == "" || len(token) > 16<<10 {
		return nil, errTokenInvalid
	}
	payload, typ, err := s.keys.Verify(token)
	if err != nil || !strings.EqualFold(typ, "at+jwt") {
		return nil, errTokenInvalid
	}
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, errTokenInvalid
	}
	at := &accessToken{raw: raw}
	iss, _ := raw["iss"].(string)
	at.sub, _ = raw["sub"].(string)
	at.client, _ = raw["client_id"].(string)
	at.jti, _ = raw["jti"].(string)
	scope, _ := raw["scope"].(string)
	at.scopes = strings.Fields(scope)
	exp, _ := raw["exp"].(float64)
	at.exp = time.Unix(int64(exp), 0)
	switch a := raw["aud"].(type) {
	case string:
		at.aud = []string{a}
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok {
				at.aud = append(at.aud, s)
			}
		}
	}
	if iss != s.issuer || at.sub == "" || at.jti == "" || !at.exp.After(s.now()) {
		return nil, errTokenInvalid
	}
	// Revoked through /revoke? (A past `until` only asks.)
	notRevoked, err := s.store.MarkSeen(c.Request().Context(), revokedNamespace, at.jti, time.Time{})
	if err != nil {
		return nil, err
	}
	if !notRevoked {
		return nil, errTokenInvalid
	}
	return at, nil
}

var errTokenInvalid = &oauthError{Code: errInvalidToken, Description: "the access token is invalid, expired or revoked", Status: http.StatusUnauthorized, BearerChallenge: true}

// handleUserinfo answers the UserInfo endpoint (OpenID Connect Core §5.3)
// from the claims of the presented access token.
func (s *Server) handleUserinfo(c echo.Context) error {
	auth := c.Request().Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="fedbroker"`)
		return c.NoContent(http.StatusUnauthorized)
	}
	at, err := s.verifyAccessToken(c, strings.TrimSpace(token))
	if err != nil {
		return err
	}
	if !slices.Contains(at.scopes, "openid") {
		return &oauthError{Code: "insufficient_scope", Description: "the openid scope is required", Status: http.StatusForbidden}
	}
	out := map[string]any{"sub": at.sub}
	for k, v := range releasable(at.raw, at.scopes) {
		out[k] = v
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}
