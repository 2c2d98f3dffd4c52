package broker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// AdminOptions configure the admin API. It runs on its own listener
// (loopback by default) and answers only requests that carry the bearer
// Token, or, when the listener uses mutual TLS, a verified client
// certificate (ClientCertOK).
type AdminOptions struct {
	// Token is the bearer token; empty disables bearer authentication.
	Token string
	// ClientCertOK accepts requests whose TLS connection presented a client
	// certificate verified by the listener's ClientCAs.
	ClientCertOK bool
	// Reload loads, validates and compiles the configuration again and
	// swaps it in; its error lists the problems.
	Reload func(ctx context.Context) error
	// Gatherer serves /metrics; nil means no metrics endpoint.
	Gatherer prometheus.Gatherer
}

// AdminHandler returns the admin API (JSON; see docs/admin.md).
func (s *Server) AdminHandler(opts AdminOptions) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.adminError
	// The failure limit and the audit log use the connection's address:
	// forwarding headers would let a caller evade the limit or lock out
	// another address.
	e.IPExtractor = echo.ExtractIPDirect()
	a := &admin{s: s, opts: opts, limits: make(map[string]*rate.Limiter)}
	if opts.Token != "" {
		sum := sha256.Sum256([]byte(opts.Token))
		a.tokenHash = sum[:]
	}
	e.Use(s.recoverMiddleware, a.authenticate)
	e.GET("/admin/connectors", a.connectors)
	e.POST("/admin/mapping/test", a.mappingTest)
	e.POST("/admin/reload", a.reload)
	e.POST("/admin/keys/rotate", a.rotate)
	e.POST("/admin/subjects/:sub/revoke", a.revokeSubject)
	e.GET("/admin/links", a.links)
	e.DELETE("/admin/links/:key", a.unlink)
	if opts.Gatherer != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})))
	}
	return e
}

type admin struct {
	s         *Server
	opts      AdminOptions
	tokenHash []byte

	mu     sync.Mutex
	limits map[string]*rate.Limiter // failed authentications per address
}

type adminErr struct {
	Status  int
	Message string
}

func (e *adminErr) Error() string { return e.Message }

func (s *Server) adminError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ae *adminErr
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		_ = c.JSON(ae.Status, map[string]string{"error": ae.Message})
	case errors.As(err, &he):
		_ = c.JSON(he.Code, map[string]string{"error": strings.ToLower(http.StatusText(he.Code))})
	case errors.Is(err, storage.ErrUnavailable):
		_ = c.JSON(http.StatusServiceUnavailable, map[string]string{"error": "storage unavailable"})
	default:
		s.log.Error("admin: internal error", "path", c.Request().URL.Path, "err", err)
		_ = c.JSON(http.StatusInternalServerError, map[string]string{"error": "internal error"})
	}
}

