package authflow

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/templates"
)

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }

// loadRequest fetches the auth request named by id and checks that this
// browser started it.
func (f *Flow) loadRequest(ctx context.Context, id string, b Browser) (storage.AuthRequest, error) {
	req, err := f.getRequest(ctx, id)
	if err != nil {
		return storage.AuthRequest{}, err
	}
	return f.checkRequest(req, b)
}

// getRequest fetches the auth request named by id, unchecked:
// errRequestGone when there is none.
func (f *Flow) getRequest(ctx context.Context, id string) (storage.AuthRequest, error) {
	if id == "" || len(id) > 64 {
		return storage.AuthRequest{}, errRequestGone
	}
	req, err := f.store.GetAuthRequest(ctx, id)
	if isNotFound(err) {
		return storage.AuthRequest{}, errRequestGone
	}
	return req, err
}

// checkRequest checks that auth request req is still alive and that this
// browser started it.
func (f *Flow) checkRequest(req storage.AuthRequest, b Browser) (storage.AuthRequest, error) {
	if !req.Expiry.After(f.now()) {
		return storage.AuthRequest{}, errRequestGone
	}
	if b.BrowserID == "" || req.BrowserBinding == "" || !oauth.ConstantTimeEqual(storage.Hash(b.BrowserID), req.BrowserBinding) {
		f.audit.Event("login_rejected", "client_id", req.ClientID, "connector", req.ConnectorID, "reason", "auth request bound to another browser")
		return storage.AuthRequest{}, errOtherBrowser
	}
	return req, nil
}

// openConnector resolves the client of auth request req and connector id
// against the current configuration (which may have been reloaded since)
// and opens the connector; an upstream that cannot be reached is an error
// page naming it.
func (f *Flow) openConnector(ctx context.Context, rt *runtime.Runtime, req storage.AuthRequest, id string) (*runtime.Client, *runtime.Connector, connectors.Connector, error) {
	cl, ok := rt.Client(req.ClientID)
	if req.Test != nil {
		cl, ok = testClient, true
	}
	if !ok {
		return nil, nil, nil, errRequestGone
	}
	conn, ok := rt.Connector(id)
	if !ok || !cl.AllowsConnector(id) {
		return nil, nil, nil, errConnectorNotAllowed
	}
	impl, err := conn.Open(ctx)
	if err != nil {
		return nil, nil, nil, f.upstreamFailure(conn, req, err)
	}
	return cl, conn, impl, nil
}

func scopesOf(req storage.AuthRequest) connectors.Scopes {
	return connectors.Scopes{
		OfflineAccess: slices.Contains(req.Scopes, "offline_access"),
		Groups:        slices.Contains(req.Scopes, "groups"),
	}
}

// Chooser lists the connectors the client of auth request reqID may use.
func (f *Flow) Chooser(ctx context.Context, rt *runtime.Runtime, reqID string, b Browser) (Result, error) {
	req, err := f.loadRequest(ctx, reqID, b)
	if err != nil {
		return Result{}, err
	}
	cl, ok := rt.Client(req.ClientID)
	if !ok {
		return Result{}, errRequestGone
	}
	data := templates.ChooserData{Page: f.pages.Page("Sign in"), ClientName: cl.Name, CancelURL: f.cancelURL(b.BrowserID, req.ID)}
	for _, conn := range rt.ConnectorsFor(cl) {
		data.Connectors = append(data.Connectors, templates.Connector{Name: conn.Name, URL: f.loginURL(conn.ID, req.ID)})
	}
	return page(http.StatusOK, "chooser.html", data), nil
}

