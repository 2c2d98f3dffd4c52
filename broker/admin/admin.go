// Package admin is the broker's admin listener: a JSON API (see
// docs/admin.md) for operators, on its own listener, answering only
// requests that carry the admin bearer token or a verified client
// certificate.
package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/logout"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// Options configure the admin API.
type Options struct {
	// Token is the bearer token; empty disables bearer authentication.
	Token string
	// ClientCertOK accepts requests whose TLS connection presented a client
	// certificate verified by the listener's ClientCAs.
	ClientCertOK bool
	// ReloadWithReport loads, validates and compiles the configuration
	// again and swaps in what a running server can take; its report lists
	// each changed field as applied or needing a restart, its error the
	// problems of a refused configuration.
	ReloadWithReport func(ctx context.Context) (config.ReloadReport, error)
	// Reload is the older form of ReloadWithReport, without a report;
	// used only when ReloadWithReport is nil.
	Reload func(ctx context.Context) error
	// Gatherer serves /metrics; nil means no metrics endpoint.
	Gatherer prometheus.Gatherer
	// AuditFile is the file the audit log is written to, when the
	// process knows it: the console shows its tail. Empty: only this
	// process's recent audit lines are shown.
	AuditFile string
}

// Deps are what the admin API reads and acts on.
type Deps struct {
	Store   storage.Storage
	Keys    *keys.Manager
	Health  *observe.Health
	Audit   observe.Audit
	Logger  *slog.Logger
	Runtime func() *runtime.Runtime
	// Storage is what GET /admin/status reports about storage.
	Storage StorageStatus
	// Recover wraps every handler so a panic is an error, never a crash.
	Recover echo.MiddlewareFunc
	// Logout ends sessions and tells the applications (single logout).
	Logout *logout.Service
	// Credentials checks the token and client certificates; made from
	// the Options when nil. The console shares the broker's.
	Credentials *Credentials
}

type api struct {
	deps  Deps
	opts  Options
	creds *Credentials
}

// Handler returns the admin API.
func Handler(deps Deps, opts Options) http.Handler {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	if deps.Credentials == nil {
		deps.Credentials = NewCredentials(opts)
	}
	a := &api{deps: deps, opts: opts, creds: deps.Credentials}
	e.HTTPErrorHandler = a.writeError
	// The failure limit and the audit log use the connection's address:
	// forwarding headers would let a caller evade the limit or lock out
	// another address.
	e.IPExtractor = echo.ExtractIPDirect()
	if deps.Recover != nil {
		e.Use(deps.Recover)
	}
	e.Use(a.authenticate)
	e.GET("/admin/status", a.handleStatus)
	e.GET("/admin/connectors", a.handleConnectors)
	e.POST("/admin/mapping/test", a.handleMappingTest)
	e.POST("/admin/reload", a.handleReload)
	e.POST("/admin/keys/rotate", a.handleRotate)
	e.POST("/admin/keys/algorithm", a.handleSetAlgorithm)
	e.POST("/admin/subjects/:sub/revoke", a.handleRevokeSubject)
	e.GET("/admin/subjects/:sub/sessions", a.handleSessions)
	e.DELETE("/admin/subjects/:sub/sessions", a.handleEndSessions)
	e.DELETE("/admin/subjects/:sub/sessions/:sid", a.handleEndSessions)
	e.GET("/admin/links", a.handleLinks)
	e.DELETE("/admin/links/:key", a.handleUnlink)
	if opts.Gatherer != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})))
	}
	return e
}

// apiError is an admin API error: a status and a message safe to show.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

func (a *api) writeError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ae *apiError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		_ = c.JSON(ae.Status, map[string]string{"error": ae.Message})
	case errors.As(err, &he):
		_ = c.JSON(he.Code, map[string]string{"error": strings.ToLower(http.StatusText(he.Code))})
	case errors.Is(err, storage.ErrUnavailable):
		_ = c.JSON(http.StatusServiceUnavailable, map[string]string{"error": "storage unavailable"})
	default:
		a.deps.Logger.Error("admin: internal error", "path", c.Request().URL.Path, "err", err)
		_ = c.JSON(http.StatusInternalServerError, map[string]string{"error": "internal error"})
	}
}

// authenticate checks the bearer token (or a verified client certificate).
// Failures are logged and limited per client address (see
// Credentials.AllowFailure): further wrong attempts get 429 for a while.
func (a *api) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if _, ok := a.creds.ClientCert(r); ok {
			return next(c)
		}
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && a.creds.TokenOK(tok) {
			return next(c)
		}
		addr := c.RealIP()
		if !a.creds.AllowFailure(addr) {
			c.Response().Header().Set("Retry-After", "10")
			return &apiError{http.StatusTooManyRequests, "too many failed authentications"}
		}
		a.deps.Logger.Warn("admin: authentication failed", "remote", addr, "path", r.URL.Path)
		a.deps.Audit.Event("admin_auth_failed", "remote", addr, "path", r.URL.Path)
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="fedbroker-admin"`)
		return &apiError{http.StatusUnauthorized, "authentication required"}
	}
}
