package authflow

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/templates"
)

// upstreamLogoutLifetime is how long a sign-out waits for the browser to
// come back from the upstream's logout.
const upstreamLogoutLifetime = 10 * time.Minute

// upstreamReplayNamespace holds the upstream logout messages seen, per
// connector, so that a replayed one is refused.
const upstreamReplayNamespace = "upstream_logout"

// Errors of the connector logout endpoint.
var (
	errNoUpstreamLogout = &oauth.PageError{Status: http.StatusNotFound, Heading: "Not found", Message: "This sign-in provider does not take part in single logout.", Code: "not_found"}
	errLogoutReplayed   = &oauth.PageError{Status: http.StatusBadRequest, Heading: "Sign-out refused", Message: "This sign-out message was already used.", Code: oauth.ErrInvalidRequest}
)

// ConnectorLogoutURL is the absolute URL of connector id's logout
// endpoint: where the upstream sends the browser back after a logout the
// broker started, and where it sends its own logout notices.
func (f *Flow) ConnectorLogoutURL(id string) string {
	return f.issuer + "/logout/" + url.PathEscape(id)
}

// upstreamLogout starts ending the upstream session sess rests on, when
// its connector takes part (connectors.LogoutConnector) and
// upstream_logout is on: the browser goes to the upstream, which sends it
// back to ConnectorLogoutURL, where ConnectorLogout continues to target
// with the front-channel iframes. ok is false when there is nothing to do
// upstream; a failure is logged and does not stop the sign-out, which has
// already ended the broker's session.
func (f *Flow) upstreamLogout(ctx context.Context, rt *runtime.Runtime, sess storage.Session, target string, front []string) (Result, bool) {
	conn, ok := rt.Connector(sess.ConnectorID)
	if !ok || !conn.UpstreamLogout {
		return Result{}, false
	}
	impl, err := conn.Open(ctx)
	if err != nil {
		f.log.Warn("upstream logout: connector unavailable", "connector", conn.ID, "err", err)
		return Result{}, false
	}
	lc, ok := impl.(connectors.LogoutConnector)
	if !ok {
		return Result{}, false
	}
	if len(sess.LogoutData) == 0 {
		return Result{}, false // nothing to name the upstream session with
	}
	data, err := f.sealer.Open(sess.LogoutData, sess.PublicID)
	if err != nil {
		f.log.Warn("upstream logout: logout data unreadable", "connector", conn.ID, "err", err)
		return Result{}, false
	}
	id := connectors.Identity{Subject: sess.Grant.UpstreamSubject, SessionID: sess.UpstreamSID, LogoutData: data}
	state := oauth.RandomToken(24)
	lr, ok, err := lc.LogoutRequest(ctx, id, f.ConnectorLogoutURL(conn.ID), state)
	if err != nil {
		f.log.Warn("upstream logout: request failed", "connector", conn.ID, "err", err)
		return Result{}, false
	}
	if !ok {
		return Result{}, false
	}
	rec := storage.AuthRequest{
		ID:          storage.UpstreamLogoutID(state),
		ConnectorID: conn.ID,
		Expiry:      f.now().Add(upstreamLogoutLifetime),
		Logout:      &storage.LogoutState{Target: target, FrontChannel: front},
	}
	if err := f.store.CreateAuthRequest(ctx, rec); err != nil {
		f.log.Warn("upstream logout: cannot keep the sign-out", "connector", conn.ID, "err", err)
		return Result{}, false
	}
	f.audit.Event("upstream_logout_started", "connector", conn.ID, "sub", sess.Subject, "sid", sess.PublicID)
	if lr.RedirectURL != "" {
		return redirect(lr.RedirectURL), true
	}
	return page(http.StatusOK, "post.html", templates.PostData{Page: f.pages.Page("Signing out"), Action: lr.PostURL, Fields: lr.Fields}), true
}

// ConnectorLogout serves a request to connector connID's logout endpoint
// (ConnectorLogoutURL): the browser back from the upstream's logout, or
// the upstream telling the broker that one of its sessions ended (an
// OpenID provider's back-channel logout_token, a SAML IdP's
// LogoutRequest). For a notice it ends every broker session of that
// upstream account or session, as logout.Service.End does (refresh
// families, access tokens, back-channel logout to the applications).
// backchannel is true for a notice that came without a browser: the
// caller answers it with 200 and no body.
func (f *Flow) ConnectorLogout(ctx context.Context, rt *runtime.Runtime, connID string, r *http.Request) (res Result, backchannel bool, err error) {
	conn, ok := rt.Connector(connID)
	if !ok {
		return Result{}, false, errNoUpstreamLogout
	}
	impl, err := conn.Open(ctx)
	if err != nil {
		return Result{}, false, &oauth.PageError{Status: http.StatusServiceUnavailable, Heading: "Sign-out failed", Message: conn.Name + " could not be reached. Please try again in a moment.", Code: "upstream_unavailable"}
	}
	lc, ok := impl.(connectors.LogoutConnector)
	if !ok {
		return Result{}, false, errNoUpstreamLogout
	}
	ev, err := lc.HandleLogout(ctx, r, f.ConnectorLogoutURL(conn.ID))
	if err != nil {
		msg := "The sign-out message from " + conn.Name + " is not valid."
		if ue, ok := errors.AsType[*connectors.UserError](err); ok && ue.Message != "" {
			msg = ue.Message
		}
		f.audit.Event("upstream_logout_rejected", "connector", conn.ID, "reason", err.Error())
		return Result{}, false, &oauth.PageError{Status: http.StatusBadRequest, Heading: "Sign-out refused", Message: msg, Code: oauth.ErrInvalidRequest}
	}
	switch {
	case ev.Returned:
		return f.upstreamReturned(ctx, conn, ev)
	case ev.Ended:
		return f.upstreamEnded(ctx, conn, ev)
	}
	return Result{}, false, oauth.BadRequestPage(oauth.ErrInvalidRequest, "This is not a sign-out message.")
}