// StartLogin starts the sign-in of auth request reqID at connector connID:
// the password form, or off to the upstream.
func (f *Flow) StartLogin(ctx context.Context, rt *runtime.Runtime, connID, reqID string, b Browser) (Result, error) {
	if _, ok := rt.Connector(connID); !ok {
		return Result{}, errUnknownConnector
	}
	// The request is read once: it is either the start record of a test
	// sign-in or an auth request of this browser.
	req, err := f.getRequest(ctx, reqID)
	if err == nil && req.Test != nil && req.Test.Start {
		next, nb, setID, err := f.claimTestSignIn(ctx, rt, connID, reqID, req, b)
		if err != nil {
			return Result{}, err
		}
		// A test sign-in from the console, now bound to this browser
		// (testsignin.go).
		res, err := f.StartLogin(ctx, rt, connID, next, nb)
		if res.BrowserID == "" {
			res.BrowserID = setID
		}
		return res, err
	}
	if err != nil {
		return Result{}, err
	}
	if req, err = f.checkRequest(req, b); err != nil {
		return Result{}, err
	}
	cl, conn, impl, err := f.openConnector(ctx, rt, req, connID)
	if err != nil {
		return Result{}, err
	}
	callback := runtime.CallbackURL(f.issuer, conn.ID)
	switch impl := impl.(type) {
	case connectors.PasswordConnector:
		return f.passwordPage(rt, cl, conn, impl, req, b, "", false), nil
	case connectors.CallbackConnector:
		loginURL, connState, err := impl.LoginURL(ctx, scopesOf(req), callback, req.ID)
		if err != nil {
			return Result{}, f.upstreamFailure(conn, req, err)
		}
		req.ConnectorID, req.ConnectorState = conn.ID, connState
		if err := f.updateRequest(ctx, req); err != nil {
			return Result{}, err
		}
		return redirect(loginURL), nil
	case connectors.POSTConnector:
		lr, connState, err := impl.LoginRequest(ctx, scopesOf(req), callback, req.ID)
		if err != nil {
			return Result{}, f.upstreamFailure(conn, req, err)
		}
		req.ConnectorID, req.ConnectorState = conn.ID, connState
		if err := f.updateRequest(ctx, req); err != nil {
			return Result{}, err
		}
		if lr.RedirectURL != "" {
			return redirect(lr.RedirectURL), nil
		}
		return page(http.StatusOK, "post.html", templates.PostData{Page: f.pages.Page("Continuing sign-in"), Action: lr.PostURL, Fields: lr.Fields, CancelURL: f.cancelURL(b.BrowserID, req.ID)}), nil
	default:
		return Result{}, &oauth.PageError{Status: http.StatusBadRequest, Heading: "Unknown sign-in method", Message: "This way of signing in cannot be used from a browser.", Code: "unknown_connector"}
	}
}

func (f *Flow) updateRequest(ctx context.Context, req storage.AuthRequest) error {
	err := f.store.UpdateAuthRequest(ctx, req)
	if isNotFound(err) {
		return errRequestGone
	}
	return err
}

