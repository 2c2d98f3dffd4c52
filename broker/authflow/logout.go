package authflow

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/templates"
)

// LogoutRequest is an RP-initiated logout request's parameters.
type LogoutRequest struct {
	IDTokenHint, PostLogoutRedirectURI, State, ClientID string
	// Confirm is the token the confirmation page posts back. HandleLogout
	// sets it only from a same-origin POST (it refuses a cross-origin one).
	Confirm string
}

// signOutRefused is a 400 page for a sign-out request that cannot go on:
// oauth.BadRequestPage, headed as a sign-out.
func signOutRefused(message string) *oauth.PageError {
	return &oauth.PageError{Status: http.StatusBadRequest, Heading: "This sign-out request cannot be completed", Message: message, Code: oauth.ErrInvalidRequest}
}

// Errors of the logout confirmation.
var errLogoutExpired = &oauth.PageError{Status: http.StatusBadRequest, Heading: "Sign-out not confirmed", Message: "The sign-out form has expired or was not made for this browser. You are still signed in; start again from the application to sign out.", Code: "invalid_csrf"}

// relayField marks the relayed logout post (see HandleLogout), so that it
// is never relayed again.
const relayField = "relayed"

// Logout is RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
//
// The browser's SSO session ends at once only when id_token_hint is an
// unexpired ID token of this issuer for that very session (its sid).
// Otherwise — no hint, a forged one, or a genuine one of another session,
// which an attacker can get by signing in themselves — the person is asked
// first: a confirmation page whose form posts back a token bound to the
// session cookie, and only that post (same-origin, see HandleLogout) ends
// the session. A browser with no live session has nothing to end.
//
// The browser is sent on to post_logout_redirect_uri only when an
// unexpired ID token of this issuer, issued to the client that registered
// that URI, comes with it; a request naming the URI without one is
// refused.
func (f *Flow) Logout(ctx context.Context, rt *runtime.Runtime, req LogoutRequest, b Browser) (Result, error) {
	hintClient, hintErr := f.tokens.CheckIDTokenHint(req.IDTokenHint)
	target, err := f.logoutTarget(rt, req, hintClient, hintErr)
	if err != nil {
		return Result{}, err
	}
	sess, live, err := f.currentSession(ctx, b)
	if err != nil {
		return Result{}, err
	}
	if !live {
		// Nothing to end. A stale cookie the browser sent is cleared; one
		// it did not send (a cross-site POST leaves SameSite=Lax cookies
		// behind) is not ours to clear.
		return f.signedOut(Result{EndSession: b.SessionID != ""}, target, nil, ""), nil
	}
	if hintErr != nil || sess.PublicID == "" || hintSID(req.IDTokenHint) != sess.PublicID {
		if req.Confirm == "" {
			return page(http.StatusOK, "logout_confirm.html", templates.LogoutConfirmData{
				Page:   f.pages.Page("Sign out"),
				Action: f.logout,
				CSRF:   logoutToken(b.SessionID),
				Fields: logoutFields(req),
			}), nil
		}
		if !oauth.ConstantTimeEqual(req.Confirm, logoutToken(b.SessionID)) {
			f.audit.Event("logout_rejected", "reason", "bad csrf token")
			return Result{}, errLogoutExpired
		}
	}
	f.audit.Event("logout", "sub", sess.Subject, "sid", sess.PublicID)
	front, err := f.endSession(ctx, rt, sess, b)
	if err != nil {
		return Result{}, err
	}
	res := Result{EndSession: true}
	if up, ok := f.upstreamLogout(ctx, rt, sess, target, front); ok {
		up.EndSession = true
		return up, nil
	}
	return f.signedOut(res, target, front, ""), nil
}

// endSession ends the browser's session sess — with its refresh families,
// its access tokens and back-channel logout to the clients it signed into
// (logout.Service.End) — and returns the front-channel logout URLs of
// those clients.
func (f *Flow) endSession(ctx context.Context, rt *runtime.Runtime, sess storage.Session, b Browser) ([]string, error) {
	if sess.PublicID == "" {
		// A session without a public id (stored by an older version) has
		// nothing that names it but its cookie.
		if err := f.store.DeleteSession(ctx, b.SessionID); err != nil && !isNotFound(err) {
			return nil, err
		}
		return nil, nil
	}
	ended, err := f.ending.End(ctx, sess.Subject, sess.PublicID, "rp")
	if err != nil {
		return nil, err
	}
	return f.ending.FrontChannel(rt, ended.Sessions), nil
}

