package grants

import (
	"context"
	"strings"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// ClientCredentials issues an access token to a confidential client for
// itself (RFC 6749 §4.4): no ID token, no refresh token. The requested
// scopes and audiences must be among the client's own.
func (g *Grants) ClientCredentials(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request) (*tokens.Response, error) {
	if cl.Public {
		return nil, oauth.UnauthorizedClient("public clients cannot use client_credentials")
	}
	for _, sc := range req.Scope {
		if sc == "openid" || sc == "offline_access" || !cl.AllowsScope(sc) {
			return nil, oauth.InvalidScope("scope %q is not allowed for client_credentials", sc)
		}
	}
	aud, err := audiences(req, cl)
	if err != nil {
		return nil, err
	}
	now := g.now()
	grant := storage.Grant{ClientID: cl.ID, Subject: cl.ID, Scopes: req.Scope}
	grant.DPoPJKT = req.dpopJKT
	at, exp, err := g.tokens.AccessToken(cl, grant, aud, now)
	if err != nil {
		return nil, err
	}
	g.audit.Event("token", "grant_type", config.GrantClientCredentials, "client_id", cl.ID)
	return &tokens.Response{AccessToken: at, TokenType: tokenType(grant), ExpiresIn: int64(exp.Sub(now).Seconds()), Scope: strings.Join(req.Scope, " ")}, nil
}
