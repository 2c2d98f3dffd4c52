package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// cookieName is the console's session cookie: a random id, scoped to the
// console's path.
const cookieName = "fedbroker_console"

// Session lifetimes: a session ends after idleTimeout without a request,
// and at the latest absoluteTimeout after sign-in. Its last use is written
// to storage at most once every touchEvery, so it may end up to that much
// before idleTimeout.
const (
	idleTimeout     = 30 * time.Minute
	absoluteTimeout = 12 * time.Hour
	touchEvery      = time.Minute
)

// session is one signed-in browser.
type session struct {
	admin string
	csrf  string
}

// sessions are the console's sign-ins, kept in storage as AuthRequest
// records (storage.ConsoleSession) under the hash of the cookie's id, so
// that every replica behind a load balancer knows them, and a sign-out on
// one ends them on all.
type sessions struct {
	store storage.Storage
	now   func() time.Time
}

func newSessions(store storage.Storage, now func() time.Time) *sessions {
	return &sessions{store: store, now: now}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on supported platforms (Go 1.24+)
	return b
}

func randomToken() string { return base64.RawURLEncoding.EncodeToString(randomBytes(32)) }

// create starts a session for admin and returns its cookie id.
func (s *sessions) create(ctx context.Context, admin string) (string, error) {
	id := randomToken()
	now := s.now()
	err := s.store.CreateAuthRequest(ctx, storage.AuthRequest{
		ID:      storage.ConsoleSessionID(id),
		Expiry:  now.Add(absoluteTimeout),
		Console: &storage.ConsoleSession{Admin: admin, CSRF: randomToken(), Created: now, LastSeen: now},
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// get returns the live session of id and marks it used; false when there
// is none.
func (s *sessions) get(ctx context.Context, id string) (session, bool, error) {
	if id == "" {
		return session{}, false, nil
	}
	now := s.now()
	r, err := s.store.GetAuthRequest(ctx, storage.ConsoleSessionID(id))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return session{}, false, nil
	case err != nil:
		return session{}, false, err
	}
	se := r.Console
	if se == nil || se.Admin == "" {
		return session{}, false, nil
	}
	if now.Sub(se.LastSeen) > idleTimeout || now.Sub(se.Created) > absoluteTimeout {
		s.end(ctx, id)
		return session{}, false, nil
	}
	if now.Sub(se.LastSeen) >= touchEvery {
		se.LastSeen = now
		if err := s.store.UpdateAuthRequest(ctx, r); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return session{}, false, err
		}
	}
	return session{admin: se.Admin, csrf: se.CSRF}, true, nil
}

// end ends the session of id.
func (s *sessions) end(ctx context.Context, id string) {
	_, _ = s.store.TakeAuthRequest(ctx, storage.ConsoleSessionID(id))
}

// certCSRF is the CSRF token of a client-certificate sign-in, which has
// no cookie session: a MAC of the certificate (its raw bytes) under a key
// kept in storage, so that every replica computes the same token. The key
// is made by the first replica that needs one and replaced when it
// expires (after absoluteTimeout): a form loaded before then is refused
// as stale once.
func (s *sessions) certCSRF(ctx context.Context, raw []byte) (string, error) {
	key, err := s.certKey(ctx)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, []byte(key))
	m.Write(raw)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

func (s *sessions) certKey(ctx context.Context) (string, error) {
	for range 3 {
		r, err := s.store.GetAuthRequest(ctx, storage.ConsoleCertCSRFKeyID)
		if err == nil && r.Console != nil && r.Console.CSRF != "" {
			return r.Console.CSRF, nil
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
		now := s.now()
		err = s.store.CreateAuthRequest(ctx, storage.AuthRequest{
			ID: storage.ConsoleCertCSRFKeyID, Expiry: now.Add(absoluteTimeout),
			Console: &storage.ConsoleSession{CSRF: randomToken(), Created: now, LastSeen: now},
		})
		if err != nil && !errors.Is(err, storage.ErrAlreadyExists) {
			return "", err
		}
		// Made here or by another replica meanwhile: read it back.
	}
	return "", errors.New("console: the certificate CSRF key could not be stored")
}

// identify returns who is signed in on r: a verified client certificate,
// or the session of the cookie.
// An error is storage's.
func (c *Console) identify(r *http.Request) (identity, bool, error) {
	if c.deps.Credentials != nil {
		if cn, ok := c.deps.Credentials.ClientCert(r); ok {
			if cn == "" {
				cn = "certificate"
			}
			csrf, err := c.sessions.certCSRF(r.Context(), r.TLS.VerifiedChains[0][0].Raw)
			if err != nil {
				return identity{}, false, err
			}
			return identity{name: cn, csrf: csrf}, true, nil
		}
	}
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return identity{}, false, nil
	}
	se, ok, err := c.sessions.get(r.Context(), ck.Value)
	if !ok || err != nil {
		return identity{}, false, err
	}
	return identity{name: se.admin, csrf: se.csrf}, true, nil
}

// storageDown is the page of a console request storage could not answer.
func (c *Console) storageDown(ec echo.Context, err error) error {
	c.deps.Logger.Error("console: storage", "error", err)
	return c.fail(ec, http.StatusServiceUnavailable, "Storage unavailable", "The broker's storage did not answer, so your console session could not be checked. Try again in a moment.")
}

// requireAdmin lets signed-in requests through, with their identity in
// the request's context, and sends the others to the login page (403 for
// a POST: a form posted after the session ended is not replayed).
func (c *Console) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		r := ec.Request()
		id, ok, err := c.identify(r)
		if err != nil {
			return c.storageDown(ec, err)
		}
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
	if _, ok, err := c.identify(ec.Request()); err != nil {
		return c.storageDown(ec, err)
	} else if ok {
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
		id, err := c.sessions.create(r.Context(), "token")
		if err != nil {
			return c.storageDown(ec, err)
		}
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
		c.sessions.end(r.Context(), ck.Value)
	}
	http.SetCookie(ec.Response(), &http.Cookie{Name: cookieName, Value: "", Path: Prefix + "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	c.auditAdmin(r, "console_sign_out")
	return ec.Redirect(http.StatusSeeOther, Prefix+"/login")
}
