package console

import (
	"errors"
	"io/fs"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// routes is the console's route table, every path below Prefix.
//
//	GET  /console/login, POST /console/login   the token form
//	GET  /console/static/*                     CSS and scripts (no auth)
//	everything else needs a signed-in admin; every POST the CSRF token:
//	GET  /console/                overview
//	GET  /console/connectors      connectors
//	GET  /console/clients         clients
//	GET  /console/people?q=       search; /console/person?sub= one person
//	POST /console/person/signout  sub, sid (empty: every session), confirm
//	POST /console/person/unlink   sub, key, confirm
//	GET  /console/audit?event=&subject=&client=&connector=
//	GET  /console/actions; POST /console/actions/{reload,rotate,revoke,unlink}
//	POST /console/logout
//	/console/workbench...         the mapping workbench (workbench.go)
func (c *Console) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Rate limits and the audit log use the connection's address, as the
	// admin API does.
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = c.writeError
	if c.deps.Recover != nil {
		e.Use(c.deps.Recover)
	}
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(ec echo.Context) error {
			setSecurityHeaders(ec.Response().Header())
			return next(ec)
		}
	})
	e.GET(Prefix, func(ec echo.Context) error { return ec.Redirect(http.StatusSeeOther, Prefix+"/") })
	e.GET(Prefix+"/login", c.handleLoginPage)
	e.POST(Prefix+"/login", c.handleLogin)
	static, _ := fs.Sub(staticFS, "static")
	e.GET(Prefix+"/static/*", echo.WrapHandler(http.StripPrefix(Prefix+"/static/", http.FileServerFS(static))))

	g := e.Group(Prefix, c.requireAdmin, c.checkPost)
	g.GET("/", c.handleOverview)
	g.GET("/connectors", c.handleConnectors)
	g.GET("/clients", c.handleClients)
	g.GET("/people", c.handlePeople)
	g.GET("/person", c.handlePerson)
	g.POST("/person/signout", c.handleSignOut)
	g.POST("/person/unlink", c.handleUnlink)
	g.GET("/audit", c.handleAudit)
	g.GET("/actions", c.handleActions)
	g.POST("/actions/reload", c.handleReload)
	g.POST("/actions/rotate", c.handleRotate)
	g.POST("/actions/revoke", c.handleRevoke)
	g.POST("/actions/unlink", c.handleUnlink)
	g.POST("/logout", c.handleLogout)
	c.workbenchRoutes(g)
	return e
}

// errorData fills error.html.
type errorData struct {
	Heading, Message string
	Back             string
}

// fail answers with the error page.
func (c *Console) fail(ec echo.Context, status int, heading, message string) error {
	return c.render(ec.Response(), ec.Request(), status, "error.html", errorData{Heading: heading, Message: message, Back: Prefix + "/"})
}

// writeError renders errors as the console's error page, never with
// internal detail.
func (c *Console) writeError(err error, ec echo.Context) {
	if ec.Response().Committed {
		return
	}
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		msg := http.StatusText(he.Code)
		_ = c.fail(ec, he.Code, msg, "The console has no such page, or the request was not understood.")
	case errors.Is(err, storage.ErrUnavailable):
		_ = c.fail(ec, http.StatusServiceUnavailable, "Storage unavailable", "The broker cannot reach its storage right now. Try again shortly.")
	default:
		c.deps.Logger.Error("console: internal error", "path", ec.Request().URL.Path, "err", err)
		_ = c.fail(ec, http.StatusInternalServerError, "Something went wrong", "The console could not show this page; the broker's log has the details.")
	}
}
