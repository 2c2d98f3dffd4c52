package grants

import (
	"bytes"
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
// request says — except a retry: the token the family's last rotation
// replaced, presented within tokens.refresh_retry_window of it while its
// successor is unused, is answered with that same successor and fresh
// access and ID tokens (see retried). A refresh token is bound to its
// client and never widens its scope; a request that fails leaves a
// current token unrotated.
//
// On a storage.GrantStore a refresh is one storage step (see rotate),
// unless its family must be checked here first (the upstream asked
// again, a narrower scope): then it reads the family, then rotates it.
func (g *Grants) Refresh(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request) (*tokens.Response, error) {
	gs, oneStep := g.store.(storage.GrantStore)
	mark := storage.Mark{}
	if oneStep && g.defersProof(req) {
		var err error
		if req, mark, err = g.pendingProof(rt, cl, req); err != nil {
			return nil, err
		}
	}
	old := req.RefreshToken
	if old == "" || len(old) > 256 {
		if err := g.spendProof(ctx, cl, mark); err != nil {
			return nil, err
		}
		return nil, oauth.InvalidRequest("refresh_token is required")
	}
	famID, _, ok := strings.Cut(old, ".")
	if !ok || famID == "" {
		if err := g.spendProof(ctx, cl, mark); err != nil {
			return nil, err
		}
		return nil, oauth.InvalidGrant("the refresh token is invalid")
	}
	if oneStep {
		return g.rotate(ctx, gs, rt, cl, req, famID, mark)
	}
	fam, err := g.store.GetRefresh(ctx, old)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Not a current token: tell reuse from unknown before anything
		// else of the request is looked at.
		return g.notCurrent(ctx, rt, cl, req, famID, old)
	case err != nil:
		return nil, err
	}
	return g.refreshFamily(ctx, rt, cl, req, famID, fam)
}

// rotate is Refresh on a storage.GrantStore: the DPoP proof's record, the
// checks of the family against the request and its rotation are one
// storage step (one round trip on Redis). A family the store cannot check
// alone (its connector refreshes upstream, a scope asked, another client
// or key: see storage.Rotation) comes back unrotated and goes through
// refreshFamily, as after GetRefresh.
func (g *Grants) rotate(ctx context.Context, gs storage.GrantStore, rt *runtime.Runtime, cl *runtime.Client, req Request, famID string, mark storage.Mark) (*tokens.Response, error) {
	conns := rt.Connectors()
	ids := make([]string, len(conns))
	for i, c := range conns {
		ids[i] = c.ID
	}
	now := g.now()
	next := famID + "." + oauth.RandomToken(32)
	fam, sealed, err := gs.RefreshGrant(ctx, storage.Rotation{
		Old: req.RefreshToken, Next: next, Now: now, Idle: rt.Tokens.RefreshIdle,
		Retry: g.retryState(rt, famID, next), Proof: mark,
		ClientID: cl.ID, DPoPJKT: req.dpopJKT, Scopes: req.Scope, Connectors: ids,
	})
	switch {
	case errors.Is(err, storage.ErrSeen):
		return nil, g.proofSeen(cl)
	case errors.Is(err, storage.ErrUnchecked):
		return g.refreshFamily(ctx, rt, cl, req, famID, fam)
	case err != nil:
		return g.rotationRefused(ctx, rt, cl, req, famID, fam, sealed, err)
	}
	// The store checked what refreshFamily checks first; checked again,
	// a failure now (never expected) leaves the family rotated to a token
	// no one holds, so it is revoked.
	scopes, err := requestedScopes(fam.Grant, req)
	if err == nil && (fam.Grant.ClientID != cl.ID || g.dpopRefresh(cl, fam.Grant, req) != nil) {
		err = oauth.InvalidGrant("the refresh token is invalid or expired")
	}
	if err != nil {
		if rerr := g.tokens.RevokeFamily(ctx, famID, fam.AbsoluteExpiry); rerr != nil {
			return nil, rerr
		}
		return nil, err
	}
	grant := fam.Grant
	grant.DPoPJKT = req.dpopJKT
	resp, err := g.issue(cl, grant, scopes, famID, next, now)
	if err != nil {
		return nil, err
	}
	g.audit.Event("token", "grant_type", config.GrantRefreshToken, "client_id", cl.ID, "sub", grant.Subject)
	return resp, nil
}

