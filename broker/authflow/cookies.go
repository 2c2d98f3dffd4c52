package authflow

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"time"
)

// Cookies are the broker's two cookies: the SSO session (a secret,
// HttpOnly, SameSite=Lax) and a per-browser id that binds auth requests to
// the browser that started them.
//
// Cookie names carry a short digest of the issuer, so two brokers on one
// host (different ports share cookies) never overwrite each other's.
type Cookies struct {
	secure bool
	path   string
	// Session and Browser are the cookie names.
	Session, Browser string
}

// NewCookies returns the cookies of the broker at issuer, scoped to path.
func NewCookies(issuer, path string) Cookies {
	sum := sha256.Sum256([]byte(issuer))
	suffix := hex.EncodeToString(sum[:3])
	u, _ := url.Parse(issuer)
	return Cookies{secure: u != nil && u.Scheme == "https", path: path, Session: "fb_session_" + suffix, Browser: "fb_browser_" + suffix}
}

// maxCookie bounds a cookie value the broker reads.
const maxCookie = 128

// Read returns the broker's cookies from r.
func (c Cookies) Read(r *http.Request) Browser {
	var b Browser
	if ck, err := r.Cookie(c.Session); err == nil && len(ck.Value) <= maxCookie {
		b.SessionID = ck.Value
	}
	if ck, err := r.Cookie(c.Browser); err == nil && len(ck.Value) <= maxCookie {
		b.BrowserID = ck.Value
	}
	return b
}

// Write sets and clears the cookies res asks for.
func (c Cookies) Write(w http.ResponseWriter, res Result) {
	if res.BrowserID != "" {
		c.set(w, c.Browser, res.BrowserID, time.Time{})
	}
	switch {
	case res.Session != nil:
		c.set(w, c.Session, res.Session.ID, res.Session.Expiry)
	case res.EndSession:
		http.SetCookie(w, &http.Cookie{Name: c.Session, Value: "", Path: c.path, MaxAge: -1, HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode})
	}
}

func (c Cookies) set(w http.ResponseWriter, name, value string, expiry time.Time) {
	ck := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     c.path,
		HttpOnly: true,
		Secure:   c.secure,
		SameSite: http.SameSiteLaxMode,
	}
	if !expiry.IsZero() {
		ck.Expires = expiry
		ck.MaxAge = int(time.Until(expiry).Seconds())
		if ck.MaxAge <= 0 {
			ck.MaxAge = 1
		}
	}
	if name == c.Browser && c.secure {
		// SAML IdPs answer with a cross-site POST; the binding cookie must
		// ride along. It is no credential on its own.
		ck.SameSite = http.SameSiteNoneMode
	}
	http.SetCookie(w, ck)
}
