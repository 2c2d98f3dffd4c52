package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
)

// actionsData fills actions.html.
type actionsData struct {
	// Message reports the action just taken; Problems a refused reload's.
	Message  string
	Problems []string
	Applied  []config.Change
	Restart  []config.Change
	// CanReload and CanRotate say which actions this broker offers.
	CanReload, CanRotate bool
}

func (c *Console) handleActions(ec echo.Context) error {
	return c.renderActions(ec, http.StatusOK, "")
}

func (c *Console) renderActions(ec echo.Context, status int, msg string) error {
	return c.render(ec.Response(), ec.Request(), status, "actions.html", c.actionsData(msg))
}

func (c *Console) actionsData(msg string) actionsData {
	return actionsData{Message: msg, CanReload: c.deps.Reload != nil, CanRotate: c.deps.Keys != nil}
}

const notConfirmed = "Nothing was done: tick the confirmation box first."

// handleReload reloads the configuration, as POST /admin/reload.
func (c *Console) handleReload(ec echo.Context) error {
	if !confirmed(ec) {
		return c.renderActions(ec, http.StatusBadRequest, notConfirmed)
	}
	if c.deps.Reload == nil {
		return c.renderActions(ec, http.StatusNotImplemented, "Reload is not available on this broker.")
	}
	rep, err := c.deps.Reload(ec.Request().Context())
	if err != nil {
		c.auditAdmin(ec.Request(), "admin_reload", "outcome", "refused")
		d := c.actionsData("The configuration was refused; the previous one keeps serving.")
		d.Problems = strings.Split(maskText(err.Error()), "\n")
		return c.render(ec.Response(), ec.Request(), http.StatusUnprocessableEntity, "actions.html", d)
	}
	c.auditAdmin(ec.Request(), "admin_reload", "outcome", "applied", "status", rep.Status(), "applied", rep.Applied, "restart_required", rep.RestartRequired)
	d := c.actionsData("Reload: " + rep.Status() + ".")
	d.Applied, d.Restart = rep.Applied, rep.RestartRequired
	return c.render(ec.Response(), ec.Request(), http.StatusOK, "actions.html", d)
}

// handleRotate rotates the signing keys, as POST /admin/keys/rotate.
func (c *Console) handleRotate(ec echo.Context) error {
	if !confirmed(ec) {
		return c.renderActions(ec, http.StatusBadRequest, notConfirmed)
	}
	if c.deps.Keys == nil {
		return c.renderActions(ec, http.StatusNotImplemented, "Key rotation is not available on this broker.")
	}
	r, err := c.deps.Keys.Rotate(ec.Request().Context())
	switch {
	case errors.Is(err, keys.ErrStatic):
		return c.renderActions(ec, http.StatusConflict, "The signing keys are static (signing.static_keys): rotate them yourself.")
	case errors.Is(err, keys.ErrBusy):
		return c.renderActions(ec, http.StatusServiceUnavailable, "Another replica is changing the key set; try again in a few seconds.")
	case errors.Is(err, keys.ErrNotReady):
		c.deps.Logger.Error("console: rotation refused", "err", err)
		return c.renderActions(ec, http.StatusServiceUnavailable, "This replica cannot use the signing keys; see its log.")
	case err != nil:
		return err
	}
	if !r.Rotated {
		c.auditAdmin(ec.Request(), "admin_rotate_keys", "outcome", "already_rotated", "version", r.Generation)
		return c.renderActions(ec, http.StatusConflict, "Another replica rotated the keys moments ago; nothing more was done.")
	}
	c.auditAdmin(ec.Request(), "admin_rotate_keys", "outcome", "rotated", "version", r.Generation)
	return c.renderActions(ec, http.StatusOK, "Keys rotated: the next key signs from now on; the old one stays published until the tokens it signed expire.")
}

// handleRevoke revokes every token of a subject and ends their sessions,
// as POST /admin/subjects/{sub}/revoke.
func (c *Console) handleRevoke(ec echo.Context) error {
	sub := strings.TrimSpace(ec.FormValue("sub"))
	if sub == "" {
		return c.renderActions(ec, http.StatusBadRequest, "Name the subject whose tokens to revoke.")
	}
	if !confirmed(ec) {
		return c.renderActions(ec, http.StatusBadRequest, notConfirmed)
	}
	if c.deps.Logout == nil {
		return c.renderActions(ec, http.StatusNotImplemented, "Revocation is not available on this console.")
	}
	ended, err := c.deps.Logout.End(ec.Request().Context(), sub, "", c.by(ec.Request()))
	if err != nil {
		return err
	}
	c.auditAdmin(ec.Request(), "admin_revoke_subject", "sub", sub, "families", ended.Families, "sessions", len(ended.Sessions), "backchannel", ended.Queued)
	return c.renderActions(ec, http.StatusOK, "Revoked "+plural(ended.Families, "refresh token family")+" and ended "+plural(len(ended.Sessions), "session")+" of "+sub+".")
}
