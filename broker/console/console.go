// Package console is the admin console: server-rendered HTML pages on the
// admin listener (never the public one) under /console/, for the people
// who run the broker. It shows what the admin API serves — status, keys,
// connectors, clients, people and their sessions, the audit trail — and
// offers the API's actions (reload, rotate keys, revoke, unlink, sign out)
// behind a confirmation, each audited with the admin's name.
//
// Authentication is the admin API's: the admin token, typed once into a
// login form and exchanged for an HttpOnly, SameSite=Strict session cookie
// (a random id mapped in this process's memory), or a verified client
// certificate. Every POST carries the session's CSRF token and must come
// from the console's own origin. Pages load nothing from elsewhere and run
// under a strict Content-Security-Policy: no inline script or style.
package console

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/logout"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// Prefix is where the console is mounted on the admin listener.
const Prefix = "/console"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Deps are what the console reads and acts on. Runtime, Store and
// Credentials are required; the rest may be nil/zero and the pages say
// what is not available.
type Deps struct {
	// Issuer is the broker's issuer URL; Version its build version.
	Issuer  string
	Version string
	// Runtime is the configuration being served (swapped on reload).
	Runtime func() *runtime.Runtime
	// Config is the running configuration, for the connectors' and
	// clients' effective settings (shown with secrets masked).
	Config func() *config.Config
	Store  storage.Storage
	Keys   *keys.Manager
	// Tokens is the token authority (the workbench may mint nothing with
	// it; it is here for reading, e.g. releasable claims).
	Tokens *tokens.Authority
	Logout *logout.Service
	Health *observe.Health
	// Audit writes audit entries; AuditRing holds the recent ones for the
	// audit page; AuditFile, when set, is the file the audit log goes to
	// (its tail is shown too).
	Audit     observe.Audit
	AuditRing *observe.AuditRing
	AuditFile string
	Logger    *slog.Logger
	// Storage is the storage kind and durability (as GET /admin/status).
	Storage admin.StorageStatus
	// Credentials checks the admin token and client certificates and
	// limits failed attempts; shared with the admin API.
	Credentials *admin.Credentials
	// Reload reloads the configuration (nil: not available).
	Reload func(ctx context.Context) (config.ReloadReport, error)
	// Gatherer is the broker's metrics registry; Samples the per-minute
	// history of its counters drawn on the overview (nil: no chart).
	Gatherer prometheus.Gatherer
	Samples  *observe.Sampler
	// Replica is this process's own heartbeat record as of now (nil: the
	// overview lists only what storage holds). The records of all the
	// replicas come from Store.ListReplicas.
	Replica func(ctx context.Context) storage.Replica
	// Readiness is what /readyz checks (storage, signing keys, draining);
	// nil: not shown.
	Readiness func(ctx context.Context) error
	// Recover wraps every handler so a panic is an error, never a crash.
	Recover echo.MiddlewareFunc
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Console is the admin console's handler and its in-memory sign-in
// sessions (per process: each replica's admin listener has its own).
type Console struct {
	deps     Deps
	pages    map[string]*template.Template // page file name → layout + page
	sessions *sessions
	origin   *http.CrossOriginProtection
	echo     *echo.Echo
}

// New builds the console. It panics if the embedded templates do not
// parse (a build defect, caught by the package's tests).
func New(deps Deps) *Console {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	c := &Console{deps: deps, sessions: newSessions(deps.Store, deps.Now), origin: http.NewCrossOriginProtection()}
	pages, err := parsePages()
	if err != nil {
		panic(err)
	}
	c.pages = pages
	c.echo = c.routes()
	return c
}

// Handler serves the console's paths (everything under Prefix).
func (c *Console) Handler() http.Handler { return c.echo }

// parsePages parses layout.html once per page, with that page's blocks.
func parsePages() (map[string]*template.Template, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console: parse layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := make(map[string]*template.Template)
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", base, err)
		}
		out[base] = t
	}
	return out, nil
}

// navItem is one entry of the navigation bar.
type navItem struct {
	Name, Path string
}

// nav is the navigation bar, in order.
var nav = []navItem{
	{"Overview", Prefix + "/"},
	{"Connectors", Prefix + "/connectors"},
	{"Clients", Prefix + "/clients"},
	{"People", Prefix + "/people"},
	{"Audit", Prefix + "/audit"},
	{"Actions", Prefix + "/actions"},
	{"Mapping workbench", Prefix + "/workbench"},
}

