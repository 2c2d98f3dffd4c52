package grants

import (
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/dpop"
)

// maxTokenRequestBytes caps a token request's body.
const maxTokenRequestBytes = 64 << 10

// Endpoint is the token endpoint's HTTP face.
type Endpoint struct {
	Grants  *Grants
	Clients *clientauth.Authenticator
	// Runtime returns the configuration currently served.
	Runtime func() *runtime.Runtime
	// Issued is called with the grant type and the client of every token
	// response.
	Issued func(grantType, clientID string)
}

// HandleToken serves POST /token (RFC 6749 §3.2).
func (e *Endpoint) HandleToken(c echo.Context) error {
	r := c.Request()
	if err := readForm(c); err != nil {
		return err
	}
	req, err := ParseRequest(r.PostForm)
	if err != nil {
		return err
	}
	rt := e.Runtime()
	req.DPoP = r.Header.Values(dpop.Header)
	if n := e.Grants.DPoPNonce(rt); n != "" {
		// On every answer, errors included (RFC 9449 §8).
		c.Response().Header().Set(DPoPNonceHeader, n)
	}
	cl, err := e.Clients.Authenticate(r.Context(), rt, clientauth.FromRequest(r, c.RealIP()))
	if err != nil {
		return err
	}
	resp, err := e.Grants.Token(r.Context(), rt, cl, req)
	if err != nil {
		return err
	}
	if e.Issued != nil {
		e.Issued(req.GrantType, cl.ID)
	}
	oauth.NoStore(c.Response().Header())
	return c.JSON(http.StatusOK, resp)
}

// readForm reads the body of a POST to a machine endpoint (the token and
// device authorization endpoints) into r.PostForm: capped, a form by its
// media type, nothing in the query.
func readForm(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxTokenRequestBytes)
	// A media type, compared as one (RFC 9110 §8.3.1: case-insensitive,
	// parameters allowed), so that no body is silently read as empty.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return oauth.InvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		return oauth.InvalidRequest("the body could not be parsed")
	}
	if len(r.URL.Query()) > 0 {
		return oauth.InvalidRequest("parameters must be sent in the body, not the query")
	}
	return nil
}
