package grants

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/mapping"
)

// Refresh rotates a refresh token (RFC 6749 §6). Every use returns a new
// refresh token; presenting one that was already rotated revokes the whole
// family and its access tokens (reuse detection), whatever else the
// request says. A refresh token is bound to its client and never widens
// its scope; a request that fails leaves a current token unrotated.
func (g *Grants) Refresh(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request) (*tokens.Response, error) {
	old := req.RefreshToken
	if old == "" || len(old) > 256 {
		return nil, oauth.InvalidRequest("refresh_token is required")
	}
	famID, _, ok := strings.Cut(old, ".")
	if !ok || famID == "" {
		return nil, oauth.InvalidGrant("the refresh token is invalid")
	}
	fam, err := g.store.GetRefresh(ctx, old)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Not a current token: tell reuse from unknown before anything
		// else of the request is looked at.
		return nil, g.notCurrent(ctx, rt, cl, famID, old)
	case err != nil:
		return nil, err
	}
	if fam.Grant.ClientID != cl.ID {
		g.audit.Event("refresh_wrong_client", "client_id", cl.ID, "token_client_id", fam.Grant.ClientID)
		return nil, oauth.InvalidGrant("the refresh token was issued to another client")
	}
	scopes := fam.Grant.Scopes
	if len(req.Scope) > 0 {
		for _, sc := range req.Scope {
			if !slices.Contains(fam.Grant.Scopes, sc) {
				return nil, oauth.InvalidScope("scope %q was not granted", sc)
			}
		}
		scopes = req.Scope
	}
	grant, upstreamData, err := g.refreshUpstream(ctx, rt, fam)
	if err != nil {
		return nil, err
	}
	now := g.now()
	next := famID + "." + oauth.RandomToken(32)
	fam, err = g.store.RotateRefresh(ctx, old, next, now, rt.Tokens.RefreshIdle)
	switch {
	case errors.Is(err, storage.ErrReused):
		// Rotated by a concurrent request since GetRefresh.
		return nil, g.reused(ctx, rt, cl, famID)
	case errors.Is(err, storage.ErrNotFound):
		return nil, oauth.InvalidGrant("the refresh token is invalid or expired")
	case err != nil:
		return nil, err
	}
	if fam.Grant.ClientID != cl.ID {
		return nil, oauth.InvalidGrant("the refresh token was issued to another client")
	}
	if upstreamData != nil {
		// Keep what the upstream returned (a rotated upstream refresh token)
		// and the claims mapped from it for the next refresh.
		stored := fam.Grant
		stored.ConnectorData = g.sealer.Seal(upstreamData, stored.SessionID)
		stored.IDTokenClaims, stored.AccessTokenClaims = grant.IDTokenClaims, grant.AccessTokenClaims
		if err := g.store.UpdateRefreshGrant(ctx, next, stored); err != nil {
			g.log.Error("refresh: keep the upstream's new connector data", "client_id", cl.ID, "err", err)
		}
	}
	grant.Scopes = scopes
	grant.Nonce = ""
	grant.FamilyRef = tokens.FamilyRef(famID)
	resp, err := g.tokens.Issue(cl, grant, now)
	if err != nil {
		return nil, err
	}
	resp.RefreshToken = next
	g.audit.Event("token", "grant_type", config.GrantRefreshToken, "client_id", cl.ID, "sub", grant.Subject)
	return resp, nil
}

// notCurrent answers a refresh token that is not the current token of a
// live family. Rotating it issues nothing (the new token is thrown away):
// the store answers ErrReused for any token of a live family other than
// its current one (already rotated, or never issued), having revoked the
// family, and ErrNotFound for a family unknown, expired or revoked.
func (g *Grants) notCurrent(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, famID, old string) error {
	_, err := g.store.RotateRefresh(ctx, old, famID+"."+oauth.RandomToken(32), g.now(), rt.Tokens.RefreshIdle)
	switch {
	case errors.Is(err, storage.ErrReused):
		return g.reused(ctx, rt, cl, famID)
	case errors.Is(err, storage.ErrNotFound):
		return oauth.InvalidGrant("the refresh token is invalid or expired")
	case err != nil:
		return err
	}
	// It was current after all (it cannot become so between the two
	// reads), and is now rotated to a token no one holds: the family is
	// lost to its client, so revoke it rather than leave it half alive.
	if err := g.tokens.RevokeFamily(ctx, famID, g.now().Add(rt.Tokens.RefreshAbsolute)); err != nil {
		return err
	}
	return oauth.InvalidGrant("the refresh token is invalid or expired")
}