// logoutTarget checks post_logout_redirect_uri against the hint's client
// and returns it with state added; "" when none was asked for.
func (f *Flow) logoutTarget(rt *runtime.Runtime, req LogoutRequest, clientID string, hintErr error) (string, error) {
	if req.PostLogoutRedirectURI == "" {
		return "", nil
	}
	if hintErr != nil {
		reason := "id_token_hint invalid"
		if req.IDTokenHint == "" {
			reason = "id_token_hint missing"
		}
		f.audit.Event("logout_redirect_refused", "reason", reason)
		return "", signOutRefused("The application asked to send you somewhere after signing out, but did not prove it may. You have not been redirected.")
	}
	if req.ClientID != "" && req.ClientID != clientID {
		return "", signOutRefused("The sign-out request names two different applications.")
	}
	cl, ok := rt.Client(clientID)
	if !ok || !cl.AllowsLogoutRedirect(req.PostLogoutRedirectURI) {
		return "", signOutRefused("The application asked to send you to an address it has not registered for sign-out.")
	}
	u, err := url.Parse(req.PostLogoutRedirectURI)
	if err != nil {
		return "", signOutRefused("The sign-out redirect address is not valid.")
	}
	if req.State != "" {
		q := u.Query()
		q.Set("state", req.State)
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// signedOut completes res: off to target, or the signed-out page. With
// front-channel logout URLs it is always the page, which loads them in
// iframes and then goes on to target.
func (f *Flow) signedOut(res Result, target string, front []string, note string) Result {
	if target != "" && len(front) == 0 {
		res.Redirect = target
		return res
	}
	res.Status, res.Template = http.StatusOK, "logged_out.html"
	res.Data = templates.LoggedOutData{Page: f.pages.Page("Signed out"), FrontChannel: front, Continue: target, Note: note}
	res.FrameSources = front
	return res
}

// logoutToken is the confirmation form's token. It is bound to the
// session cookie (HttpOnly, secret), which the confirmation ends: it cannot
// be computed without it, and it does not outlive the session.
func logoutToken(sessionID string) string { return csrfToken(sessionID, "logout") }

// logoutFields are the request's parameters for a form that posts it again.
func logoutFields(req LogoutRequest) map[string]string {
	fields := make(map[string]string)
	for k, v := range map[string]string{
		"id_token_hint":            req.IDTokenHint,
		"post_logout_redirect_uri": req.PostLogoutRedirectURI,
		"state":                    req.State,
		"client_id":                req.ClientID,
	} {
		if v != "" {
			fields[k] = v
		}
	}
	return fields
}

// hintSID returns the sid claim of an ID token that CheckIDTokenHint has
// verified ("" when it has none). It reads the claim only; it checks
// nothing.
func hintSID(hint string) string {
	parts := strings.Split(hint, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		SID string `json:"sid"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.SID
}

// HandleLogout serves GET and POST /logout.
//
// A POST carrying the confirmation token must come from the broker's own
// page: a cross-origin one is refused (403). A cross-origin POST without
// the session cookie — an RP's sign-out form, which the browser sends
// without the SameSite=Lax cookie — is answered with a page that posts the
// same parameters again from the broker's origin, where the cookie rides
// along; Logout then decides as usual. Nothing else is checked for
// origin: an RP may post here.
func (f *Flow) HandleLogout(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return signOutRefused("The sign-out request is malformed.")
	}
	req := LogoutRequest{
		IDTokenHint:           r.Form.Get("id_token_hint"),
		PostLogoutRedirectURI: r.Form.Get("post_logout_redirect_uri"),
		State:                 r.Form.Get("state"),
		ClientID:              r.Form.Get("client_id"),
	}
	b := f.cookies.Read(r)
	if r.Method == http.MethodPost {
		req.Confirm = r.PostForm.Get("csrf")
		crossOrigin := f.origin.Check(r) != nil
		switch {
		case crossOrigin && req.Confirm != "":
			f.audit.Event("logout_rejected", "reason", "cross-origin confirmation")
			return errCrossOrigin
		case crossOrigin && b.SessionID == "" && r.PostForm.Get(relayField) == "":
			fields := logoutFields(req)
			fields[relayField] = "1"
			return f.write(c.Response(), r, page(http.StatusOK, "logout_confirm.html", templates.LogoutConfirmData{
				Page: f.pages.Page("Signing out"), Action: f.logout, Fields: fields, Relay: true,
			}))
		}
	}
	res, err := f.Logout(r.Context(), f.current(), req, b)
	if err != nil {
		return err
	}
	return f.write(c.Response(), r, res)
}
