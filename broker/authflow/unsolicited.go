package authflow

import (
	"context"
	"net/http"
	"slices"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/connectors"
)

// errUnsolicitedMisconfigured answers an IdP-initiated sign-in whose
// configured target the client configuration does not allow; the audit
// log says why.
var errUnsolicitedMisconfigured = &oauth.PageError{Status: http.StatusInternalServerError, Heading: "Sign-in not set up", Message: "Signing in from your organization's portal is not set up correctly for this application. Contact your administrator.", Code: "idp_initiated_misconfigured"}

// unsolicited completes a sign-in the upstream started (a SAML
// IdP-initiated response posted to connector connID's callback without a
// pending auth request). handled is false when the connector takes no
// such sign-ins: the caller then answers as for any unknown request.
//
// The connector checks the response in full (signature, audience,
// destination, validity, replay, and that it answers no request); the
// target client must exist, be confidential (its code has no PKCE), allow
// the connector, the authorization code flow, the redirect URI and every
// scope. Only then is an auth request stored, to be taken once by Finish.
func (f *Flow) unsolicited(ctx context.Context, rt *runtime.Runtime, connID string, r *http.Request) (Result, bool, error) {
	conn, ok := rt.Connector(connID)
	if !ok {
		return Result{}, false, nil
	}
	impl, err := conn.Open(ctx)
	if err != nil {
		return Result{}, false, nil
	}
	pc, isPOST := impl.(connectors.POSTConnector)
	uc, isUnsolicited := impl.(connectors.UnsolicitedConnector)
	if !isPOST || !isUnsolicited {
		return Result{}, false, nil
	}
	clientID, redirectURI, scopes, ok := uc.UnsolicitedTarget()
	if !ok {
		return Result{}, false, nil
	}
	req := storage.AuthRequest{
		ID:          oauth.RandomToken(24),
		ClientID:    clientID,
		RedirectURI: redirectURI,
		Scopes:      oauth.Dedupe(scopes),
		MaxAge:      -1,
		ConnectorID: conn.ID,
		// Bound to no browser: it is taken within this request.
		BrowserBinding: storage.Hash(oauth.RandomToken(24)),
		Expiry:         f.now().Add(rt.Tokens.AuthRequest),
	}
	cl, reason := unsolicitedClient(rt, conn.ID, req)
	if reason != "" {
		f.audit.Event("login_rejected", "connector", conn.ID, "client_id", clientID, "reason", "idp-initiated sign-in: "+reason)
		return Result{}, true, errUnsolicitedMisconfigured
	}
	id, err := pc.HandlePOST(ctx, scopesOf(req), nil, r)
	if err != nil {
		return Result{}, true, f.upstreamFailure(conn, req, err)
	}
	if err := f.store.CreateAuthRequest(ctx, req); err != nil {
		return Result{}, true, err
	}
	f.audit.Event("idp_initiated", "connector", conn.ID, "client_id", cl.ID)
	res, err := f.Finish(ctx, rt, cl, conn, impl, req, id)
	return res, true, err
}

// unsolicitedClient returns the client of an IdP-initiated sign-in, or
// why its configuration does not allow one.
func unsolicitedClient(rt *runtime.Runtime, connID string, req storage.AuthRequest) (*runtime.Client, string) {
	cl, ok := rt.Client(req.ClientID)
	switch {
	case !ok:
		return nil, "idp_initiated.client_id names no client"
	case cl.Public:
		return nil, "idp_initiated.client_id is a public client (its code would carry no PKCE)"
	case !cl.AllowsConnector(connID):
		return nil, "the client may not use this connector"
	case !cl.AllowsGrant(config.GrantAuthorizationCode):
		return nil, "the client may not use the authorization code flow"
	case !cl.MatchRedirect(req.RedirectURI):
		return nil, "idp_initiated.redirect_uri is not registered for the client"
	case !slices.Contains(req.Scopes, "openid"):
		return nil, "idp_initiated.scopes lacks openid"
	}
	for _, sc := range req.Scopes {
		if !cl.AllowsScope(sc) {
			return nil, "scope " + sc + " is not allowed for the client"
		}
	}
	return cl, ""
}