// Layout is what layout.html receives: the page's own data is .Data.
type Layout struct {
	// Title is the page's title (from the page's "title" block when it
	// defines one; otherwise "fedbroker console").
	Nav     []navItem
	Current string // the request's path, to mark the current nav entry
	// Admin is the signed-in admin's name ("" on the login page); CSRF
	// the token every POST form must carry as the field "csrf".
	Admin string
	CSRF  string
	// Prefix is the console's mount point, for building links.
	Prefix string
	Issuer string
	// Data is the page's own data, as passed to render.
	Data any
}

// render writes page name ("people.html", "workbench.html", ...) with the
// layout around it, buffered so that a template error never leaves half a
// page. The page file is parsed together with templates/layout.html and
// must define the block "content" (the page's body) and may define
// "title" (the <title> and heading text) and "scripts" (extra <script
// src=...> tags of its own static files, served under
// /console/static/). Every template file in templates/ is picked up by
// name, so a new page needs no registration.
//
// Inside the page's blocks, . is a Layout: .Data is the data passed here,
// .CSRF the session's CSRF token (every POST form includes
// <input type="hidden" name="csrf" value="{{.CSRF}}">; a fetch() sends
// it as the X-CSRF-Token header instead), .Admin the signed-in admin's
// name and .Prefix "/console". Usage from a handler:
//
//	return c.render(ec.Response(), ec.Request(), http.StatusOK, "workbench.html", data)
//
// The page is served with the console's security headers (strict CSP,
// no framing, no caching).
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) error {
	t, ok := c.pages[name]
	if !ok {
		return fmt.Errorf("console: no page %s", name)
	}
	admin, csrf := c.Admin(r)
	l := Layout{Nav: nav, Current: r.URL.Path, Admin: admin, CSRF: csrf, Prefix: Prefix, Issuer: c.deps.Issuer, Data: data}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", l); err != nil {
		return fmt.Errorf("console: render %s: %w", name, err)
	}
	setSecurityHeaders(w.Header())
	if name == "workbench.html" {
		w.Header().Set("Content-Security-Policy", workbenchCSP)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := buf.WriteTo(w)
	return err
}

// Admin returns the admin signed in on r (the name audit entries carry:
// "token" for the admin token, the certificate's subject CN for a client
// certificate) and the CSRF token of their console session; "", "" when
// no one is. Handlers below the authenticated group always get a name.
func (c *Console) Admin(r *http.Request) (name, csrf string) {
	if id, ok := r.Context().Value(adminKey{}).(identity); ok {
		return id.name, id.csrf
	}
	return "", ""
}

// auditAdmin writes an audit entry of an admin action, naming the admin.
func (c *Console) auditAdmin(r *http.Request, event string, kv ...any) {
	name, _ := c.Admin(r)
	c.deps.Audit.Event(event, append([]any{"admin", name, "via", "console"}, kv...)...)
}

// by is what logout.Service.End records as who ended sessions.
func (c *Console) by(r *http.Request) string {
	name, _ := c.Admin(r)
	return "admin:" + name
}

// adminKey is the request context key of the signed-in identity.
type adminKey struct{}

// identity is who is signed in and their CSRF token.
type identity struct{ name, csrf string }

// pageCSP is the console's Content-Security-Policy: no inline script or
// style, nothing from elsewhere, forms posted to the console only.
const pageCSP = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// workbenchCSP is pageCSP without form-action, for the mapping workbench
// only. Its Test sign-in button posts to the console, which redirects the
// new tab to the broker's public /login/{connector} and from there to the
// upstream IdP; browsers check form-action on every redirect of a form's
// navigation, so 'self' (or any fixed list: the upstreams are whatever
// the connectors name) would stop the test sign-in at the first hop. The
// page's forms are all the console's own, CSRF-protected, and it runs no
// script but its own.
const workbenchCSP = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"

// setSecurityHeaders sets the console's response headers: a strict CSP
// (no inline script or style, nothing from elsewhere), no framing, no
// referrer, no caching of admin data.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// funcs are the template helpers every page may use.
var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return humanDuration(time.Since(t)) + " ago"
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"duration": humanDuration,
	"join":     strings.Join,
	"deref":    func(b *bool) bool { return b != nil && *b },
	"isCurrent": func(current, p string) bool {
		if p == Prefix+"/" {
			return current == Prefix+"/" || current == Prefix
		}
		return current == p || strings.HasPrefix(current, p+"/")
	},
}

// humanDuration is d rounded for people: 42s, 5m, 3h, 2d.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
