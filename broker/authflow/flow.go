// Package authflow is the broker's browser side: the authorization
// endpoint, the connector chooser, password and upstream sign-ins, the
// upstream callback, finishing a login (map, link, SSO session, one-time
// code), single sign-on and logout. Each step is a method that takes the
// request's values and the browser's cookies and returns a Result — where
// to send the browser next and which cookies to set — so every step runs
// without HTTP in tests. The thin echo handlers (handlers.go, and
// HandleLogout in logout.go) read a
// request into those values and write the Result back.
package authflow

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/logout"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// Flow runs the browser flows of one broker.
type Flow struct {
	issuer  string
	login   string // path of the chooser; /login/{connector} below it
	store   storage.Storage
	tokens  *tokens.Authority
	sealer  *tokens.Sealer
	now     func() time.Time
	audit   observe.Audit
	log     *slog.Logger
	metrics *observe.Metrics
	health  *observe.Health
	pages   *oauth.Writer
	cookies Cookies
	origin  *http.CrossOriginProtection
	logout  string // path of the logout endpoint
	cancel  string // path of the cancel endpoint (outside /login: a connector may be called "cancel")
	limiter *loginLimiter
	pending *pendingLimiter
	current func() *runtime.Runtime
	ending  *logout.Service
}

// Deps are a Flow's dependencies; all are required but Now and Logger.
type Deps struct {
	// Issuer is the issuer URL; IssuerPath its path ("" at the root).
	Issuer, IssuerPath string
	Store              storage.Storage
	Tokens             *tokens.Authority
	Sealer             *tokens.Sealer
	Now                func() time.Time
	Audit              observe.Audit
	Logger             *slog.Logger
	Metrics            *observe.Metrics
	Health             *observe.Health
	// Pages renders HTML pages.
	Pages *oauth.Writer
	// Runtime returns the configuration currently served.
	Runtime func() *runtime.Runtime
	// BrowserKey signs the browser-binding cookie (HMAC-SHA256), so that
	// only ids the broker made are accepted; every replica needs the same
	// key. Nil leaves the ids unsigned.
	BrowserKey []byte
	// SignInLimit bounds the sign-ins one client address may start;
	// zero: config.DefaultSignInLimit.
	SignInLimit config.RateLimit
	// Logout ends sessions and tells the applications (single logout).
	Logout *logout.Service
}

// New returns the flows of one broker.
func New(deps Deps) *Flow {
	f := &Flow{
		issuer:  deps.Issuer,
		login:   deps.IssuerPath + "/login",
		store:   deps.Store,
		tokens:  deps.Tokens,
		sealer:  deps.Sealer,
		now:     deps.Now,
		audit:   deps.Audit,
		log:     deps.Logger,
		metrics: deps.Metrics,
		health:  deps.Health,
		pages:   deps.Pages,
		current: deps.Runtime,
		ending:  deps.Logout,
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.cookies = NewCookies(deps.Issuer, deps.IssuerPath+"/", deps.BrowserKey)
	f.origin = newOriginCheck(deps.Issuer)
	f.logout = deps.IssuerPath + "/logout"
	f.cancel = deps.IssuerPath + "/cancel"
	f.limiter = newLoginLimiter(f.now)
	f.pending = newPendingLimiter(f.now, deps.SignInLimit)
	return f
}

// Cookies returns the names and attributes of the broker's cookies.
func (f *Flow) Cookies() Cookies { return f.cookies }

// Result is where a step sends the browser next, and what it sets there.
// Exactly one of Redirect and Template is set.
type Result struct {
	// Redirect is the next URL (302, or 303 after a POST).
	Redirect string
	// Status, Template and Data render a page instead.
	Status   int
	Template string
	Data     any

	// Session, when set, is the new SSO session to remember in a cookie.
	Session *storage.Session
	// EndSession clears the SSO session cookie.
	EndSession bool
	// BrowserID, when set, is a new browser-binding id to set.
	BrowserID string
	// FrameSources are URLs the page loads in iframes (front-channel
	// logout): the page's Content-Security-Policy allows their origins.
	FrameSources []string
}

func redirect(to string) Result { return Result{Redirect: to} }

func page(status int, name string, data any) Result {
	return Result{Status: status, Template: name, Data: data}
}

// Browser is what a step reads from the person's browser: the broker's two
// cookies, as sent (possibly empty or forged).
type Browser struct {
	// SessionID is the SSO session cookie.
	SessionID string
	// BrowserID is the browser-binding cookie.
	BrowserID string
	// RemoteIP is the client's address as the broker trusts it (echo's
	// RealIP behind configured proxies). Authorize limits the pending
	// sign-ins each address may start by it; "" is one address of its own.
	RemoteIP string
}

// ensureID returns the browser's binding id, making one (and asking res to
// set it) when the browser has none or a malformed one. An id from a
// request is one the broker made: Cookies.Read drops an unsigned one.
func (b *Browser) ensureID(res *Result) string {
	if l := len(b.BrowserID); l >= 32 && l <= 64 {
		return b.BrowserID
	}
	b.BrowserID = oauth.RandomToken(24)
	res.BrowserID = b.BrowserID
	return b.BrowserID
}

// Errors shown to a person.
var (
	errRequestGone = &oauth.PageError{Status: http.StatusBadRequest, Heading: "This sign-in has expired", Message: "The sign-in took too long or was already completed. Go back to the application and start again.", Code: "expired_request"}

	errOtherBrowser = &oauth.PageError{Status: http.StatusBadRequest, Heading: "This sign-in was started elsewhere", Message: "This sign-in was started in another browser or its cookies were lost. Go back to the application and start again.", Code: "browser_mismatch"}

	errUnknownConnector = &oauth.PageError{Status: http.StatusNotFound, Heading: "Unknown sign-in method", Message: "There is no such way of signing in here. Go back to the application and start again.", Code: "unknown_connector"}

	errConnectorNotAllowed = &oauth.PageError{Status: http.StatusBadRequest, Heading: "Unknown sign-in method", Message: "This way of signing in is not available for this application.", Code: "unknown_connector"}

	errMappingFailed = &oauth.PageError{Status: http.StatusForbidden, Heading: "Sign-in refused", Message: "Your account could not be mapped to a sign-in for this organisation. Contact your administrator.", Code: "mapping_error"}
)
