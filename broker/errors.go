package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/templates"
)

// OAuth error codes (RFC 6749 §4.1.2.1, §5.2; OpenID Connect Core §3.1.2.6;
// RFC 7009; RFC 8693).
const (
	errInvalidRequest          = "invalid_request"
	errInvalidClient           = "invalid_client"
	errInvalidGrant            = "invalid_grant"
	errUnauthorizedClient      = "unauthorized_client"
	errUnsupportedGrantType    = "unsupported_grant_type"
	errUnsupportedResponseType = "unsupported_response_type"
	errInvalidScope            = "invalid_scope"
	errAccessDenied            = "access_denied"
	errServerError             = "server_error"
	errTemporarilyUnavailable  = "temporarily_unavailable"
	errLoginRequired           = "login_required"
	errInvalidTarget           = "invalid_target"
	errRequestNotSupported     = "request_not_supported"
	errRequestURINotSupported  = "request_uri_not_supported"
	errInvalidToken            = "invalid_token"
)

// oauthError is an OAuth error answered as JSON (RFC 6749 §5.2). It is the
// one error type endpoints return for protocol failures; the echo error
// handler writes it.
type oauthError struct {
	Code        string
	Description string
	Status      int
	// BasicChallenge adds WWW-Authenticate: Basic to a 401.
	BasicChallenge bool
	// BearerChallenge adds WWW-Authenticate: Bearer error=... to a 401.
	BearerChallenge bool
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func newOAuthError(status int, code, format string, args ...any) *oauthError {
	return &oauthError{Code: code, Description: fmt.Sprintf(format, args...), Status: status}
}

func invalidRequest(format string, args ...any) *oauthError {
	return newOAuthError(http.StatusBadRequest, errInvalidRequest, format, args...)
}

func invalidGrant(format string, args ...any) *oauthError {
	return newOAuthError(http.StatusBadRequest, errInvalidGrant, format, args...)
}

func invalidClient(format string, args ...any) *oauthError {
	e := newOAuthError(http.StatusUnauthorized, errInvalidClient, format, args...)
	e.BasicChallenge = true
	return e
}

// pageError is a failure shown to a person as an HTML error page. Message
// must be safe to show; Cause is logged and never shown.
type pageError struct {
	Status  int
	Heading string
	Message string
	Code    string
	Cause   error
}

func (e *pageError) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *pageError) Unwrap() error { return e.Cause }

func badRequestPage(code, message string) *pageError {
	return &pageError{Status: http.StatusBadRequest, Heading: "This sign-in request cannot be completed", Message: message, Code: code}
}

// redirectError is an authorization error sent back to the client's
// redirect_uri (RFC 6749 §4.1.2.1) with `iss` (RFC 9207). It is only used
// once the client and its redirect_uri are known to be valid.
type redirectError struct {
	RedirectURI string
	State       string
	Code        string
	Description string
}

func (e *redirectError) Error() string { return e.Code + ": " + e.Description }

// handleError is echo's HTTPErrorHandler: the one place errors become
// responses. Anything that is not one of the broker's error types is logged
// and answered as server_error without detail.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var (
		oe  *oauthError
		pe  *pageError
		re  *redirectError
		he  *echo.HTTPError
		req = c.Request()
	)
	if errors.Is(err, context.Canceled) && req.Context().Err() != nil {
		// The client went away mid-request: nothing to answer, nothing to
		// count as a storage failure.
		s.log.Debug("request cancelled by the client", "path", req.URL.Path)
		return
	}
	switch {
	case errors.As(err, &re):
		s.writeRedirectError(c, re)
	case errors.As(err, &oe):
		s.writeOAuthError(c, oe)
	case errors.As(err, &pe):
		if pe.Cause != nil {
			s.log.Warn("request failed", "path", req.URL.Path, "code", pe.Code, "err", pe.Cause)
		}
		s.writePage(c, pe)
	case errors.Is(err, storage.ErrUnavailable):
		s.log.Error("storage unavailable", "path", req.URL.Path, "err", err)
		s.metrics.storageError()
		if s.wantsJSON(c) {
			c.Response().Header().Set("Retry-After", "5")
			s.writeOAuthError(c, newOAuthError(http.StatusServiceUnavailable, errTemporarilyUnavailable, "the service is temporarily unavailable, try again shortly"))
			return
		}
		s.writePage(c, &pageError{Status: http.StatusServiceUnavailable, Heading: "Temporarily unavailable", Message: "The sign-in service is temporarily unavailable. Please try again in a moment.", Code: errTemporarilyUnavailable})
	case errors.As(err, &he):
		msg := http.StatusText(he.Code)
		if s.wantsJSON(c) {
			code := errInvalidRequest
			if he.Code >= 500 {
				code = errServerError
			}
			s.writeOAuthError(c, newOAuthError(he.Code, code, "%s", strings.ToLower(msg)))
			return
		}
		s.writePage(c, &pageError{Status: he.Code, Heading: msg, Message: "The page you asked for does not exist or does not accept this request.", Code: fmt.Sprint(he.Code)})
	default:
		s.log.Error("internal error", "path", req.URL.Path, "err", err)
		if s.wantsJSON(c) {
			s.writeOAuthError(c, newOAuthError(http.StatusInternalServerError, errServerError, "internal error"))
			return
		}
		s.writePage(c, &pageError{Status: http.StatusInternalServerError, Heading: "Something went wrong", Message: "The sign-in service hit an unexpected error. Please try again.", Code: errServerError})
	}
}

// wantsJSON reports whether the endpoint answers machines (token,
// introspection, revocation, userinfo, JWKS, discovery).
func (s *Server) wantsJSON(c echo.Context) bool {
	switch c.Request().URL.Path {
	case s.paths.token, s.paths.revoke, s.paths.userinfo, s.paths.introspect, s.paths.jwks, s.paths.discovery:
		return true
	}
	return false
}

func (s *Server) writeOAuthError(c echo.Context, e *oauthError) {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.Status == http.StatusUnauthorized {
		switch {
		case e.BearerChallenge:
			h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer error=%q, error_description=%q`, e.Code, e.Description))
		case e.BasicChallenge:
			h.Set("WWW-Authenticate", `Basic realm="fedbroker"`)
		}
	}
	body := map[string]string{"error": e.Code}
	if e.Description != "" {
		body["error_description"] = e.Description
	}
	if err := c.JSON(e.Status, body); err != nil {
		s.log.Debug("write error response", "err", err)
	}
}

func (s *Server) writeRedirectError(c echo.Context, e *redirectError) {
	u, err := url.Parse(e.RedirectURI)
	if err != nil {
		s.writePage(c, badRequestPage(errInvalidRequest, "The application's redirect address is not valid."))
		return
	}
	q := u.Query()
	q.Set("error", e.Code)
	if e.Description != "" {
		q.Set("error_description", e.Description)
	}
	if e.State != "" {
		q.Set("state", e.State)
	}
	q.Set("iss", s.issuer)
	u.RawQuery = q.Encode()
	status := http.StatusFound
	if c.Request().Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	if err := c.Redirect(status, u.String()); err != nil {
		s.log.Debug("write redirect", "err", err)
	}
}

func (s *Server) writePage(c echo.Context, e *pageError) {
	status := e.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	w := c.Response()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	data := templates.ErrorData{Page: s.page(e.Heading), Heading: e.Heading, Message: e.Message, Code: e.Code}
	if err := s.tmpl.Render(w, "error.html", data); err != nil {
		s.log.Error("render error page", "err", err)
	}
}

func (s *Server) page(title string) templates.Page {
	return templates.Page{Title: title, Issuer: s.issuerPath}
}
