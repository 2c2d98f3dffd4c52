package broker

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/templates"
)

// maxFormBytes caps every form the broker parses (login forms, SAML posts are
// capped again by their connector).
const maxFormBytes = 1 << 20

var errRequestGone = &pageError{Status: http.StatusBadRequest, Heading: "This sign-in has expired", Message: "The sign-in took too long or was already completed. Go back to the application and start again.", Code: "expired_request"}

var errOtherBrowser = &pageError{Status: http.StatusBadRequest, Heading: "This sign-in was started elsewhere", Message: "This sign-in was started in another browser or its cookies were lost. Go back to the application and start again.", Code: "browser_mismatch"}

// loadRequest fetches the auth request named by id and checks that this
// browser started it.
func (s *Server) loadRequest(c echo.Context, id string) (storage.AuthRequest, error) {
	if id == "" || len(id) > 64 {
		return storage.AuthRequest{}, errRequestGone
	}
	req, err := s.store.GetAuthRequest(c.Request().Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.AuthRequest{}, errRequestGone
	}
	if err != nil {
		return storage.AuthRequest{}, err
	}
	if !req.Expiry.After(s.now()) {
		return storage.AuthRequest{}, errRequestGone
	}
	if !s.sessions.boundToBrowser(c, req) {
		s.auditEvent("login_rejected", "client_id", req.ClientID, "connector", req.ConnectorID, "reason", "auth request bound to another browser")
		return storage.AuthRequest{}, errOtherBrowser
	}
	return req, nil
}

// requestClient resolves the client and connector of a request against the
// current configuration (which may have been reloaded since).
func (s *Server) requestConnector(rt *runtime, req storage.AuthRequest, id string) (*client, *connector, error) {
	cl, ok := rt.clients[req.ClientID]
	if !ok {
		return nil, nil, errRequestGone
	}
	conn, ok := rt.connectors[id]
	if !ok || !cl.allowsConnector(id) {
		return nil, nil, &pageError{Status: http.StatusBadRequest, Heading: "Unknown sign-in method", Message: "This way of signing in is not available for this application.", Code: "unknown_connector"}
	}
	return cl, conn, nil
}

func scopesOf(req storage.AuthRequest) connectors.Scopes {
	return connectors.Scopes{
		OfflineAccess: slices.Contains(req.Scopes, "offline_access"),
		Groups:        slices.Contains(req.Scopes, "groups"),
	}
}

// handleChooser lists the connectors the client may use.
func (s *Server) handleChooser(c echo.Context) error {
	req, err := s.loadRequest(c, c.QueryParam("req"))
	if err != nil {
		return err
	}
	rt := s.rt.Load()
	cl, ok := rt.clients[req.ClientID]
	if !ok {
		return errRequestGone
	}
	data := templates.ChooserData{Page: s.page("Sign in"), ClientName: cl.Name}
	for _, conn := range rt.connectorsFor(cl) {
		data.Connectors = append(data.Connectors, templates.Connector{
			Name: conn.name,
			URL:  s.paths.login + "/" + url.PathEscape(conn.id) + "?req=" + url.QueryEscape(req.ID),
		})
	}
	return s.render(c, http.StatusOK, "chooser.html", data)
}

var errUnknownConnector = &pageError{Status: http.StatusNotFound, Heading: "Unknown sign-in method", Message: "There is no such way of signing in here. Go back to the application and start again.", Code: "unknown_connector"}

// handleLogin starts the sign-in at one connector.
func (s *Server) handleLogin(c echo.Context) error {
	if _, ok := s.rt.Load().connectors[c.Param("connector")]; !ok {
		return errUnknownConnector
	}
	req, err := s.loadRequest(c, c.QueryParam("req"))
	if err != nil {
		return err
	}
	rt := s.rt.Load()
	cl, conn, err := s.requestConnector(rt, req, c.Param("connector"))
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	switch impl := conn.impl.(type) {
	case connectors.PasswordConnector:
		return s.renderPassword(c, rt, cl, conn, impl, req, "", false)
	case connectors.CallbackConnector:
		loginURL, connState, err := impl.LoginURL(ctx, scopesOf(req), s.callbackURL(conn.id), req.ID)
		if err != nil {
			return s.upstreamFailure(conn, req, err)
		}
		req.ConnectorID, req.ConnectorState = conn.id, connState
		if err := s.updateRequest(c, req); err != nil {
			return err
		}
		return c.Redirect(http.StatusFound, loginURL)
	case connectors.POSTConnector:
		lr, connState, err := impl.LoginRequest(ctx, scopesOf(req), s.callbackURL(conn.id), req.ID)
		if err != nil {
			return s.upstreamFailure(conn, req, err)
		}
		req.ConnectorID, req.ConnectorState = conn.id, connState
		if err := s.updateRequest(c, req); err != nil {
			return err
		}
		if lr.RedirectURL != "" {
			return c.Redirect(http.StatusFound, lr.RedirectURL)
		}
		return s.render(c, http.StatusOK, "post.html", templates.PostData{Page: s.page("Continuing sign-in"), Action: lr.PostURL, Fields: lr.Fields})
	default:
		return &pageError{Status: http.StatusBadRequest, Heading: "Unknown sign-in method", Message: "This way of signing in cannot be used from a browser.", Code: "unknown_connector"}
	}
}

