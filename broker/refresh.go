package broker

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/mapping"
)

// refreshGrant rotates a refresh token (RFC 6749 §6). Every use returns a
// new refresh token; presenting one that was already rotated revokes the
// whole family (reuse detection). A refresh token is bound to its client and
// never widens its scope.
func (s *Server) refreshGrant(c echo.Context, rt *runtime, cl *client) (*issued, error) {
	ctx := c.Request().Context()
	form := c.Request().PostForm
	old := form.Get("refresh_token")
	if old == "" || len(old) > 256 {
		return nil, invalidRequest("refresh_token is required")
	}
	famID, _, ok := strings.Cut(old, ".")
	if !ok || famID == "" {
		return nil, invalidGrant("the refresh token is invalid")
	}
	fam, err := s.store.GetRefresh(ctx, old)
	switch {
	case err == nil:
		if fam.Grant.ClientID != cl.ID {
			s.auditEvent("refresh_wrong_client", "client_id", cl.ID, "token_client_id", fam.Grant.ClientID)
			return nil, invalidGrant("the refresh token was issued to another client")
		}
	case errors.Is(err, storage.ErrNotFound):
		// Either unknown, or already rotated: rotating it tells which, and
		// revokes the family on reuse.
	default:
		return nil, err
	}
	scopes := fam.Grant.Scopes
	if req := form.Get("scope"); req != "" {
		asked := dedupe(strings.Fields(req))
		for _, sc := range asked {
			if !slices.Contains(fam.Grant.Scopes, sc) {
				return nil, newOAuthError(400, errInvalidScope, "scope %q was not granted", sc)
			}
		}
		scopes = asked
	}
	grant := fam.Grant
	var upstreamData []byte
	if err == nil {
		if grant, upstreamData, err = s.refreshUpstream(c, rt, fam); err != nil {
			return nil, err
		}
	}
	now := s.now()
	next := famID + "." + randomToken(32)
	fam, err = s.store.RotateRefresh(ctx, old, next, now, rt.tokens.RefreshIdle)
	switch {
	case errors.Is(err, storage.ErrReused):
		s.auditEvent("refresh_reused", "client_id", cl.ID, "family", famID)
		return nil, invalidGrant("the refresh token was already used; its family is revoked")
	case errors.Is(err, storage.ErrNotFound):
		return nil, invalidGrant("the refresh token is invalid or expired")
	case err != nil:
		return nil, err
	}
	if fam.Grant.ClientID != cl.ID {
		return nil, invalidGrant("the refresh token was issued to another client")
	}
	if upstreamData != nil {
		// Keep what the upstream returned (a rotated upstream refresh token)
		// and the claims mapped from it for the next refresh.
		stored := fam.Grant
		stored.ConnectorData = s.seal.seal(upstreamData)
		stored.IDTokenClaims, stored.AccessTokenClaims = grant.IDTokenClaims, grant.AccessTokenClaims
		if err := s.store.UpdateRefreshGrant(ctx, next, stored); err != nil {
			s.log.Error("refresh: keep the upstream's new connector data", "client_id", cl.ID, "err", err)
		}
	}
	grant.Scopes = scopes
	grant.Nonce = ""
	resp, err := s.issueTokens(cl, grant, now)
	if err != nil {
		return nil, err
	}
	resp.RefreshToken = next
	s.auditEvent("token", "grant_type", "refresh_token", "client_id", cl.ID, "sub", grant.Subject)
	return resp, nil
}

// refreshUpstream asks the upstream again when the connector can refresh, so
// a user disabled upstream can no longer refresh here. The new upstream
// claims are mapped again; the subject never changes. It returns the
// connector's new data (nil when the upstream was not asked).
func (s *Server) refreshUpstream(c echo.Context, rt *runtime, fam storage.RefreshFamily) (storage.Grant, []byte, error) {
	g := fam.Grant
	conn, ok := rt.connectors[g.ConnectorID]
	if !ok {
		return g, nil, invalidGrant("the sign-in method of this token was removed")
	}
	rc, ok := conn.impl.(connectors.RefreshConnector)
	if !ok || len(g.ConnectorData) == 0 {
		return g, nil, nil
	}
	ctx := c.Request().Context()
	data, err := s.seal.open(g.ConnectorData)
	if err != nil {
		s.log.Error("refresh: connector data", "connector", conn.id, "err", err)
		return g, nil, invalidGrant("this sign-in can no longer be refreshed; sign in again")
	}
	id, err := rc.Refresh(ctx, connectors.Scopes{OfflineAccess: true, Groups: slices.Contains(g.Scopes, "groups")}, connectors.Identity{Subject: g.UpstreamSubject, ConnectorData: data})
	if err != nil {
		if errors.Is(err, connectors.ErrUnavailable) {
			return g, nil, newOAuthError(503, errTemporarilyUnavailable, "the upstream identity provider is unavailable")
		}
		if rerr := s.store.RevokeFamily(ctx, fam.ID, fam.AbsoluteExpiry); rerr != nil {
			return g, nil, rerr
		}
		s.auditEvent("refresh_upstream_refused", "connector", conn.id, "client_id", g.ClientID, "sub", g.Subject, "reason", err.Error())
		return g, nil, invalidGrant("the upstream identity provider refused to refresh this sign-in")
	}
	if id.Subject != "" && id.Subject != g.UpstreamSubject {
		return g, nil, invalidGrant("the upstream identity changed")
	}
	res, err := conn.mapping.Evaluate(ctx, mapping.Input{ConnectorID: conn.id, ConnectorType: conn.typ, UpstreamSubject: g.UpstreamSubject, Claims: id.Claims, Sources: id.Sources})
	if err != nil {
		if rerr := s.store.RevokeFamily(ctx, fam.ID, fam.AbsoluteExpiry); rerr != nil {
			return g, nil, rerr
		}
		s.auditEvent("refresh_rejected", "connector", conn.id, "client_id", g.ClientID, "sub", g.Subject, "reason", err.Error())
		return g, nil, invalidGrant("this sign-in is no longer allowed")
	}
	g.IDTokenClaims, g.AccessTokenClaims = res.IDToken, res.AccessToken
	if id.ConnectorData == nil {
		id.ConnectorData = data
	}
	return g, id.ConnectorData, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