// reused completes reuse detection: the store has revoked the family of
// famID; its access tokens are revoked with it. The family's absolute
// expiry is not known any more; now plus the absolute lifetime bounds it.
func (g *Grants) reused(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, famID string) error {
	if err := g.tokens.RevokeFamily(ctx, famID, g.now().Add(rt.Tokens.RefreshAbsolute)); err != nil {
		return err
	}
	g.audit.Event("refresh_reused", "client_id", cl.ID, "family", tokens.FamilyRef(famID))
	return oauth.InvalidGrant("the refresh token was already used; its family is revoked")
}

// refreshUpstream asks the upstream again when the connector can refresh,
// so a user disabled upstream can no longer refresh here. The new upstream
// claims are mapped again; the subject never changes. It returns the
// connector's new data (nil when the upstream was not asked).
func (g *Grants) refreshUpstream(ctx context.Context, rt *runtime.Runtime, fam storage.RefreshFamily) (storage.Grant, []byte, error) {
	gr := fam.Grant
	conn, ok := rt.Connector(gr.ConnectorID)
	if !ok {
		return gr, nil, oauth.InvalidGrant("the sign-in method of this token was removed")
	}
	if len(gr.ConnectorData) == 0 {
		return gr, nil, nil
	}
	impl, err := conn.Open(ctx)
	if err != nil {
		return gr, nil, unavailable()
	}
	rc, ok := impl.(connectors.RefreshConnector)
	if !ok {
		return gr, nil, nil
	}
	data, err := g.sealer.Open(gr.ConnectorData, gr.SessionID)
	if err != nil {
		g.log.Error("refresh: connector data", "connector", conn.ID, "err", err)
		return gr, nil, oauth.InvalidGrant("this sign-in can no longer be refreshed; sign in again")
	}
	id, err := rc.Refresh(ctx, connectors.Scopes{OfflineAccess: true, Groups: slices.Contains(gr.Scopes, "groups")}, connectors.Identity{Subject: gr.UpstreamSubject, ConnectorData: data})
	if err != nil {
		if errors.Is(err, connectors.ErrUnavailable) {
			return gr, nil, unavailable()
		}
		if rerr := g.tokens.RevokeFamily(ctx, fam.ID, fam.AbsoluteExpiry); rerr != nil {
			return gr, nil, rerr
		}
		g.audit.Event("refresh_upstream_refused", "connector", conn.ID, "client_id", gr.ClientID, "sub", gr.Subject, "reason", err.Error())
		return gr, nil, oauth.InvalidGrant("the upstream identity provider refused to refresh this sign-in")
	}
	if id.Subject != "" && id.Subject != gr.UpstreamSubject {
		return gr, nil, oauth.InvalidGrant("the upstream identity changed")
	}
	res, err := conn.Mapping.Evaluate(ctx, mapping.Input{ConnectorID: conn.ID, ConnectorType: conn.Type, UpstreamSubject: gr.UpstreamSubject, Claims: id.Claims, Sources: id.Sources})
	if err != nil {
		if rerr := g.tokens.RevokeFamily(ctx, fam.ID, fam.AbsoluteExpiry); rerr != nil {
			return gr, nil, rerr
		}
		g.audit.Event("refresh_rejected", "connector", conn.ID, "client_id", gr.ClientID, "sub", gr.Subject, "reason", err.Error())
		return gr, nil, oauth.InvalidGrant("this sign-in is no longer allowed")
	}
	gr.IDTokenClaims, gr.AccessTokenClaims = res.IDToken, res.AccessToken
	if id.ConnectorData == nil {
		id.ConnectorData = data
	}
	return gr, id.ConnectorData, nil
}

func unavailable() error {
	return oauth.NewError(http.StatusServiceUnavailable, oauth.ErrTemporarilyUnavailable, "the upstream identity provider is unavailable")
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