func (s *Server) updateRequest(c echo.Context, req storage.AuthRequest) error {
	err := s.store.UpdateAuthRequest(c.Request().Context(), req)
	if errors.Is(err, storage.ErrNotFound) {
		return errRequestGone
	}
	return err
}

func (s *Server) callbackURL(connectorID string) string {
	return s.issuer + "/callback/" + url.PathEscape(connectorID)
}

// csrfToken binds the password form to this browser and this request: it
// cannot be computed without the HttpOnly browser cookie.
func csrfToken(browserID, reqID string) string {
	sum := sha256.Sum256([]byte("fedbroker-csrf\x00" + browserID + "\x00" + reqID))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (s *Server) renderPassword(c echo.Context, rt *runtime, cl *client, conn *connector, pc connectors.PasswordConnector, req storage.AuthRequest, username string, invalid bool) error {
	data := templates.PasswordData{
		Page:          s.page("Sign in"),
		ConnectorName: conn.name,
		Action:        s.paths.login + "/" + url.PathEscape(conn.id),
		Prompt:        pc.Prompt(),
		Username:      username,
		CSRF:          csrfToken(s.sessions.browserID(c), req.ID),
		RequestID:     req.ID,
		Invalid:       invalid,
	}
	if username == "" && req.LoginHint != "" {
		data.Username = req.LoginHint
	}
	if len(rt.connectorsFor(cl)) > 1 {
		data.BackURL = s.paths.login + "?req=" + url.QueryEscape(req.ID)
	}
	status := http.StatusOK
	if invalid {
		status = http.StatusUnauthorized
	}
	return s.render(c, status, "password.html", data)
}

// handlePasswordLogin checks a password connector's form.
func (s *Server) handlePasswordLogin(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return badRequestPage(errInvalidRequest, "The sign-in form could not be read.")
	}
	req, err := s.loadRequest(c, r.PostForm.Get("req"))
	if err != nil {
		return err
	}
	ck, _ := c.Cookie(s.sessions.browser)
	if ck == nil || !constantTimeEqual(r.PostForm.Get("csrf"), csrfToken(ck.Value, req.ID)) {
		s.auditEvent("login_rejected", "client_id", req.ClientID, "connector", c.Param("connector"), "reason", "bad csrf token")
		return badRequestPage("invalid_csrf", "The sign-in form has expired. Go back and try again.")
	}
	rt := s.rt.Load()
	cl, conn, err := s.requestConnector(rt, req, c.Param("connector"))
	if err != nil {
		return err
	}
	pc, ok := conn.impl.(connectors.PasswordConnector)
	if !ok {
		return badRequestPage("unknown_connector", "This way of signing in does not take a password.")
	}
	username := strings.TrimSpace(r.PostForm.Get("login"))
	password := r.PostForm.Get("password")
	if username == "" || password == "" || len(username) > 256 || len(password) > 1024 {
		return s.renderPassword(c, rt, cl, conn, pc, req, username, true)
	}
	ip := c.RealIP()
	if !s.limiter.allow(conn.id, username, ip) {
		s.auditEvent("login_throttled", "connector", conn.id, "client_id", cl.ID, "remote", ip)
		return &pageError{Status: http.StatusTooManyRequests, Heading: "Too many attempts", Message: "There were too many failed sign-in attempts. Wait a few minutes and try again.", Code: "too_many_attempts"}
	}
	id, ok, err := pc.Login(r.Context(), scopesOf(req), username, password)
	if err != nil {
		return s.upstreamFailure(conn, req, err)
	}
	if !ok {
		s.limiter.fail(conn.id, username, ip)
		s.metrics.signIn(conn.id, "bad_password")
		s.auditEvent("login_failed", "connector", conn.id, "client_id", cl.ID, "remote", ip, "reason", "wrong username or password")
		return s.renderPassword(c, rt, cl, conn, pc, req, username, true)
	}
	s.limiter.succeed(conn.id, username)
	req.ConnectorID = conn.id
	return s.finishLogin(c, rt, cl, conn, req, id)
}

