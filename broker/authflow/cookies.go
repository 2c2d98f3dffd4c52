package authflow

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/oauth"
)

// Cookies are the broker's two cookies: the SSO session (a secret,
// HttpOnly, SameSite=Lax) and a per-browser id that binds auth requests to
// the browser that started them.
//
// Cookie names carry a short digest of the issuer, so two brokers on one
// host (different ports share cookies) never overwrite each other's.
//
// Under an https issuer both are __Host- cookies: Secure, Path=/ and no
// Domain, which the browser enforces, so neither a sibling (sub)domain nor
// a plain-http response can plant or overwrite them. __Host- forces
// Path=/ even when the issuer has a path; the issuer digest in the name
// keeps them apart. Plain http (loopback development) keeps the
// unprefixed names, scoped to the issuer's path.
//
// The browser id is made by the broker: its cookie carries an HMAC of the
// id (under a key derived from the key-encryption key), and Read drops an
// id without a valid one, so the flow replaces it with a fresh id.
type Cookies struct {
	secure bool
	path   string
	// key signs browser ids; nil leaves them unsigned.
	key    []byte
	issuer string
	// Session and Browser are the cookie names.
	Session, Browser string
}

// NewCookies returns the cookies of the broker at issuer, scoped to path
// on plain http. browserKey signs the browser ids (HMAC-SHA256); nil
// leaves them unsigned.
func NewCookies(issuer, path string, browserKey []byte) Cookies {
	sum := sha256.Sum256([]byte(issuer))
	suffix := hex.EncodeToString(sum[:3])
	u, _ := url.Parse(issuer)
	c := Cookies{secure: u != nil && u.Scheme == "https", path: path, key: browserKey, issuer: issuer}
	c.Session, c.Browser = "fb_session_"+suffix, "fb_browser_"+suffix
	if c.secure {
		c.path = "/"
		c.Session, c.Browser = "__Host-"+c.Session, "__Host-"+c.Browser
	}
	return c
}

// maxCookie bounds a cookie value the broker reads.
const maxCookie = 128

// Read returns the broker's cookies from r. A browser id the broker did
// not sign reads as none.
func (c Cookies) Read(r *http.Request) Browser {
	var b Browser
	if ck, err := r.Cookie(c.Session); err == nil && len(ck.Value) <= maxCookie {
		b.SessionID = ck.Value
	}
	if ck, err := r.Cookie(c.Browser); err == nil && len(ck.Value) <= maxCookie {
		b.BrowserID = c.verify(ck.Value)
	}
	return b
}

// Write sets and clears the cookies res asks for.
func (c Cookies) Write(w http.ResponseWriter, res Result) {
	if res.BrowserID != "" {
		c.set(w, c.Browser, c.sign(res.BrowserID), time.Time{})
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
		// SameSite=None, and only for this cookie: a SAML IdP answers with
		// a cross-site POST to /callback (HTTP-POST binding), and the
		// binding cookie must ride along for the callback to find its auth
		// request. Re-posting such callbacks from our own origin would let
		// it be Lax, at the price of an extra page in every SAML sign-in;
		// None is safe enough here because the cookie is no credential on
		// its own (it only names the browser a login was started in), it
		// cannot be planted (__Host-, HMAC-signed), and the forms it
		// protects refuse cross-origin posts (SameOrigin). Plain http
		// cannot use None (it requires Secure) and stays Lax.
		ck.SameSite = http.SameSiteNoneMode
	}
	http.SetCookie(w, ck)
}

// browserIDContext separates the browser-id MAC from any other use of the
// key.
const browserIDContext = "fedbroker browser id v1\x00"

func (c Cookies) mac(id string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(browserIDContext + c.issuer + "\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sign is the cookie value of browser id id: id.MAC.
func (c Cookies) sign(id string) string {
	if c.key == nil {
		return id
	}
	return id + "." + c.mac(id)
}

// verify returns the browser id in cookie value v, "" unless the broker
// signed it.
func (c Cookies) verify(v string) string {
	if c.key == nil {
		return v
	}
	id, mac, ok := strings.Cut(v, ".")
	if !ok || id == "" || !hmac.Equal([]byte(mac), []byte(c.mac(id))) {
		return ""
	}
	return id
}

// errCrossOrigin answers a state-changing browser POST that came from
// another origin.
var errCrossOrigin = &oauth.PageError{Status: http.StatusForbidden, Heading: "Request refused", Message: "This form was sent from another site, so it was not accepted. Go back to the application and start again.", Code: "cross_origin_request"}

// newOriginCheck is the cross-origin protection of the broker's own forms:
// net/http.CrossOriginProtection (Sec-Fetch-Site, or Origin against Host
// for browsers without it). The issuer's own origin is trusted as well,
// for a proxy that rewrites Host.
func newOriginCheck(issuer string) *http.CrossOriginProtection {
	cop := http.NewCrossOriginProtection()
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		_ = cop.AddTrustedOrigin(u.Scheme + "://" + u.Host)
	}
	return cop
}

// SameOrigin refuses a cross-origin POST with a 403 page. It guards the
// broker's own forms that change state: the password form (POST
// /login/{connector}); HandleLogout checks the logout confirmation itself.
// Not for /authorize (RPs may post there), /callback (SAML IdPs post
// cross-site; the signed assertion is the protection) or the machine
// endpoints.
func (f *Flow) SameOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := f.origin.Check(c.Request()); err != nil {
			f.audit.Event("request_refused", "path", c.Path(), "reason", "cross-origin post")
			return errCrossOrigin
		}
		return next(c)
	}
}
