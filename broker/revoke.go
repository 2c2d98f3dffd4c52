package broker

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// handleRevoke is token revocation (RFC 7009). Revoking a refresh token
// revokes its whole family; revoking an access token makes introspection,
// userinfo and token exchange refuse it until it expires. The answer is 200 for any token, valid or not,
// so revocation reveals nothing; only a storage failure is an error.
func (s *Server) handleRevoke(c echo.Context) error {
	cl, err := s.clientForm(c)
	if err != nil {
		return err
	}
	r := c.Request()
	token := r.PostForm.Get("token")
	ctx := r.Context()
	if famID, _, ok := strings.Cut(token, "."); ok && famID != "" && len(token) <= 256 && strings.Count(token, ".") == 1 {
		fam, err := s.store.GetRefresh(ctx, token)
		switch {
		case err == nil && fam.Grant.ClientID == cl.ID:
			if err := s.store.RevokeFamily(ctx, fam.ID, fam.AbsoluteExpiry); err != nil {
				return err
			}
			s.auditEvent("revoke", "client_id", cl.ID, "sub", fam.Grant.Subject, "family", fam.ID)
		case err == nil, errors.Is(err, storage.ErrNotFound):
			// Another client's token or an unknown one: nothing to do.
		default:
			return err
		}
	}
	if strings.Count(token, ".") == 2 {
		// One of our access tokens, revoked by the client it was issued to,
		// is remembered until it expires; userinfo, introspection and
		// delegation then refuse it.
		at, err := s.verifyAccessToken(c, token)
		switch {
		case err == nil && at.client == cl.ID:
			if _, err := s.store.MarkSeen(ctx, revokedNamespace, at.jti, at.exp.Add(time.Minute)); err != nil {
				return err
			}
			s.auditEvent("revoke", "client_id", cl.ID, "sub", at.sub, "token_type", "access_token")
		case errors.Is(err, storage.ErrUnavailable):
			return err
		}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.NoContent(http.StatusOK)
}
