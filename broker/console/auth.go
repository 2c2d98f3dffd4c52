package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// cookieName is the console's session cookie: a random id, scoped to the
// console's path.
const cookieName = "fedbroker_console"

// Session lifetimes: a session ends after idleTimeout without a request,
// and at the latest absoluteTimeout after sign-in.
const (
	idleTimeout     = 30 * time.Minute
	absoluteTimeout = 12 * time.Hour
	// maxSessions bounds the sessions kept; the oldest goes first.
	maxSessions = 1000
)

// session is one signed-in browser.
type session struct {
	admin    string
	csrf     string
	created  time.Time
	lastSeen time.Time
}

// sessions are the console's sign-ins, in this process's memory, keyed by
// the SHA-256 of the cookie's id (so a lookup's timing says nothing of
// the ids).
type sessions struct {
	now func() time.Time
	// certKey derives the CSRF token of a client-certificate sign-in,
	// which has no cookie session.
	certKey []byte

	mu sync.Mutex
	m  map[[32]byte]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, certKey: randomBytes(32), m: make(map[[32]byte]*session)}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on supported platforms (Go 1.24+)
	return b
}

func randomToken() string { return base64.RawURLEncoding.EncodeToString(randomBytes(32)) }

// create starts a session for admin and returns its cookie id.
func (s *sessions) create(admin string) string {
	id := randomToken()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if len(s.m) >= maxSessions {
		var oldest [32]byte
		var at time.Time
		for k, v := range s.m {
			if at.IsZero() || v.created.Before(at) {
				oldest, at = k, v.created
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = &session{admin: admin, csrf: randomToken(), created: now, lastSeen: now}
	return id
}

// get returns the live session of id and marks it used.
func (s *sessions) get(id string) (session, bool) {
	if id == "" {
		return session{}, false
	}
	now := s.now()
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[k]
	if !ok {
		return session{}, false
	}
	if now.Sub(se.lastSeen) > idleTimeout || now.Sub(se.created) > absoluteTimeout {
		delete(s.m, k)
		return session{}, false
	}
	se.lastSeen = now
	return *se, true
}

// end ends the session of id.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(id)))
}

func (s *sessions) sweepLocked(now time.Time) {
	for k, se := range s.m {
		if now.Sub(se.lastSeen) > idleTimeout || now.Sub(se.created) > absoluteTimeout {
			delete(s.m, k)
		}
	}
}

// certCSRF is the CSRF token of a client-certificate sign-in: bound to the
// certificate (its raw bytes) and this process.
func (s *sessions) certCSRF(raw []byte) string {
	m := hmac.New(sha256.New, s.certKey)
	m.Write(raw)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// identify returns who is signed in on r: a verified client certificate,
// or the session of the cookie.
func (c *Console) identify(r *http.Request) (identity, bool) {
	if c.deps.Credentials != nil {
		if cn, ok := c.deps.Credentials.ClientCert(r); ok {
			if cn == "" {
				cn = "certificate"
			}
			return identity{name: cn, csrf: c.sessions.certCSRF(r.TLS.VerifiedChains[0][0].Raw)}, true
		}
	}
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return identity{}, false
	}
	se, ok := c.sessions.get(ck.Value)
	if !ok {
		return identity{}, false
	}
	return identity{name: se.admin, csrf: se.csrf}, true
}

// requireAdmin lets signed-in requests through, with their identity in
// the request's context, and sends the others to the login page (403 for
// a POST: a form posted after the session ended is not replayed).
func (c *Console) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		r := ec.Request()
		id, ok := c.identify(r)
		if !ok {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				return ec.Redirect(http.StatusSeeOther, Prefix+"/login")
			}
			return c.fail(ec, http.StatusForbidden, "Signed out", "Your console session ended. Sign in again, then repeat the action.")
		}
		ec.SetRequest(r.WithContext(context.WithValue(r.Context(), adminKey{}, id)))
		return next(ec)
	}
}

