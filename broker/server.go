// Package broker is the OpenID Connect provider: routes, browser flows,
// grants and token issuance for the one internal issuer.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/templates"
)

// Options are the broker's dependencies. Storage and Keys are required.
type Options struct {
	Storage storage.Storage
	Keys    *keys.Manager
	// Logger receives operational logs; Audit receives one JSON line per
	// sign-in, rejection, token grant and admin action. Neither ever sees a
	// secret, password, code or token.
	Logger *slog.Logger
	Audit  *slog.Logger
	// HTTPClient is used by connectors to reach upstreams.
	HTTPClient *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Registerer receives the broker's Prometheus metrics; a private
	// registry when nil.
	Registerer prometheus.Registerer
}

// Server is one broker replica. It holds no per-login state in memory:
// every step of every flow can be served by any replica sharing the storage.
type Server struct {
	issuer     string // exactly as configured, no trailing slash
	issuerPath string // path prefix of the issuer ("" at the root)

	store   storage.Storage
	keys    *keys.Manager
	log     *slog.Logger
	audit   *slog.Logger
	client  *http.Client
	now     func() time.Time
	tmpl    *templates.Templates
	metrics *metrics
	// gatherer serves /metrics on the admin listener.
	gatherer prometheus.Gatherer
	paths    paths

	rt     atomic.Pointer[runtime]
	health *connectorHealth
	// deferUnreachable lets a serving broker start when an upstream's
	// discovery is unreachable (Check reports it instead).
	deferUnreachable bool
	seal             *sealer
	limiter          *loginLimiter
	secrets          *secretCache
	echo             *echo.Echo
	sessions         sessionCookies
}

type paths struct {
	discovery, jwks, authorize, token, userinfo, revoke, logout, introspect string
	login, callback, static, healthz, readyz, saml                          string
}

// New builds a broker from a validated configuration. It opens every
// connector and compiles every mapping; any problem is returned with its
// YAML path (as config.Errors).
func New(ctx context.Context, cfg *config.Config, opts Options) (*Server, error) {
	if opts.Storage == nil || opts.Keys == nil {
		return nil, errors.New("broker: storage and keys are required")
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("broker: issuer: %w", err)
	}
	s := &Server{
		issuer:     strings.TrimSuffix(cfg.Issuer, "/"),
		issuerPath: strings.TrimSuffix(u.Path, "/"),
		store:      opts.Storage,
		keys:       opts.Keys,
		log:        opts.Logger,
		audit:      opts.Audit,
		client:     opts.HTTPClient,
		now:        opts.Now,

		deferUnreachable: true,
	}
	if s.log == nil {
		s.log = discardLogger()
	}
	if s.audit == nil {
		s.audit = s.log.With("log", "audit")
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: 15 * time.Second}
	}
	if s.now == nil {
		s.now = time.Now
	}
	reg := opts.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg, s.gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		s.gatherer = g
	}
	s.metrics = newMetrics(reg)
	s.client = s.metrics.instrument(s.client)
	registerKeyRotations(reg, s.keys.Rotations)
	p := s.issuerPath
	s.paths = paths{
		discovery:  p + "/.well-known/openid-configuration",
		jwks:       p + "/keys",
		authorize:  p + "/authorize",
		token:      p + "/token",
		userinfo:   p + "/userinfo",
		revoke:     p + "/revoke",
		logout:     p + "/logout",
		introspect: p + "/introspect",
		login:      p + "/login",
		callback:   p + "/callback",
		static:     p + "/static",
		healthz:    p + "/healthz",
		readyz:     p + "/readyz",
		saml:       p + "/saml",
	}
	s.sessions = newSessionCookies(s.issuer, p+"/", u.Scheme == "https")
	if s.tmpl, err = templates.New(); err != nil {
		return nil, err
	}
	kek, err := cfg.Signing.KEK()
	if err != nil {
		return nil, err
	}
	if s.seal, err = newSealer(kek); err != nil {
		return nil, err
	}
	s.limiter = newLoginLimiter(s.now)
	s.health = newConnectorHealth()
	s.secrets = newSecretCache(s.now)
	rt, err := s.compile(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.rt.Store(rt)
	s.echo = s.routes(cfg)
	return s, nil
}

