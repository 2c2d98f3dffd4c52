package authflow

import (
	"errors"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/oauth"
)

// maxPARBytes caps a pushed authorization request's body, as the token
// endpoint caps its own: no parameter /authorize accepts is longer than a
// few KiB.
const maxPARBytes = 64 << 10

// HandlePAR serves POST /par (RFC 9126 §2): 201 with the request_uri, or
// a JSON OAuth error.
func (p *PAR) HandlePAR(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxPARBytes)
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return oauth.InvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return oauth.NewError(http.StatusRequestEntityTooLarge, oauth.ErrInvalidRequest, "the request is too large")
		}
		return oauth.InvalidRequest("the body could not be parsed")
	}
	if len(r.URL.Query()) > 0 {
		return oauth.InvalidRequest("parameters must be sent in the body, not the query")
	}
	pushed, err := p.Push(r.Context(), p.flow.current(), clientauth.FromRequest(r, c.RealIP()))
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	return c.JSON(http.StatusCreated, pushed)
}

// HandleAuthorize serves GET and POST /authorize, request_uri included
// (PAR.Authorize).
func (p *PAR) HandleAuthorize(c echo.Context) error {
	r := c.Request()
	form, b, err := p.flow.readAuthorize(c)
	if err != nil {
		return err
	}
	res, err := p.Authorize(r.Context(), p.flow.current(), form, b)
	if err != nil {
		return err
	}
	return p.flow.write(c.Response(), r, res)
}
