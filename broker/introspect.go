package broker

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// handleIntrospect is token introspection (RFC 7662) for authenticated
// confidential clients. Anything that is not a live token of ours — expired,
// revoked, foreign, malformed — is {"active": false}; only a storage
// failure is an error, so an outage never reads as "active".
func (s *Server) handleIntrospect(c echo.Context) error {
	cl, err := s.clientForm(c)
	if err != nil {
		return err
	}
	if cl.Public {
		return invalidClient("introspection needs an authenticated confidential client")
	}
	r := c.Request()
	token := r.PostForm.Get("token")
	c.Response().Header().Set("Cache-Control", "no-store")
	inactive := map[string]any{"active": false}

	// Our refresh tokens: "<family>.<secret>", never three JWT segments.
	if strings.Count(token, ".") == 1 && len(token) <= 256 {
		fam, err := s.store.GetRefresh(r.Context(), token)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return c.JSON(http.StatusOK, inactive)
		case err != nil:
			return err
		}
		if fam.Grant.ClientID != cl.ID || !fam.IdleExpiry.After(s.now()) {
			return c.JSON(http.StatusOK, inactive)
		}
		return c.JSON(http.StatusOK, map[string]any{
			"active":     true,
			"token_type": "refresh_token",
			"client_id":  fam.Grant.ClientID,
			"sub":        fam.Grant.Subject,
			"scope":      strings.Join(fam.Grant.Scopes, " "),
			"exp":        minTime(fam.IdleExpiry, fam.AbsoluteExpiry).Unix(),
			"iat":        fam.LastUsed.Unix(),
			"iss":        s.issuer,
		})
	}
	at, err := s.verifyAccessToken(c, token)
	if err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			return err
		}
		return c.JSON(http.StatusOK, inactive)
	}
	out := map[string]any{"active": true, "token_type": "Bearer"}
	for _, k := range []string{"iss", "sub", "aud", "client_id", "scope", "exp", "iat", "nbf", "jti", "auth_time", "act", "groups", "roles", "email"} {
		if v, ok := at.raw[k]; ok {
			out[k] = v
		}
	}
	s.auditEvent("introspect", "client_id", cl.ID, "token_client_id", at.client, "sub", at.sub)
	return c.JSON(http.StatusOK, out)
}