// Reload compiles cfg and, only if everything compiles, swaps it in
// atomically. Logins in flight keep working: their state is in storage and
// refers to clients and connectors by id.
func (s *Server) Reload(ctx context.Context, cfg *config.Config) error {
	if strings.TrimSuffix(cfg.Issuer, "/") != s.issuer {
		return config.Errors{{Path: "issuer", Message: "cannot change while running; restart instead"}}
	}
	rt, err := s.compile(ctx, cfg)
	if err != nil {
		return err
	}
	old := s.rt.Swap(rt)
	old.close()
	s.log.Info("configuration reloaded", "connectors", len(rt.connectorOrder), "clients", len(rt.clients))
	return nil
}

// Handler is the broker's public HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Gatherer returns the registry holding the broker's metrics, for /metrics.
func (s *Server) Gatherer() prometheus.Gatherer { return s.gatherer }

// Issuer returns the issuer URL.
func (s *Server) Issuer() string { return s.issuer }

func (s *Server) routes(cfg *config.Config) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = ipExtractor(cfg.HTTP.TrustedProxies)
	e.Use(s.recoverMiddleware, s.securityHeaders, s.metrics.middleware)

	p := s.paths
	e.GET(p.discovery, s.handleDiscovery)
	e.GET(p.jwks, s.handleJWKS)
	e.GET(p.authorize, s.handleAuthorize)
	e.POST(p.authorize, s.handleAuthorize)
	e.GET(p.login, s.handleChooser)
	e.GET(p.login+"/:connector", s.handleLogin)
	e.POST(p.login+"/:connector", s.handlePasswordLogin)
	e.GET(p.callback+"/:connector", s.handleCallback)
	e.POST(p.callback+"/:connector", s.handleCallback)
	e.GET(p.saml+"/:connector/metadata", s.handleMetadata)
	e.POST(p.token, s.handleToken)
	e.GET(p.userinfo, s.handleUserinfo)
	e.POST(p.userinfo, s.handleUserinfo)
	e.POST(p.revoke, s.handleRevoke)
	e.POST(p.introspect, s.handleIntrospect)
	e.GET(p.logout, s.handleLogout)
	e.POST(p.logout, s.handleLogout)
	e.GET(p.healthz, s.handleHealthz)
	e.GET(p.readyz, s.handleReadyz)
	staticFS := http.FileServer(http.FS(templates.Static()))
	e.GET(p.static+"/*", echo.WrapHandler(http.StripPrefix(p.static, staticFS)))
	return e
}

// securityHeaders sets the headers every response carries.
func (s *Server) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		return next(c)
	}
}

// recoverMiddleware turns a panic into a logged server_error, never a stack
// trace on the wire.
func (s *Server) recoverMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return next(c)
	}
}

// ipExtractor takes the client address from the connection unless trusted
// proxies are configured; X-Forwarded-* never changes the issuer or any
// endpoint URL.
func ipExtractor(trusted []string) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	var opts []echo.TrustOption
	opts = append(opts, echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false))
	for _, t := range trusted {
		if _, n, err := net.ParseCIDR(t); err == nil {
			opts = append(opts, echo.TrustIPRange(n))
		} else if ip := net.ParseIP(t); ip != nil {
			bits := 32
			if ip.To4() == nil {
				bits = 128
			}
			opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}))
		}
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

func (s *Server) handleHealthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness: storage", "err", err)
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "storage unavailable"})
	}
	if !s.keys.Ready() {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "signing keys not loaded"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// wireConnector hands a connector the broker services it asks for through
// optional interfaces (a replay cache for SAML assertions).
func (s *Server) wireConnector(impl any) {
	if rc, ok := impl.(interface{ SetReplayCache(replayCache) }); ok {
		rc.SetReplayCache(s.store)
	}
}

// replayCache is what connectors that must accept a message once need.
type replayCache = interface {
	MarkSeen(ctx context.Context, namespace, id string, until time.Time) (bool, error)
}