// authenticate checks the bearer token (or a verified client certificate).
// Failures are logged and limited per client address: after 5, further
// wrong attempts get 429 for a while (one more every 10 seconds). A correct
// token is never refused, so someone sharing the operator's address cannot
// lock the operator out; the limit only slows guessing.
func (a *admin) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
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
		a.mu.Lock()
		lim, ok := a.limits[addr]
		if !ok {
			if len(a.limits) > 10000 {
				a.limits = make(map[string]*rate.Limiter)
			}
			lim = rate.NewLimiter(rate.Every(10*time.Second), 5)
			a.limits[addr] = lim
		}
		a.mu.Unlock()
		if !lim.Allow() {
			c.Response().Header().Set("Retry-After", "10")
			return &adminErr{http.StatusTooManyRequests, "too many failed authentications"}
		}
		a.s.log.Warn("admin: authentication failed", "remote", addr, "path", r.URL.Path)
		a.s.auditEvent("admin_auth_failed", "remote", addr, "path", r.URL.Path)
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="fedbroker-admin"`)
		return &adminErr{http.StatusUnauthorized, "authentication required"}
	}
}

type connectorStatus struct {
	ID        string       `json:"id"`
	Type      string       `json:"type"`
	Name      string       `json:"name"`
	Health    healthRecord `json:"health"`
	Reachable *bool        `json:"reachable,omitempty"`
	Problem   string       `json:"problem,omitempty"`
}

// HealthChecker is implemented by connectors that can probe their upstream.
type HealthChecker interface {
	CheckHealth(ctx context.Context) error
}

func (a *admin) connectors(c echo.Context) error {
	rt := a.s.rt.Load()
	out := make([]connectorStatus, len(rt.connectorOrder))
	var wg sync.WaitGroup
	for i, id := range rt.connectorOrder {
		conn := rt.connectors[id]
		out[i] = connectorStatus{ID: id, Type: conn.typ, Name: conn.name, Health: a.s.health.get(id)}
		if hc, ok := conn.impl.(HealthChecker); ok {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
				defer cancel()
				err := hc.CheckHealth(ctx)
				ok := err == nil
				out[i].Reachable = &ok
				if err != nil {
					out[i].Problem = err.Error()
				}
			}(i)
		}
	}
	wg.Wait()
	return c.JSON(http.StatusOK, map[string]any{"connectors": out})
}

func (a *admin) mappingTest(c echo.Context) error {
	var in MappingInput
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20))
	if err := dec.Decode(&in); err != nil {
		return &adminErr{http.StatusBadRequest, "body must be JSON: {\"connector\": ID, \"claims\": {...}}"}
	}
	rt := a.s.rt.Load()
	explain := c.QueryParam("explain") == "true"
	var rep MappingReport
	if in.Workload {
		w, ok := rt.workloads[in.Connector]
		if !ok {
			return &adminErr{http.StatusNotFound, "no workload issuer " + in.Connector}
		}
		rep = RunMapping(c.Request().Context(), w.mapping, "workload", in, explain)
	} else {
		conn, ok := rt.connectors[in.Connector]
		if !ok {
			return &adminErr{http.StatusNotFound, "no connector " + in.Connector}
		}
		rep = RunMapping(c.Request().Context(), conn.mapping, conn.typ, in, explain)
	}
	a.s.auditEvent("admin_mapping_test", "connector", in.Connector, "decision", rep.Decision)
	return c.JSON(http.StatusOK, rep)
}

func (a *admin) reload(c echo.Context) error {
	if a.opts.Reload == nil {
		return &adminErr{http.StatusNotImplemented, "reload is not available"}
	}
	if err := a.opts.Reload(c.Request().Context()); err != nil {
		a.s.auditEvent("admin_reload", "outcome", "refused")
		return c.JSON(http.StatusUnprocessableEntity, map[string]any{"error": "configuration refused; the previous one keeps serving", "problems": strings.Split(err.Error(), "\n")})
	}
	a.s.auditEvent("admin_reload", "outcome", "applied")
	return c.JSON(http.StatusOK, map[string]string{"status": "reloaded"})
}

func (a *admin) rotate(c echo.Context) error {
	if err := a.s.keys.RotateNow(c.Request().Context()); err != nil {
		return err
	}
	a.s.auditEvent("admin_rotate_keys")
	return c.JSON(http.StatusOK, map[string]string{"status": "rotated"})
}

func (a *admin) revokeSubject(c echo.Context) error {
	sub, err := url.PathUnescape(c.Param("sub"))
	if err != nil || sub == "" {
		return &adminErr{http.StatusBadRequest, "malformed subject"}
	}
	fams, sess, err := a.s.store.RevokeSubject(c.Request().Context(), sub)
	if err != nil {
		return err
	}
	a.s.auditEvent("admin_revoke_subject", "sub", sub, "families", fams, "sessions", sess)
	return c.JSON(http.StatusOK, map[string]any{"sub": sub, "refresh_families_revoked": fams, "sessions_ended": sess})
}

func (a *admin) links(c echo.Context) error {
	links, err := a.s.store.ListLinks(c.Request().Context())
	if err != nil {
		return err
	}
	if sub := c.QueryParam("sub"); sub != "" {
		kept := links[:0]
		for _, l := range links {
			if l.Subject == sub {
				kept = append(kept, l)
			}
		}
		links = kept
	}
	if links == nil {
		links = []storage.Link{}
	}
	return c.JSON(http.StatusOK, map[string]any{"links": links})
}

func (a *admin) unlink(c echo.Context) error {
	key, err := url.PathUnescape(c.Param("key"))
	if err != nil {
		return &adminErr{http.StatusBadRequest, "malformed link key"}
	}
	err = a.s.store.DeleteLink(c.Request().Context(), key)
	if errors.Is(err, storage.ErrNotFound) {
		return &adminErr{http.StatusNotFound, "no link with that key"}
	}
	if err != nil {
		return err
	}
	a.s.auditEvent("admin_unlink", "key", key)
	return c.NoContent(http.StatusNoContent)
}