// upstreamReturned continues a sign-out the broker started once the
// upstream has ended its session: to the application's
// post_logout_redirect_uri, or the signed-out page, with the front-channel
// iframes.
func (f *Flow) upstreamReturned(ctx context.Context, conn *runtime.Connector, ev connectors.LogoutEvent) (Result, bool, error) {
	note := ""
	if !ev.Success {
		note = conn.Name + " did not confirm that it signed you out there too."
		f.audit.Event("upstream_logout_failed", "connector", conn.ID)
	}
	if ev.State == "" {
		return f.signedOut(Result{}, "", nil, note), false, nil
	}
	rec, err := f.store.TakeAuthRequest(ctx, storage.UpstreamLogoutID(ev.State))
	switch {
	case isNotFound(err) || (err == nil && (rec.Logout == nil || rec.ConnectorID != conn.ID)):
		// An old or unknown state: the broker's session ended anyway.
		return f.signedOut(Result{}, "", nil, note), false, nil
	case err != nil:
		return Result{}, false, err
	}
	if ev.Success {
		f.audit.Event("upstream_logout_done", "connector", conn.ID)
	}
	return f.signedOut(Result{}, rec.Logout.Target, rec.Logout.FrontChannel, note), false, nil
}

// upstreamEnded ends the broker's sessions of the upstream session or
// account the notice names.
func (f *Flow) upstreamEnded(ctx context.Context, conn *runtime.Connector, ev connectors.LogoutEvent) (Result, bool, error) {
	backchannel := ev.Reply == nil
	if ev.Subject == "" && ev.SessionID == "" {
		return Result{}, backchannel, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-out message names no one.")
	}
	if ev.ReplayID != "" {
		until := ev.ReplayUntil
		if now := f.now(); until.Before(now.Add(time.Minute)) {
			until = now.Add(time.Minute)
		}
		fresh, err := f.store.MarkSeen(ctx, upstreamReplayNamespace, conn.ID+"\x00"+ev.ReplayID, until)
		if err != nil {
			return Result{}, backchannel, err
		}
		if !fresh {
			f.audit.Event("upstream_logout_rejected", "connector", conn.ID, "reason", "replayed")
			return Result{}, backchannel, errLogoutReplayed
		}
	}
	sessions, err := f.store.UpstreamSessions(ctx, conn.ID, ev.Subject, ev.SessionID)
	if err != nil {
		return Result{}, backchannel, err
	}
	ended := 0
	for _, s := range sessions {
		e, err := f.ending.End(ctx, s.Subject, s.PublicID, "upstream:"+conn.ID)
		if err != nil {
			return Result{}, backchannel, err
		}
		ended += len(e.Sessions)
	}
	f.audit.Event("upstream_logout", "connector", conn.ID, "upstream_sub", ev.Subject, "upstream_sid", ev.SessionID, "sessions", ended)
	if backchannel {
		return Result{}, true, nil
	}
	if ev.Reply.RedirectURL != "" {
		return redirect(ev.Reply.RedirectURL), false, nil
	}
	return page(http.StatusOK, "post.html", templates.PostData{Page: f.pages.Page("Signing out"), Action: ev.Reply.PostURL, Fields: ev.Reply.Fields}), false, nil
}

// HandleConnectorLogout serves GET and POST /logout/{connector}. A
// back-channel notice (a POST with logout_token) is answered as OpenID
// Connect Back-Channel Logout 1.0 §2.8 asks: 200 with no body, or 400
// with a JSON error (503 when storage is down, so the upstream retries);
// everything else the browser brought gets a page or a redirect.
func (f *Flow) HandleConnectorLogout(c echo.Context) error {
	r := c.Request()
	w := c.Response()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-out message is too large or malformed.")
	}
	machine := r.Method == http.MethodPost && r.PostForm.Has("logout_token")
	res, backchannel, err := f.ConnectorLogout(r.Context(), f.current(), c.Param("connector"), r)
	if machine || backchannel {
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			return writeBackchannelError(w, err)
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if err != nil {
		return err
	}
	return f.write(w, r, res)
}

// writeBackchannelError answers a refused back-channel logout notice.
func writeBackchannelError(w http.ResponseWriter, err error) error {
	status, body := http.StatusBadRequest, map[string]string{"error": oauth.ErrInvalidRequest}
	pe, ok := errors.AsType[*oauth.PageError](err)
	switch {
	case ok && pe.Status == http.StatusNotFound:
		status = http.StatusNotFound
		body["error_description"] = pe.Message
	case ok && pe.Status < 500:
		body["error_description"] = pe.Message
	default:
		status, body = http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(body)
}