// refreshFamily refreshes fam, whose current token req presents, once
// checked here: client, DPoP key, scope, the upstream asked again when
// its connector refreshes; then it rotates the token.
func (g *Grants) refreshFamily(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request, famID string, fam storage.RefreshFamily) (*tokens.Response, error) {
	old := req.RefreshToken
	if fam.Grant.ClientID != cl.ID {
		g.audit.Event("refresh_wrong_client", "client_id", cl.ID, "token_client_id", fam.Grant.ClientID)
		return nil, oauth.InvalidGrant("the refresh token was issued to another client")
	}
	if err := g.dpopRefresh(cl, fam.Grant, req); err != nil {
		return nil, err
	}
	scopes, err := requestedScopes(fam.Grant, req)
	if err != nil {
		return nil, err
	}
	grant, upstreamData, err := g.refreshUpstream(ctx, rt, fam)
	if err != nil {
		return nil, err
	}
	now := g.now()
	next := famID + "." + oauth.RandomToken(32)
	fam, sealed, err := g.store.RotateRefresh(ctx, old, next, now, rt.Tokens.RefreshIdle, g.retryState(rt, famID, next))
	if err != nil {
		// A concurrent request with the same token rotated it since
		// GetRefresh: this one is its retry (what it got from the
		// upstream is dropped; the family keeps what the other kept), or
		// reuse.
		return g.rotationRefused(ctx, rt, cl, req, famID, fam, sealed, err)
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
	grant.DPoPJKT = req.dpopJKT
	resp, err := g.issue(cl, grant, scopes, famID, next, now)
	if err != nil {
		return nil, err
	}
	g.audit.Event("token", "grant_type", config.GrantRefreshToken, "client_id", cl.ID, "sub", grant.Subject)
	return resp, nil
}

// requestedScopes returns the scopes a refresh asks for: the granted ones,
// or a subset of them named in the request (never more).
func requestedScopes(gr storage.Grant, req Request) ([]string, error) {
	if len(req.Scope) == 0 {
		return gr.Scopes, nil
	}
	for _, sc := range req.Scope {
		if !slices.Contains(gr.Scopes, sc) {
			return nil, oauth.InvalidScope("scope %q was not granted", sc)
		}
	}
	return req.Scope, nil
}

// issue mints the access and ID tokens of a refresh from grant, with next
// as the refresh token of the response.
func (g *Grants) issue(cl *runtime.Client, grant storage.Grant, scopes []string, famID, next string, now time.Time) (*tokens.Response, error) {
	grant.Scopes = scopes
	grant.Nonce = ""
	grant.FamilyRef = tokens.FamilyRef(famID)
	resp, err := g.tokens.Issue(cl, grant, now)
	if err != nil {
		return nil, err
	}
	resp.RefreshToken = next
	return resp, nil
}

// retryAD binds a sealed successor to its family: it opens for no other.
func retryAD(famID string) string { return "refresh-retry\x00" + famID }

// retryState is what a rotation to next asks the store to keep for a
// retry: next sealed by the broker's sealer, and the window. Without a
// key-encryption key the sealer seals nothing, and a clear refresh token
// must never reach storage: the rotation then keeps nothing, and a retry
// is reuse as before. The window of the retry itself is what counts, so
// turning it off on reload stops retries at once.
func (g *Grants) retryState(rt *runtime.Runtime, famID, next string) storage.Retry {
	w := rt.Tokens.RefreshRetry()
	if w <= 0 {
		return storage.Retry{}
	}
	sealed := g.sealer.Seal([]byte(next), retryAD(famID))
	if bytes.Equal(sealed, []byte(next)) {
		return storage.Retry{Window: w}
	}
	return storage.Retry{Window: w, SealedNext: sealed}
}

// retried answers a retry (storage.ErrRetry): the token the family's last
// rotation replaced, presented again within the window while its successor
// is unused — a client whose response was lost, most often because the
// replica that rotated died before answering. It is given the successor
// it lost, with fresh access and ID tokens; nothing in the family
// changes. Someone else replaying a stolen token within the window gets
// the same successor the victim got, no capability the victim's own
// request did not create; the victim's next refresh with it, or the
// thief's, then makes the other one's reuse. Another client is refused
// without revoking. A successor that does not open (the key-encryption
// key changed in between) leaves the family held by no one: it is revoked.
func (g *Grants) retried(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request, famID string, fam storage.RefreshFamily, sealed []byte) (*tokens.Response, error) {
	if fam.Grant.ClientID != cl.ID {
		g.audit.Event("refresh_wrong_client", "client_id", cl.ID, "token_client_id", fam.Grant.ClientID)
		return nil, oauth.InvalidGrant("the refresh token was issued to another client")
	}
	if err := g.dpopRefresh(cl, fam.Grant, req); err != nil {
		return nil, err
	}
	scopes, err := requestedScopes(fam.Grant, req)
	if err != nil {
		return nil, err
	}
	if _, ok := rt.Connector(fam.Grant.ConnectorID); !ok {
		return nil, oauth.InvalidGrant("the sign-in method of this token was removed")
	}
	plain, err := g.sealer.Open(sealed, retryAD(famID))
	next := string(plain)
	if err != nil || !strings.HasPrefix(next, famID+".") {
		g.log.Error("refresh: retry: the kept successor does not open", "client_id", cl.ID, "err", err)
		return nil, g.reused(ctx, rt, cl, famID)
	}
	now := g.now()
	fam.Grant.DPoPJKT = req.dpopJKT
	resp, err := g.issue(cl, fam.Grant, scopes, famID, next, now)
	if err != nil {
		return nil, err
	}
	g.audit.Event("refresh_retried", "client_id", cl.ID, "sub", fam.Grant.Subject, "family", tokens.FamilyRef(famID))
	return resp, nil
}

// notCurrent answers a refresh token that is not the current token of a
// live family. Rotating it issues nothing new (the new token is thrown
// away, and no successor is kept for it): the store answers ErrRetry for
// the token the last rotation replaced within the retry window (see
// retried), ErrReused for any other token of a live family (already
// rotated, or never issued), having revoked the family, and ErrNotFound
// for a family unknown, expired or revoked.
func (g *Grants) notCurrent(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request, famID, old string) (*tokens.Response, error) {
	fam, sealed, err := g.store.RotateRefresh(ctx, old, famID+"."+oauth.RandomToken(32), g.now(), rt.Tokens.RefreshIdle, storage.Retry{Window: rt.Tokens.RefreshRetry()})
	if err != nil {
		return g.rotationRefused(ctx, rt, cl, req, famID, fam, sealed, err)
	}
	// It was current after all (it cannot become so between the two
	// reads), and is now rotated to a token no one holds: the family is
	// lost to its client, so revoke it rather than leave it half alive.
	if err := g.tokens.RevokeFamily(ctx, famID, g.now().Add(rt.Tokens.RefreshAbsolute)); err != nil {
		return nil, err
	}
	return nil, oauth.InvalidGrant("the refresh token is invalid or expired")
}

// rotationRefused answers a rotation the store refused with err: a retry
// of the token the last rotation replaced (ErrRetry, with the family and
// its sealed successor), reuse (ErrReused, the family already revoked), an
// unknown or dead family (ErrNotFound), or a storage failure.
func (g *Grants) rotationRefused(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request, famID string, fam storage.RefreshFamily, sealed []byte, err error) (*tokens.Response, error) {
	switch {
	case errors.Is(err, storage.ErrRetry):
		return g.retried(ctx, rt, cl, req, famID, fam, sealed)
	case errors.Is(err, storage.ErrReused):
		return nil, g.reused(ctx, rt, cl, famID)
	case errors.Is(err, storage.ErrNotFound):
		return nil, oauth.InvalidGrant("the refresh token is invalid or expired")
	default:
		return nil, err
	}
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
	if id.ClaimsUnchanged {
		// Nothing new to map: the grant keeps the claims of its sign-in.
		if id.ConnectorData == nil {
			id.ConnectorData = data
		}
		return gr, id.ConnectorData, nil
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
