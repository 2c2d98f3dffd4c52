package authflow

import (
	"context"
	"net/url"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
)

// errBadCancelLink answers a cancel link the broker did not make for this
// browser and this sign-in.
var errBadCancelLink = oauth.BadRequestPage("invalid_csrf", "This link to cancel the sign-in is not valid. Go back to the application and start again.")

// Cancel gives up auth request reqID at the person's request (the Cancel
// link of the chooser, the password form and the pages between): the
// request is deleted and the browser goes back to the client with
// access_denied, its state and iss (RFC 6749 §4.1.2.1, RFC 9207). It
// always returns an error: that *oauth.RedirectError, which the writer
// sends, or the error page of a refusal.
//
// Like every other step it must come from the browser that started the
// sign-in (loadRequest), and with the token of the link the broker gave
// that browser: the request id alone travels in URLs (and to an upstream
// as its state), so it does not let another site end someone's sign-in.
// Anything else is an error page, and the sign-in goes on.
func (f *Flow) Cancel(ctx context.Context, rt *runtime.Runtime, reqID, token string, b Browser) error {
	req, err := f.loadRequest(ctx, reqID, b)
	if err != nil {
		return err
	}
	if !oauth.ConstantTimeEqual(token, cancelToken(b.BrowserID, req.ID)) {
		f.audit.Event("login_rejected", "client_id", req.ClientID, "connector", req.ConnectorID, "reason", "bad cancel token")
		return errBadCancelLink
	}
	if req.Test != nil {
		return f.cancelTest(ctx, rt, req)
	}
	// The configuration may have been reloaded since /authorize: return
	// only to a client and redirect URI that are still registered.
	cl, ok := rt.Client(req.ClientID)
	if !ok || !cl.MatchRedirect(req.RedirectURI) {
		return errRequestGone
	}
	if _, err := f.store.TakeAuthRequest(ctx, req.ID); err != nil {
		if isNotFound(err) {
			return errRequestGone
		}
		return err
	}
	f.audit.Event("login_cancelled", "client_id", cl.ID, "connector", req.ConnectorID)
	return &oauth.RedirectError{RedirectURI: req.RedirectURI, State: req.State, Code: oauth.ErrAccessDenied, Description: "the user cancelled the sign-in"}
}

// cancelToken binds a cancel link to this browser and this request, like
// the password form's token, under its own label.
func cancelToken(browserID, reqID string) string {
	return csrfToken(browserID, reqID+"\x00cancel")
}

// cancelURL is the Cancel link of auth request reqID for the browser with
// binding id browserID.
func (f *Flow) cancelURL(browserID, reqID string) string {
	return f.cancel + "?req=" + url.QueryEscape(reqID) + "&csrf=" + url.QueryEscape(cancelToken(browserID, reqID))
}

// wayBackError is an error page of a sign-in still in progress, with the
// ways it offers: try again (RetryURL) or give up and return to the
// application (CancelURL). The handlers render those links; anything that
// sees only the error finds its *oauth.PageError (Unwrap) and shows that.
type wayBackError struct {
	page            *oauth.PageError
	retry, cancelTo string
}

func (e *wayBackError) Error() string { return e.page.Error() }
func (e *wayBackError) Unwrap() error { return e.page }
