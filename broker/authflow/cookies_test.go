package authflow_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/authflow"
	"github.com/fedbroker/fedbroker/broker/storage"
)

var browserKey = bytes.Repeat([]byte{7}, 32)

// written returns the cookies Write sets for res.
func written(c authflow.Cookies, res authflow.Result) map[string]*http.Cookie {
	rec := httptest.NewRecorder()
	c.Write(rec, res)
	out := make(map[string]*http.Cookie)
	for _, ck := range rec.Result().Cookies() {
		out[ck.Name] = ck
	}
	return out
}

// sent is a request carrying cookies.
func sent(cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, c := range cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	return r
}

// TestCookieNamesAndAttributes: https issuers use __Host- cookies (Secure,
// Path=/, no Domain) whatever the issuer's path, the name's issuer digest
// keeping brokers apart; plain http keeps the unprefixed names scoped to
// the issuer's path.
func TestCookieNamesAndAttributes(t *testing.T) {
	for _, tc := range []struct {
		issuer, path string
		prefix       string
		secure       bool
		cookiePath   string
		browserSite  http.SameSite
	}{
		{"https://sso.example.com", "/", "__Host-", true, "/", http.SameSiteNoneMode},
		{"https://sso.example.com/sso", "/sso/", "__Host-", true, "/", http.SameSiteNoneMode},
		{"http://127.0.0.1:5556", "/", "", false, "/", http.SameSiteLaxMode},
		{"http://localhost:5556/sso", "/sso/", "", false, "/sso/", http.SameSiteLaxMode},
	} {
		t.Run(tc.issuer, func(t *testing.T) {
			c := authflow.NewCookies(tc.issuer, tc.path, browserKey)
			if !strings.HasPrefix(c.Session, tc.prefix+"fb_session_") || !strings.HasPrefix(c.Browser, tc.prefix+"fb_browser_") {
				t.Fatalf("names = %q, %q; want prefix %q", c.Session, c.Browser, tc.prefix)
			}
			got := written(c, authflow.Result{BrowserID: strings.Repeat("b", 32), Session: &storage.Session{ID: "s", Expiry: time.Now().Add(time.Hour)}})
			for name, sameSite := range map[string]http.SameSite{c.Session: http.SameSiteLaxMode, c.Browser: tc.browserSite} {
				ck := got[name]
				if ck == nil {
					t.Fatalf("cookie %s not set", name)
				}
				if ck.Secure != tc.secure || !ck.HttpOnly || ck.Path != tc.cookiePath || ck.Domain != "" || ck.SameSite != sameSite {
					t.Errorf("%s: Secure=%v HttpOnly=%v Path=%q Domain=%q SameSite=%v; want Secure=%v, HttpOnly, Path=%q, no Domain, SameSite=%v",
						name, ck.Secure, ck.HttpOnly, ck.Path, ck.Domain, ck.SameSite, tc.secure, tc.cookiePath, sameSite)
				}
			}
			if ck := got[c.Session]; ck.MaxAge <= 0 {
				t.Errorf("session cookie MaxAge = %d, want the session's lifetime", ck.MaxAge)
			}
			cleared := written(c, authflow.Result{EndSession: true})[c.Session]
			if cleared == nil || cleared.MaxAge >= 0 || cleared.Path != tc.cookiePath || cleared.Secure != tc.secure {
				t.Errorf("EndSession cookie = %v; want the same name and path, expired", cleared)
			}
		})
	}
	a, b := authflow.NewCookies("https://a.example.com", "/", browserKey), authflow.NewCookies("https://b.example.com", "/", browserKey)
	if a.Session == b.Session || a.Browser == b.Browser {
		t.Error("two issuers share cookie names")
	}
}

// TestBrowserIDMustBeSigned: Read returns only a browser id that Write
// set with the same key for the same issuer; anything else reads as no id,
// so the flow makes a fresh one.
func TestBrowserIDMustBeSigned(t *testing.T) {
	const issuer = "https://sso.example.com"
	c := authflow.NewCookies(issuer, "/", browserKey)
	id := strings.Repeat("x", 32)
	ck := written(c, authflow.Result{BrowserID: id})[c.Browser]
	if ck == nil || ck.Value == id || !strings.HasPrefix(ck.Value, id) {
		t.Fatalf("browser cookie = %v; want the id with its MAC", ck)
	}
	if got := c.Read(sent(ck)).BrowserID; got != id {
		t.Fatalf("Read(signed id) = %q, want %q", got, id)
	}
	if got := c.Read(sent(&http.Cookie{Name: c.Session, Value: "sess"})).SessionID; got != "sess" {
		t.Errorf("Read(session) = %q", got)
	}

	otherKey := written(authflow.NewCookies(issuer, "/", bytes.Repeat([]byte{8}, 32)), authflow.Result{BrowserID: id})[c.Browser]
	otherIssuer := written(authflow.NewCookies("https://other.example.com", "/", browserKey), authflow.Result{BrowserID: id})
	var otherIssuerValue string
	for _, v := range otherIssuer {
		otherIssuerValue = v.Value
	}
	mac := strings.TrimPrefix(ck.Value, id)
	for name, value := range map[string]string{
		"bare id (any 32 characters)": id,
		"bad MAC":                     id + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"empty MAC":                   id + ".",
		"another id, this MAC":        strings.Repeat("y", 32) + mac,
		"another key":                 otherKey.Value,
		"another issuer":              otherIssuerValue,
		"MAC only":                    mac,
		"too long":                    strings.Repeat("x", 200) + mac,
	} {
		if got := c.Read(sent(&http.Cookie{Name: c.Browser, Value: value})).BrowserID; got != "" {
			t.Errorf("Read(%s) = %q, want no id", name, got)
		}
	}
	// The unprefixed name, which a sibling host can set, is never read.
	plain := &http.Cookie{Name: strings.TrimPrefix(c.Browser, "__Host-"), Value: ck.Value}
	if got := c.Read(sent(plain)).BrowserID; got != "" {
		t.Errorf("Read(unprefixed cookie) = %q, want no id", got)
	}
}
