package grants

import (
	"context"
	"errors"
	"slices"
	"time"

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
//
// On a storage.GrantStore the redemption is one storage step (see
// redeem); otherwise the code is consumed, its session checked and its
// family started one call after the other.
func (g *Grants) Code(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request) (*tokens.Response, error) {
	if gs, ok := g.store.(storage.GrantStore); ok {
		return g.redeem(ctx, gs, rt, cl, req)
	}
	if req.Code == "" || len(req.Code) > 128 {
		return nil, oauth.InvalidRequest("code is required")
	}
	ac, err := g.store.ConsumeCode(ctx, req.Code)
	if err != nil {
		return nil, g.consumeRefused(ctx, rt, cl, ac, err)
	}
	now := g.now()
	if err := g.checkCode(rt, cl, &ac, req, now); err != nil {
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
			return nil, g.sessionEnded(cl, ac)
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
			// A logout writes the session's marker before it revokes the
			// session's families: one that ended the session since the
			// check above did not see this family, and is seen now.
			if sid := ac.Grant.SessionID; sid != "" {
				ended, err := g.tokens.SessionRevoked(ctx, sid)
				if err != nil {
					return nil, err
				}
				if ended {
					if err := g.store.RevokeFamily(ctx, fam.ID, fam.AbsoluteExpiry); err != nil {
						return nil, err
					}
					return nil, g.sessionEnded(cl, ac)
				}
			}
			resp.RefreshToken = token
		}
	}
	g.audit.Event("token", "grant_type", config.GrantAuthorizationCode, "client_id", cl.ID, "sub", ac.Grant.Subject, "connector", ac.Grant.ConnectorID)
	return resp, nil
}

// redeem is Code on a storage.GrantStore: the DPoP proof's record, the
// code's consumption, the check that its session has not ended and the
// start of its refresh family are one storage step (one round trip on
// Redis). The family gets a new id, chosen here so that its first token
// can be made before that step; the store sets it as the code's family
// id, so that a replay of the code revokes it. The checks of the code
// against the request come after that step, as they do after ConsumeCode:
// a code that fails them is spent, and the family it started (no one
// holds its token) is revoked.
func (g *Grants) redeem(ctx context.Context, gs storage.GrantStore, rt *runtime.Runtime, cl *runtime.Client, req Request) (*tokens.Response, error) {
	mark := storage.Mark{}
	if g.defersProof(req) {
		var err error
		if req, mark, err = g.pendingProof(rt, cl, req); err != nil {
			return nil, err
		}
	}
	if req.Code == "" || len(req.Code) > 128 {
		if err := g.spendProof(ctx, cl, mark); err != nil {
			return nil, err
		}
		return nil, oauth.InvalidRequest("code is required")
	}
	now := g.now()
	famID := oauth.RandomToken(16)
	r := storage.Redemption{
		Now:             now,
		Proof:           mark,
		EndedSessions:   tokens.EndedSessions,
		FamilyID:        famID,
		RefreshIdle:     rt.Tokens.RefreshIdle,
		RefreshAbsolute: rt.Tokens.RefreshAbsolute,
	}
	if cl.AllowsGrant(config.GrantRefreshToken) {
		r.RefreshToken = famID + "." + oauth.RandomToken(32)
		if cl.Public {
			r.DPoPJKT = req.dpopJKT
		}
	}
	red, err := gs.RedeemCode(ctx, req.Code, r)
	if errors.Is(err, storage.ErrSeen) {
		return nil, g.proofSeen(cl)
	}
	if err != nil {
		return nil, g.consumeRefused(ctx, rt, cl, red.Code, err)
	}
	ac := red.Code
	refuse := func(err error) (*tokens.Response, error) {
		if red.Family != nil {
			if rerr := g.tokens.RevokeFamily(ctx, red.Family.ID, red.Family.AbsoluteExpiry); rerr != nil {
				return nil, rerr
			}
		}
		return nil, err
	}
	if err := g.checkCode(rt, cl, &ac, req, now); err != nil {
		return refuse(err)
	}
	if red.SessionEnded {
		return refuse(g.sessionEnded(cl, ac))
	}
	grant := ac.Grant
	grant.FamilyRef = tokens.FamilyRef(ac.FamilyID)
	grant.DPoPJKT = req.dpopJKT
	resp, err := g.tokens.Issue(cl, grant, now)
	if err != nil {
		return refuse(err)
	}
	_, starts := r.StartsFamily(ac.Grant)
	switch {
	case red.Family != nil:
		resp.RefreshToken = r.RefreshToken
	case starts:
		// A replay of this code raced this redemption (on a store that
		// redeems in steps) and revoked the family first: this (first)
		// redemption still answers, but without a refresh token.
		g.audit.Event("refresh_not_issued", "client_id", cl.ID, "sub", ac.Grant.Subject, "reason", "code replayed during redemption")
	case r.RefreshToken != "" && slices.Contains(ac.Grant.Scopes, "offline_access"):
		g.audit.Event("refresh_not_issued", "client_id", cl.ID, "sub", ac.Grant.Subject, "connector", ac.Grant.ConnectorID, "reason", "the upstream issued no refresh token")
	}
	g.audit.Event("token", "grant_type", config.GrantAuthorizationCode, "client_id", cl.ID, "sub", ac.Grant.Subject, "connector", ac.Grant.ConnectorID)
	return resp, nil
}