// checkPost refuses a state-changing request that did not come from the
// console's own origin (Sec-Fetch-Site, or Origin against Host) or that
// lacks the session's CSRF token (form field "csrf" or header
// X-CSRF-Token), compared in constant time. It runs after requireAdmin.
// maxPostBytes caps the body of every console POST.
const maxPostBytes = 2 << 20

func (c *Console) checkPost(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		r := ec.Request()
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			return next(ec)
		}
		if err := c.origin.Check(r); err != nil {
			c.deps.Audit.Event("console_request_refused", "path", r.URL.Path, "reason", "cross-origin")
			return c.fail(ec, http.StatusForbidden, "Request refused", "This form was sent from another site, so it was not accepted.")
		}
		// No console form is larger (a pasted mapping, claims or a SAML
		// assertion); a bigger body is refused before it is parsed.
		r.Body = http.MaxBytesReader(ec.Response(), r.Body, maxPostBytes)
		_, want := c.Admin(r)
		got := r.Header.Get("X-CSRF-Token")
		if got == "" {
			got = r.PostFormValue("csrf")
		}
		if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			c.deps.Audit.Event("console_request_refused", "path", r.URL.Path, "reason", "csrf token")
			return c.fail(ec, http.StatusForbidden, "Request refused", "The form was stale or not from this console. Reload the page and try again.")
		}
		return next(ec)
	}
}

// loginData fills login.html.
type loginData struct {
	Error        string
	TokenEnabled bool
}

func (c *Console) handleLoginPage(ec echo.Context) error {
	if _, ok := c.identify(ec.Request()); ok {
		return ec.Redirect(http.StatusSeeOther, Prefix+"/")
	}
	return c.render(ec.Response(), ec.Request(), http.StatusOK, "login.html", loginData{TokenEnabled: c.deps.Credentials.TokenEnabled()})
}

// handleLogin checks the admin token typed into the login form. Failures
// count against the address as for the admin API (shared limiter): once
// over the limit, the form answers 429 until it recovers, whatever was
// typed, so guessing stays slow; the right token below the limit always
// signs in.
func (c *Console) handleLogin(ec echo.Context) error {
	r := ec.Request()
	if err := c.origin.Check(r); err != nil {
		return c.fail(ec, http.StatusForbidden, "Request refused", "This form was sent from another site, so it was not accepted.")
	}
	r.Body = http.MaxBytesReader(ec.Response(), r.Body, 64<<10)
	addr := ec.RealIP()
	if c.deps.Credentials.TokenOK(r.PostFormValue("token")) {
		id := c.sessions.create("token")
		http.SetCookie(ec.Response(), &http.Cookie{
			Name: cookieName, Value: id, Path: Prefix + "/", HttpOnly: true, Secure: r.TLS != nil,
			SameSite: http.SameSiteStrictMode, MaxAge: int(absoluteTimeout.Seconds()),
		})
		c.deps.Audit.Event("console_sign_in", "admin", "token", "remote", addr)
		return ec.Redirect(http.StatusSeeOther, Prefix+"/")
	}
	data := loginData{TokenEnabled: c.deps.Credentials.TokenEnabled(), Error: "That is not the admin token."}
	if !c.deps.Credentials.AllowFailure(addr) {
		ec.Response().Header().Set("Retry-After", "10")
		data.Error = "Too many failed attempts from your address. Wait a little and try again."
		return c.render(ec.Response(), r, http.StatusTooManyRequests, "login.html", data)
	}
	c.deps.Logger.Warn("console: sign-in failed", "remote", addr)
	c.deps.Audit.Event("admin_auth_failed", "remote", addr, "path", r.URL.Path)
	return c.render(ec.Response(), r, http.StatusUnauthorized, "login.html", data)
}

// handleLogout ends the session (a POST with the CSRF token).
func (c *Console) handleLogout(ec echo.Context) error {
	r := ec.Request()
	if ck, err := r.Cookie(cookieName); err == nil {
		c.sessions.end(ck.Value)
	}
	http.SetCookie(ec.Response(), &http.Cookie{Name: cookieName, Value: "", Path: Prefix + "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	c.auditAdmin(r, "console_sign_out")
	return ec.Redirect(http.StatusSeeOther, Prefix+"/login")
}
