package grants

import (
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
	if err := readForm(c); err != nil {
		return err
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
	oauth.NoStore(c.Response().Header())
	return c.JSON(http.StatusOK, da)
}
