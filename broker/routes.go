package broker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/authflow"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/grants"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/templates"
)

// routes is the broker's route table.
func (s *Server) routes(cfg *config.Config) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = ipExtractor(cfg.HTTP.TrustedProxies)
	e.Use(recoverPanics, securityHeaders(hstsHeader(s.issuer, cfg.HTTP.HSTS())), s.observeLatency)

	p, f := s.paths, s.flow
	root := s.handleRoot(cfg)
	e.GET(p.root+"/", root)
	if p.root != "" {
		e.GET(p.root, root)
	}
	e.GET(p.discovery, s.handleDiscovery)
	e.GET(p.jwks, s.handleJWKS)
	// /authorize answers pushed requests too (request_uri, RFC 9126).
	e.GET(p.authorize, s.par.HandleAuthorize)
	e.POST(p.authorize, s.par.HandleAuthorize)
	e.GET(p.login, f.HandleChooser)
	e.GET(p.login+"/:connector", f.HandleLogin)
	// The password form is the broker's own: a cross-origin post of it is
	// login CSRF, refused. /authorize (RPs may post), /callback (SAML IdPs
	// post cross-site) and the machine endpoints are not checked.
	e.POST(p.login+"/:connector", f.HandlePasswordLogin, f.SameOrigin)
	// Cancel goes back to the client with access_denied; the request must
	// be the browser's own, with the link's token (Flow.Cancel).
	e.GET(p.cancel, f.HandleCancel)
	e.GET(p.callback+"/:connector", f.HandleCallback)
	e.POST(p.callback+"/:connector", f.HandleCallback)
	e.GET(p.saml+"/:connector/metadata", f.HandleMetadata)
	e.GET(p.logout, f.HandleLogout)
	e.POST(p.logout, f.HandleLogout)
	// Single logout with upstreams: the browser back from an upstream's
	// logout, and upstreams' logout notices (OpenID back-channel logout
	// tokens, SAML LogoutRequests), per connector.
	e.GET(p.logout+"/:connector", f.HandleConnectorLogout)
	e.POST(p.logout+"/:connector", f.HandleConnectorLogout)
	e.POST(p.token, s.token.HandleToken)
	e.POST(p.par, s.par.HandlePAR)
	// The device grant (RFC 8628): its endpoint for clients, and the
	// verification page, whose form is the broker's own.
	dev := authflow.NewDevice(f, cfg.Device.Attempts())
	devAuth := &grants.DeviceEndpoint{Grants: s.token.Grants, Clients: s.clients, Runtime: s.rt.Load,
		Settings: grants.DeviceSettings{Lifetime: cfg.Device.Lifetime(), Interval: cfg.Device.Interval(), VerificationURI: s.issuer + "/device"}}
	e.POST(p.deviceAuth, devAuth.HandleDeviceAuthorization)
	e.GET(p.device, dev.HandlePage)
	e.POST(p.device, dev.HandleSubmit, f.SameOrigin)
	e.GET(p.userinfo, s.handleUserinfo)
	e.POST(p.userinfo, s.handleUserinfo)
	e.POST(p.revoke, s.handleRevoke)
	e.POST(p.introspect, s.handleIntrospect)
	e.GET(p.healthz, s.handleHealthz)
	e.GET(p.readyz, s.handleReadyz)
	staticFS := http.FileServerFS(filesOnly{templates.Static()})
	e.GET(p.static+"/*", echo.WrapHandler(http.StripPrefix(p.static, staticFS)))
	return e
}

// handleError is echo's HTTPErrorHandler: every error a handler returns
// is written by the one oauth.Writer. echo's own errors (no route, wrong
// method) become the matching protocol error or page.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg := http.StatusText(he.Code)
		if s.machine(c) {
			code := oauth.ErrInvalidRequest
			if he.Code >= 500 {
				code = oauth.ErrServerError
			}
			err = oauth.NewError(he.Code, code, "%s", strings.ToLower(msg))
		} else {
			err = &oauth.PageError{Status: he.Code, Heading: msg, Message: "The page you asked for does not exist or does not accept this request.", Code: fmt.Sprint(he.Code)}
		}
	}
	if s.pages.Write(c.Response(), c.Request(), err, s.machine(c)) {
		s.metrics.StorageError()
	}
}

// machine reports whether the endpoint answers machines (token,
// introspection, revocation, userinfo, JWKS, discovery) rather than people.
func (s *Server) machine(c echo.Context) bool {
	switch c.Request().URL.Path {
	case s.paths.deviceAuth:
		return true
	case s.paths.par:
		return true
	case s.paths.token, s.paths.revoke, s.paths.userinfo, s.paths.introspect, s.paths.jwks, s.paths.discovery:
		return true
	}
	return false
}

// securityHeaders sets the headers every response carries, and
// Strict-Transport-Security when hsts is set. The keys and values are made
// once: Header.Set would check each key's case and allocate each value on
// every request. Every response shares the value slices, one-element
// literals with no room to grow, so a handler that adds a value appends to
// a copy and one that sets a header replaces the slice; none writes into a
// shared one.
func securityHeaders(hsts string) echo.MiddlewareFunc {
	type header struct {
		key   string
		value []string
	}
	set := func(k, v string) header { return header{http.CanonicalHeaderKey(k), []string{v}} }
	headers := []header{
		set("Content-Security-Policy", oauth.PageCSP()),
		set("X-Frame-Options", "DENY"),
		// same-origin, not no-referrer: browsers send `Origin: null` on a
		// form POST under no-referrer, and the cross-origin check of the
		// password and sign-out forms needs the real origin from browsers
		// that send no Sec-Fetch-Site. Other sites still get no referrer.
		set("Referrer-Policy", "same-origin"),
		set("X-Content-Type-Options", "nosniff"),
	}
	if hsts != "" {
		headers = append(headers, set("Strict-Transport-Security", hsts))
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			for _, x := range headers {
				h[x.key] = x.value
			}
			return next(c)
		}
	}
}

// hstsHeader is the Strict-Transport-Security value of an https issuer
// (http.hsts_max_age, whole seconds); "" on plain http or when turned off.
// Browsers ignore it over http, and on a loopback development issuer it
// would pin localhost to https.
func hstsHeader(issuer string, maxAge time.Duration) string {
	if u, err := url.Parse(issuer); err != nil || u.Scheme != "https" || maxAge <= 0 {
		return ""
	}
	return fmt.Sprintf("max-age=%d", int64(maxAge/time.Second))
}

// filesOnly serves the files of fsys and nothing else: a directory opens
// as not found, so the file server never lists one.
type filesOnly struct{ fsys fs.FS }

func (f filesOnly) Open(name string) (fs.File, error) {
	file, err := f.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	info, err := file.Stat()
	if err != nil || info.IsDir() {
		file.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return file, nil
}

// recoverPanics turns a panic into a logged server_error, never a stack
// trace on the wire.
func recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
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

// observeLatency records request latency by route pattern.
func (s *Server) observeLatency(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		var he *echo.HTTPError
		if errors.As(err, &he) {
			status = he.Code
		}
		s.metrics.Request(route, status, time.Since(start))
		return err
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
	if err := s.readiness(ctx); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": err.Error()})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