// consumeRefused answers a code the store would not consume: a replay
// (ErrAlreadyUsed with the record: the family its first redemption
// started is revoked with its access tokens), unknown or expired, or a
// storage failure.
func (g *Grants) consumeRefused(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, ac storage.AuthCode, err error) error {
	switch {
	case errors.Is(err, storage.ErrAlreadyUsed):
		if rerr := g.tokens.RevokeFamily(ctx, ac.FamilyID, g.now().Add(rt.Tokens.RefreshAbsolute)); rerr != nil {
			g.log.Error("revoke family of replayed code", "client_id", cl.ID, "err", rerr)
			return rerr
		}
		g.audit.Event("code_replayed", "client_id", cl.ID, "code_client_id", ac.ClientID, "sub", ac.Grant.Subject)
		return oauth.InvalidGrant("the code was already used; tokens issued from it are revoked")
	case errors.Is(err, storage.ErrNotFound):
		return oauth.InvalidGrant("the code is invalid or expired")
	default:
		return err
	}
}

// sessionEnded refuses a code issued just before its session ended
// (single logout): it must not start a refresh family after the end
// revoked the session's.
func (g *Grants) sessionEnded(cl *runtime.Client, ac storage.AuthCode) error {
	g.audit.Event("code_session_ended", "client_id", cl.ID, "sub", ac.Grant.Subject, "sid", ac.Grant.SessionID)
	return oauth.InvalidGrant("the sign-in this code came from has ended")
}

// checkCode checks a consumed code against the request: expiry, client,
// redirect_uri, PKCE, its connector, and its DPoP binding (which sets the
// grant's DPoPJKT for its family, see dpopCode).
func (g *Grants) checkCode(rt *runtime.Runtime, cl *runtime.Client, ac *storage.AuthCode, req Request, now time.Time) error {
	if !ac.Expiry.After(now) {
		return oauth.InvalidGrant("the code is invalid or expired")
	}
	if ac.ClientID != cl.ID {
		g.audit.Event("code_wrong_client", "client_id", cl.ID, "code_client_id", ac.ClientID)
		return oauth.InvalidGrant("the code was issued to another client")
	}
	if req.RedirectURI != ac.RedirectURI {
		return oauth.InvalidGrant("redirect_uri does not match the authorization request")
	}
	switch v := req.CodeVerifier; {
	case ac.CodeChallenge == "" && v != "":
		return oauth.InvalidGrant("code_verifier sent but no code_challenge was")
	case ac.CodeChallenge != "":
		if v == "" {
			return oauth.InvalidGrant("code_verifier is required")
		}
		if !oauth.ValidVerifier(v) {
			return oauth.InvalidGrant("code_verifier is malformed")
		}
		if !oauth.VerifierMatches(v, ac.CodeChallenge) {
			return oauth.InvalidGrant("code_verifier does not match code_challenge")
		}
	}
	if _, ok := rt.Connector(ac.Grant.ConnectorID); !ok {
		return oauth.InvalidGrant("the sign-in method of this code was removed")
	}
	return g.dpopCode(cl, &ac.Grant, req)
}
