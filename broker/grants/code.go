package grants

import (
	"context"
	"errors"
	"slices"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// Code redeems an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6). A
// code is redeemed once; a replayed code revokes the refresh family that
// its first redemption started and every access token issued from it
// (RFC 6749 §4.1.2): the code's family id names them all.
func (g *Grants) Code(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request) (*tokens.Response, error) {
	if req.Code == "" || len(req.Code) > 128 {
		return nil, oauth.InvalidRequest("code is required")
	}
	ac, err := g.store.ConsumeCode(ctx, req.Code)
	switch {
	case errors.Is(err, storage.ErrAlreadyUsed):
		if rerr := g.tokens.RevokeFamily(ctx, ac.FamilyID, g.now().Add(rt.Tokens.RefreshAbsolute)); rerr != nil {
			g.log.Error("revoke family of replayed code", "client_id", cl.ID, "err", rerr)
			return nil, rerr
		}
		g.audit.Event("code_replayed", "client_id", cl.ID, "code_client_id", ac.ClientID, "sub", ac.Grant.Subject)
		return nil, oauth.InvalidGrant("the code was already used; tokens issued from it are revoked")
	case errors.Is(err, storage.ErrNotFound):
		return nil, oauth.InvalidGrant("the code is invalid or expired")
	case err != nil:
		return nil, err
	}
	now := g.now()
	if !ac.Expiry.After(now) {
		return nil, oauth.InvalidGrant("the code is invalid or expired")
	}
	if ac.ClientID != cl.ID {
		g.audit.Event("code_wrong_client", "client_id", cl.ID, "code_client_id", ac.ClientID)
		return nil, oauth.InvalidGrant("the code was issued to another client")
	}
	if req.RedirectURI != ac.RedirectURI {
		return nil, oauth.InvalidGrant("redirect_uri does not match the authorization request")
	}
	switch v := req.CodeVerifier; {
	case ac.CodeChallenge == "" && v != "":
		return nil, oauth.InvalidGrant("code_verifier sent but no code_challenge was")
	case ac.CodeChallenge != "":
		if v == "" {
			return nil, oauth.InvalidGrant("code_verifier is required")
		}
		if !oauth.ValidVerifier(v) {
			return nil, oauth.InvalidGrant("code_verifier is malformed")
		}
		if !oauth.VerifierMatches(v, ac.CodeChallenge) {
			return nil, oauth.InvalidGrant("code_verifier does not match code_challenge")
		}
	}
	if _, ok := rt.Connector(ac.Grant.ConnectorID); !ok {
		return nil, oauth.InvalidGrant("the sign-in method of this code was removed")
	}
	if err := g.dpopCode(cl, &ac.Grant, req); err != nil {
		return nil, err
	}
	// A code issued just before its session ended (single logout) must
	// not start a refresh family after the end revoked the session's.
	if sid := ac.Grant.SessionID; sid != "" {
		ended, err := g.tokens.SessionRevoked(ctx, sid)
		if err != nil {
			return nil, err
		}
		if ended {
			g.audit.Event("code_session_ended", "client_id", cl.ID, "sub", ac.Grant.Subject, "sid", sid)
			return nil, oauth.InvalidGrant("the sign-in this code came from has ended")
		}
	}
	grant := ac.Grant
	grant.FamilyRef = tokens.FamilyRef(ac.FamilyID)
	grant.DPoPJKT = req.dpopJKT
	resp, err := g.tokens.Issue(cl, grant, now)
	if err != nil {
		return nil, err
	}
	absolute := now.Add(rt.Tokens.RefreshAbsolute)
	if u := ac.Grant.RefreshUntil; !u.IsZero() {
		absolute = earliest(absolute, u)
	}
	wantRefresh := slices.Contains(ac.Grant.Scopes, "offline_access") && cl.AllowsGrant(config.GrantRefreshToken)
	if wantRefresh && (ac.Grant.NoRefresh || !absolute.After(now)) {
		wantRefresh = false
		g.audit.Event("refresh_not_issued", "client_id", cl.ID, "sub", ac.Grant.Subject, "connector", ac.Grant.ConnectorID, "reason", "the upstream issued no refresh token")
	}
	if wantRefresh {
		token := ac.FamilyID + "." + oauth.RandomToken(32)
		fam := storage.RefreshFamily{
			ID:             ac.FamilyID,
			Grant:          ac.Grant,
			CreatedAt:      now,
			LastUsed:       now,
			IdleExpiry:     earliest(now.Add(rt.Tokens.RefreshIdle), absolute),
			AbsoluteExpiry: absolute,
		}
		switch err := g.store.CreateRefresh(ctx, fam, token); {
		case errors.Is(err, storage.ErrNotFound):
			// A replay of this code raced this redemption and revoked the
			// family first: this (first) redemption still answers, but
			// without a refresh token.
			g.audit.Event("refresh_not_issued", "client_id", cl.ID, "sub", ac.Grant.Subject, "reason", "code replayed during redemption")
		case errors.Is(err, storage.ErrAlreadyExists):
			return nil, oauth.InvalidGrant("the code was already used")
		case err != nil:
			return nil, err
		default:
			resp.RefreshToken = token
		}
	}
	g.audit.Event("token", "grant_type", config.GrantAuthorizationCode, "client_id", cl.ID, "sub", ac.Grant.Subject, "connector", ac.Grant.ConnectorID)
	return resp, nil
}