// handleCallback completes a sign-in when the upstream sends the browser
// back (redirect or form post).
func (s *Server) handleCallback(c echo.Context) error {
	r := c.Request()
	var state string
	if r.Method == http.MethodPost {
		// Connectors read the body themselves; only RelayState is needed here
		// and ParseForm is capped by the connector's own limit when it reads.
		r.Body = http.MaxBytesReader(c.Response(), r.Body, maxFormBytes*4)
		if err := r.ParseForm(); err != nil {
			return badRequestPage(errInvalidRequest, "The response from the sign-in provider is too large or malformed.")
		}
		state = r.PostForm.Get("RelayState")
	} else {
		state = r.URL.Query().Get("state")
	}
	rt := s.rt.Load()
	connID := c.Param("connector")
	req, err := s.loadRequest(c, state)
	if err != nil {
		// A replayed, expired or forged callback: audited under the
		// connector only when it is one of ours (the path is untrusted).
		if _, known := rt.connectors[connID]; known && errors.Is(err, errRequestGone) {
			s.auditEvent("login_rejected", "connector", connID, "reason", "callback for an unknown, expired or already used auth request")
		}
		return err
	}
	if req.ConnectorID != connID {
		s.auditEvent("login_rejected", "connector", connID, "client_id", req.ClientID, "reason", "state made for another connector")
		return badRequestPage("state_mismatch", "The response came back to the wrong sign-in method. Go back to the application and start again.")
	}
	cl, conn, err := s.requestConnector(rt, req, connID)
	if err != nil {
		return err
	}
	var id connectors.Identity
	switch impl := conn.impl.(type) {
	case connectors.POSTConnector:
		if r.Method != http.MethodPost {
			s.auditEvent("login_rejected", "connector", connID, "client_id", req.ClientID, "reason", "response not posted")
			return badRequestPage(errInvalidRequest, "The sign-in provider must post its response.")
		}
		id, err = impl.HandlePOST(r.Context(), scopesOf(req), req.ConnectorState, r)
	case connectors.CallbackConnector:
		id, err = impl.HandleCallback(r.Context(), scopesOf(req), req.ConnectorState, r)
	default:
		return badRequestPage("unknown_connector", "This sign-in method does not accept responses.")
	}
	if err != nil {
		return s.upstreamFailure(conn, req, err)
	}
	return s.finishLogin(c, rt, cl, conn, req, id)
}

// handleMetadata serves a connector's published metadata (SAML SP metadata).
func (s *Server) handleMetadata(c echo.Context) error {
	conn, ok := s.rt.Load().connectors[c.Param("connector")]
	if !ok {
		return echo.ErrNotFound
	}
	mh, ok := conn.impl.(connectors.MetadataHandler)
	if !ok {
		return echo.ErrNotFound
	}
	ct, body, err := mh.Metadata(c.Request().Context())
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, ct, body)
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
func (s *Server) upstreamFailure(conn *connector, req storage.AuthRequest, err error) error {
	var ue *connectors.UserError
	code, msg := "upstream_error", "Signing in at "+conn.name+" did not work. Please try again."
	if errors.As(err, &ue) {
		code, msg = ue.Code, ue.Message
	} else if errors.Is(err, connectors.ErrUnavailable) {
		code, msg = "upstream_unavailable", conn.name+" could not be reached. Please try again in a moment."
	}
	if errors.Is(err, storage.ErrUnavailable) {
		return err
	}
	s.metrics.signIn(conn.id, "upstream_error")
	s.health.record(conn.id, s.now(), code)
	s.auditEvent("login_failed", "connector", conn.id, "connector_type", conn.typ, "client_id", req.ClientID, "code", code, "reason", err.Error())
	return &pageError{Status: upstreamStatus(ue, err), Heading: "Sign-in failed", Message: msg, Code: code}
}

func (s *Server) render(c echo.Context, status int, name string, data any) error {
	w := c.Response()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return s.tmpl.Render(w, name, data)
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
