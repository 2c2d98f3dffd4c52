// Package admin is the broker's admin listener: a JSON API (see
// docs/admin.md) for operators, on its own listener, answering only
// requests that carry the admin bearer token or a verified client
// certificate.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
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
}

type api struct {
	deps      Deps
	opts      Options
	tokenHash []byte

	mu     sync.Mutex
	limits map[string]*rate.Limiter // failed authentications per address
}

// Handler returns the admin API.
func Handler(deps Deps, opts Options) http.Handler {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	a := &api{deps: deps, opts: opts, limits: make(map[string]*rate.Limiter)}
	e.HTTPErrorHandler = a.writeError
	// The failure limit and the audit log use the connection's address:
	// forwarding headers would let a caller evade the limit or lock out
	// another address.
	e.IPExtractor = echo.ExtractIPDirect()
	if opts.Token != "" {
		sum := sha256.Sum256([]byte(opts.Token))
		a.tokenHash = sum[:]
	}
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
// Failures are logged and limited per client address: after 5, further
// wrong attempts get 429 for a while (one more every 10 seconds). A correct
// token is never refused, so someone sharing the operator's address cannot
// lock the operator out; the limit only slows guessing.
func (a *api) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if a.opts.ClientCertOK && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			return next(c)
		}
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && a.tokenHash != nil {
			sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
			if subtle.ConstantTimeCompare(sum[:], a.tokenHash) == 1 {
				return next(c)
			}
		}
		addr := c.RealIP()
		if !a.allowFailure(addr) {
			c.Response().Header().Set("Retry-After", "10")
			return &apiError{http.StatusTooManyRequests, "too many failed authentications"}
		}
		a.deps.Logger.Warn("admin: authentication failed", "remote", addr, "path", r.URL.Path)
		a.deps.Audit.Event("admin_auth_failed", "remote", addr, "path", r.URL.Path)
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="fedbroker-admin"`)
		return &apiError{http.StatusUnauthorized, "authentication required"}
	}
}

// maxLimitedAddrs bounds the failure limiters kept in memory.
const maxLimitedAddrs = 10000

func (a *api) allowFailure(addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	lim, ok := a.limits[addr]
	if !ok {
		if len(a.limits) > maxLimitedAddrs {
			a.limits = make(map[string]*rate.Limiter)
		}
		lim = rate.NewLimiter(rate.Every(10*time.Second), 5)
		a.limits[addr] = lim
	}
	return lim.Allow()
}