// csrfToken binds the password form to this browser and this request: it
// cannot be computed without the HttpOnly browser cookie.
func csrfToken(browserID, reqID string) string {
	sum := sha256.Sum256([]byte("fedbroker-csrf\x00" + browserID + "\x00" + reqID))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (f *Flow) passwordPage(rt *runtime.Runtime, cl *runtime.Client, conn *runtime.Connector, pc connectors.PasswordConnector, req storage.AuthRequest, b Browser, username string, invalid bool) Result {
	var res Result
	browserID := b.ensureID(&res)
	data := templates.PasswordData{
		Page:          f.pages.Page("Sign in"),
		ClientName:    cl.Name,
		ConnectorName: conn.Name,
		Action:        f.login + "/" + url.PathEscape(conn.ID),
		Prompt:        pc.Prompt(),
		Username:      username,
		CSRF:          csrfToken(browserID, req.ID),
		RequestID:     req.ID,
		Invalid:       invalid,
		CancelURL:     f.cancelURL(browserID, req.ID),
	}
	if username == "" && req.LoginHint != "" {
		data.Username = req.LoginHint
	}
	if len(rt.ConnectorsFor(cl)) > 1 && req.Test == nil {
		data.BackURL = f.chooserURL(req.ID)
	}
	res.Status, res.Template, res.Data = http.StatusOK, "password.html", data
	if invalid {
		res.Status = http.StatusUnauthorized
	}
	return res
}

// PasswordForm is a submitted password sign-in form.
type PasswordForm struct {
	RequestID, CSRF    string
	Username, Password string
	// RemoteIP is the client's address, for the failure limit.
	RemoteIP string
}

// errTooManyAttempts refuses a password before it is checked (limits.go).
// Every budget gives an attempt back within a minute: one every 6 s per
// address, one a minute per user at an address and per user.
var errTooManyAttempts = &oauth.PageError{Status: http.StatusTooManyRequests, Heading: "Too many attempts", Message: "There were too many failed sign-in attempts. Wait a minute, then try again.", Code: "too_many_attempts"}

// PasswordLogin checks a password connector's form. Wrong credentials show
// the form again (401); guessing is limited per address, per user at an
// address and per user (see loginLimiter), and a refused attempt is a 429
// page.
func (f *Flow) PasswordLogin(ctx context.Context, rt *runtime.Runtime, connID string, form PasswordForm, b Browser) (Result, error) {
	req, err := f.loadRequest(ctx, form.RequestID, b)
	if err != nil {
		return Result{}, err
	}
	if !oauth.ConstantTimeEqual(form.CSRF, csrfToken(b.BrowserID, req.ID)) {
		f.audit.Event("login_rejected", "client_id", req.ClientID, "connector", connID, "reason", "bad csrf token")
		return Result{}, oauth.BadRequestPage("invalid_csrf", "The sign-in form has expired. Go back and try again.")
	}
	cl, conn, impl, err := f.openConnector(ctx, rt, req, connID)
	if err != nil {
		return Result{}, err
	}
	pc, ok := impl.(connectors.PasswordConnector)
	if !ok {
		return Result{}, oauth.BadRequestPage("unknown_connector", "This way of signing in does not take a password.")
	}
	username := strings.TrimSpace(form.Username)
	if username == "" || form.Password == "" || len(username) > 256 || len(form.Password) > 1024 {
		return f.passwordPage(rt, cl, conn, pc, req, b, username, true), nil
	}
	// The limiter takes its tokens before the password is checked, so
	// that concurrent guesses cannot overrun the budget; a right password
	// gives them back.
	ip := form.RemoteIP
	at, limit := f.limiter.reserve(conn.ID, username, ip)
	if at == nil {
		f.metrics.SignIn(conn.ID, "throttled")
		f.audit.Event("login_throttled", "connector", conn.ID, "client_id", cl.ID, "remote", ip, "limit", limit)
		// The request is still alive: the page leads back to the form
		// and offers to give up.
		return Result{}, &wayBackError{page: errTooManyAttempts, retry: f.loginURL(conn.ID, req.ID), cancelTo: f.cancelURL(b.BrowserID, req.ID)}
	}
	id, ok, err := pc.Login(ctx, scopesOf(req), username, form.Password)
	if err != nil {
		at.cancel() // no password was checked
		return Result{}, f.upstreamFailure(conn, req, err)
	}
	if !ok {
		f.metrics.SignIn(conn.ID, "bad_password")
		f.audit.Event("login_failed", "connector", conn.ID, "client_id", cl.ID, "remote", ip, "reason", "wrong username or password")
		return f.passwordPage(rt, cl, conn, pc, req, b, username, true), nil
	}
	at.succeeded()
	req.ConnectorID = conn.ID
	return f.Finish(ctx, rt, cl, conn, impl, req, id)
}

// Callback completes a sign-in when the upstream sends the browser back to
// connector connID: state names the auth request (OAuth state, or SAML
// RelayState). r is the upstream's response as the browser delivered it.
func (f *Flow) Callback(ctx context.Context, rt *runtime.Runtime, connID, state string, r *http.Request, b Browser) (Result, error) {
	req, err := f.loadRequest(ctx, state, b)
	if errors.Is(err, errRequestGone) && r.Method == http.MethodPost {
		// No pending request: an IdP-initiated sign-in, when the
		// connector takes those (unsolicited.go).
		if res, handled, err := f.unsolicited(ctx, rt, connID, r); handled {
			return res, err
		}
	}
	if err != nil {
		// A replayed, expired or forged callback: audited under the
		// connector only when it is one of ours (the path is untrusted).
		if _, known := rt.Connector(connID); known && errors.Is(err, errRequestGone) {
			f.audit.Event("login_rejected", "connector", connID, "reason", "callback for an unknown, expired or already used auth request")
		}
		return Result{}, err
	}
	if req.ConnectorID != connID {
		f.audit.Event("login_rejected", "connector", connID, "client_id", req.ClientID, "reason", "state made for another connector")
		return Result{}, oauth.BadRequestPage("state_mismatch", "The response came back to the wrong sign-in method. Go back to the application and start again.")
	}
	cl, conn, impl, err := f.openConnector(ctx, rt, req, connID)
	if err != nil {
		return Result{}, err
	}
	var id connectors.Identity
	switch c := impl.(type) {
	case connectors.POSTConnector:
		if r.Method != http.MethodPost {
			f.audit.Event("login_rejected", "connector", connID, "client_id", req.ClientID, "reason", "response not posted")
			return Result{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-in provider must post its response.")
		}
		id, err = c.HandlePOST(ctx, scopesOf(req), req.ConnectorState, r)
	case connectors.CallbackConnector:
		id, err = c.HandleCallback(ctx, scopesOf(req), req.ConnectorState, r)
	default:
		return Result{}, oauth.BadRequestPage("unknown_connector", "This sign-in method does not accept responses.")
	}
	if err != nil {
		return Result{}, f.upstreamFailure(conn, req, err)
	}
	return f.Finish(ctx, rt, cl, conn, impl, req, id)
}

// ErrNoMetadata means the connector publishes no metadata.
var ErrNoMetadata = errors.New("authflow: connector publishes no metadata")

// Metadata returns connector connID's published metadata (SAML SP
// metadata).
func (f *Flow) Metadata(ctx context.Context, rt *runtime.Runtime, connID string) (contentType string, body []byte, err error) {
	conn, ok := rt.Connector(connID)
	if !ok {
		return "", nil, ErrNoMetadata
	}
	impl, err := conn.Open(ctx)
	if err != nil {
		return "", nil, &oauth.PageError{Status: http.StatusBadGateway, Heading: "Temporarily unavailable", Message: conn.Name + " could not be reached. Please try again in a moment.", Code: "upstream_unavailable", Cause: err}
	}
	mh, ok := impl.(connectors.MetadataHandler)
	if !ok {
		return "", nil, ErrNoMetadata
	}
	return mh.Metadata(ctx)
}

// upstreamStatus is the error page's status, from what the connector's
// error wraps: 403 when the person was refused, 502 when the upstream
// failed or could not be reached, 400 when the response that came back with
// the browser is unacceptable (forged, expired, replayed, mismatched).
func upstreamStatus(ue *connectors.UserError, err error) int {
	switch {
	case errors.Is(err, connectors.ErrRefused):
		return http.StatusForbidden
	case ue == nil || errors.Is(err, connectors.ErrUnavailable) || errors.Is(err, connectors.ErrUpstream):
		return http.StatusBadGateway
	default:
		return http.StatusBadRequest
	}
}

// upstreamFailure turns a connector error into an error page and an audit
// line naming the connector. Only a connectors.UserError's Message is shown.
func (f *Flow) upstreamFailure(conn *runtime.Connector, req storage.AuthRequest, err error) error {
	if errors.Is(err, storage.ErrUnavailable) {
		return err
	}
	var ue *connectors.UserError
	code, msg := "upstream_error", "Signing in at "+conn.Name+" did not work. Please try again."
	if errors.As(err, &ue) {
		code, msg = ue.Code, ue.Message
	} else if errors.Is(err, connectors.ErrUnavailable) {
		code, msg = "upstream_unavailable", conn.Name+" could not be reached. Please try again in a moment."
	}
	if req.Test != nil {
		f.failTest(context.Background(), conn.ID, req, code+": "+err.Error())
	}
	f.metrics.SignIn(conn.ID, "upstream_error")
	f.health.Record(conn.ID, f.now(), code)
	f.audit.Event("login_failed", "connector", conn.ID, "connector_type", conn.Type, "client_id", req.ClientID, "code", code, "reason", err.Error())
	return &oauth.PageError{Status: upstreamStatus(ue, err), Heading: "Sign-in failed", Message: msg, Code: code}
}
