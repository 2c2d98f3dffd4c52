package grants

import (
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
)

// DeviceEndpoint is the device authorization endpoint's HTTP face (RFC
// 8628 §3.1).
type DeviceEndpoint struct {
	Grants  *Grants
	Clients *clientauth.Authenticator
	// Runtime returns the configuration currently served.
	Runtime  func() *runtime.Runtime
	Settings DeviceSettings
}

// HandleDeviceAuthorization serves POST /device/authorization: the client
// authenticates as at the token endpoint (a public client sends
// client_id) and gets a device code and a user code as JSON.
func (e *DeviceEndpoint) HandleDeviceAuthorization(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxTokenRequestBytes)
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return oauth.InvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		return oauth.InvalidRequest("the body could not be parsed")
	}
	if len(r.URL.Query()) > 0 {
		return oauth.InvalidRequest("parameters must be sent in the body, not the query")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return oauth.InvalidRequest("parameter %s is repeated", k)
		}
	}
	rt := e.Runtime()
	cl, err := e.Clients.Authenticate(r.Context(), rt, clientauth.FromRequest(r, c.RealIP()))
	if err != nil {
		return err
	}
	da, err := e.Grants.DeviceAuthorize(r.Context(), rt, cl, r.PostForm.Get("scope"), e.Settings)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	return c.JSON(http.StatusOK, da)
}
