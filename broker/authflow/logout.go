package authflow

import (
	"context"
	"net/http"
	"net/url"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/templates"
)

// LogoutRequest is an RP-initiated logout request's parameters.
type LogoutRequest struct {
	IDTokenHint, PostLogoutRedirectURI, State, ClientID string
}

// Logout is RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
// The SSO session ends in every case the request is well-formed; the
// browser is sent on to post_logout_redirect_uri only when an unexpired ID
// token of this issuer, issued to the client that registered that URI,
// comes with it.
func (f *Flow) Logout(ctx context.Context, rt *runtime.Runtime, req LogoutRequest, b Browser) (Result, error) {
	var target string
	if req.PostLogoutRedirectURI != "" {
		clientID, err := f.tokens.CheckIDTokenHint(req.IDTokenHint)
		if err != nil {
			reason := "id_token_hint invalid"
			if req.IDTokenHint == "" {
				reason = "id_token_hint missing"
			}
			f.audit.Event("logout_redirect_refused", "reason", reason)
			return Result{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The application asked to send you somewhere after signing out, but did not prove it may. You have not been redirected.")
		}
		if req.ClientID != "" && req.ClientID != clientID {
			return Result{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-out request names two different applications.")
		}
		cl, ok := rt.Client(clientID)
		if !ok || !cl.AllowsLogoutRedirect(req.PostLogoutRedirectURI) {
			return Result{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The application asked to send you to an address it has not registered for sign-out.")
		}
		u, err := url.Parse(req.PostLogoutRedirectURI)
		if err != nil {
			return Result{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-out redirect address is not valid.")
		}
		if req.State != "" {
			q := u.Query()
			q.Set("state", req.State)
			u.RawQuery = q.Encode()
		}
		target = u.String()
	}
	if b.SessionID != "" {
		if sess, err := f.store.GetSession(ctx, b.SessionID); err == nil {
			f.audit.Event("logout", "sub", sess.Subject, "sid", sess.PublicID)
		}
		if err := f.store.DeleteSession(ctx, b.SessionID); err != nil {
			return Result{}, err
		}
	}
	res := Result{EndSession: true}
	if target != "" {
		res.Redirect = target
		return res, nil
	}
	res.Status, res.Template, res.Data = http.StatusOK, "logged_out.html", templates.LoggedOutData{Page: f.pages.Page("Signed out")}
	return res, nil
}
