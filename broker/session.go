package broker

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// sessionCookies writes the broker's two cookies: the SSO session (a secret,
// HttpOnly, SameSite=Lax) and a per-browser id that binds auth requests to
// the browser that started them.
//
// Cookie names carry a short digest of the issuer, so two brokers on one
// host (different ports share cookies) never overwrite each other's.
type sessionCookies struct {
	secure  bool
	path    string
	session string // SSO session cookie name
	browser string // browser binding cookie name
}

func newSessionCookies(issuer, path string, secure bool) sessionCookies {
	sum := sha256.Sum256([]byte(issuer))
	suffix := hex.EncodeToString(sum[:3])
	return sessionCookies{secure: secure, path: path, session: "fb_session_" + suffix, browser: "fb_browser_" + suffix}
}

func (sc sessionCookies) set(c echo.Context, name, value string, expiry time.Time) {
	ck := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     sc.path,
		HttpOnly: true,
		Secure:   sc.secure,
		SameSite: http.SameSiteLaxMode,
	}
	if !expiry.IsZero() {
		ck.Expires = expiry
		ck.MaxAge = int(time.Until(expiry).Seconds())
		if ck.MaxAge <= 0 {
			ck.MaxAge = 1
		}
	}
	if name == sc.browser && sc.secure {
		// SAML IdPs answer with a cross-site POST; the binding cookie must
		// ride along. It is no credential on its own.
		ck.SameSite = http.SameSiteNoneMode
	}
	c.SetCookie(ck)
}

func (sc sessionCookies) clear(c echo.Context, name string) {
	c.SetCookie(&http.Cookie{Name: name, Value: "", Path: sc.path, MaxAge: -1, HttpOnly: true, Secure: sc.secure, SameSite: http.SameSiteLaxMode})
}

// browserID returns this browser's binding id, setting the cookie when the
// browser has none.
func (sc sessionCookies) browserID(c echo.Context) string {
	if ck, err := c.Cookie(sc.browser); err == nil && len(ck.Value) >= 32 && len(ck.Value) <= 64 {
		return ck.Value
	}
	id := randomToken(24)
	sc.set(c, sc.browser, id, time.Time{})
	// Make the new value visible to the rest of this request.
	c.Request().AddCookie(&http.Cookie{Name: sc.browser, Value: id})
	return id
}

// boundToBrowser reports whether the auth request was started by this
// browser.
func (sc sessionCookies) boundToBrowser(c echo.Context, req storage.AuthRequest) bool {
	ck, err := c.Cookie(sc.browser)
	if err != nil || ck.Value == "" || req.BrowserBinding == "" {
		return false
	}
	return constantTimeEqual(storage.Hash(ck.Value), req.BrowserBinding)
}

// currentSession returns the live SSO session of this browser, if any. A
// storage failure is an error, never "no session".
func (s *Server) currentSession(c echo.Context) (storage.Session, bool, error) {
	ck, err := c.Cookie(s.sessions.session)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return storage.Session{}, false, nil
	}
	sess, err := s.store.GetSession(c.Request().Context(), ck.Value)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Session{}, false, nil
	}
	if err != nil {
		return storage.Session{}, false, err
	}
	if !sess.Expiry.After(s.now()) {
		return storage.Session{}, false, nil
	}
	return sess, true, nil
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never fails on supported platforms (Go 1.24+).
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func secondsDur(n int) time.Duration { return time.Duration(n) * time.Second }
