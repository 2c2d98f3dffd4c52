package broker

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/oauth"
)

// Browser security: login CSRF with a planted cookie, logout CSRF, cookie
// names and attributes, HSTS and the static file server.

// Request headers a browser sends with a form post.
var (
	crossSite = http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}
	// oldCrossSite is a browser without Fetch Metadata: Origin only.
	oldCrossSite = http.Header{"Origin": {"https://evil.example"}}
)

func (h *harness) sameOrigin() http.Header {
	u := mustURL(h.issuer)
	return http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {u.Scheme + "://" + u.Host}}
}

// send posts form to u with the extra headers hdr and the extra cookies
// (on top of the browser's jar).
func (br *browser) send(u string, form url.Values, hdr http.Header, cookies ...*http.Cookie) response {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		br.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header[k] = v
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return br.do(req)
}

// cookie returns the browser's cookie named name for the issuer.
func (h *harness) cookie(br *browser, name string) *http.Cookie {
	h.t.Helper()
	for _, c := range br.client.Jar.Cookies(mustURL(h.issuer)) {
		if c.Name == name {
			return &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	h.t.Fatalf("browser has no cookie %s", name)
	return nil
}

// setCookie returns the Set-Cookie of r named name, nil when there is none.
func setCookie(r response, name string) *http.Cookie {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// signedIn reports whether br has a live SSO session: prompt=none answers
// with a code.
func (h *harness) signedIn(br *browser) bool {
	h.t.Helper()
	params := authParams(newPKCE())
	params.Set("prompt", "none")
	r := h.authorize(br, params)
	if r.location == nil {
		h.t.Fatalf("prompt=none = %d, want a redirect; body %s", r.status, r.body)
	}
	return r.location.Query().Get("code") != ""
}

// newTLSHarness is newHarness on https, the issuer at issuerPath. Its
// browsers trust the test server's certificate.
func newTLSHarness(t *testing.T, issuerPath string, mutate func(*config.Config)) (*harness, func() *browser) {
	t.Helper()
	clk := newClock()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "https://" + srv.Listener.Addr().String() + issuerPath
	hashes, secretHash := hashOnce()
	yml := fmt.Sprintf(testConfigYAML, issuer, hashes[0], hashes[1], hashes[2], appRedirect, appLogout, secretHash, svcRedirect)
	cfg, err := config.Parse([]byte(yml), func(string) string { return "" })
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	store := newMemoryStore(clk)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	km, err := keys.New(ctx, store, keys.Options{Algorithm: cfg.Signing.Algorithm, MaxTokenLifetime: 5 * time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatalf("keys.New: %v", err)
	}
	audit := &syncBuffer{}
	b, err := New(ctx, cfg, Options{Storage: store, Keys: km, Now: clk.Now, Audit: newJSONLogger(audit)})
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	srv.Config.Handler = b.Handler()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	h := &harness{t: t, srv: srv, b: b, store: store, keys: km, clock: clk, issuer: issuer, audit: audit}
	return h, func() *browser {
		jar, _ := cookiejar.New(nil)
		return &browser{t: t, client: &http.Client{
			Jar:           jar,
			Transport:     srv.Client().Transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
	}
}

// TestPlantedBrowserCookieCannotSignInTheVictim is the login CSRF of the
// attack run: the attacker starts a sign-in in their own browser, plants
// their browser-binding cookie in the victim's browser and makes it post
// the password form (the attacker's credentials) cross-site. The victim
// must not end up with the attacker's SSO session.
func TestPlantedBrowserCookieCannotSignInTheVictim(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	attacker := h.newBrowser()
	params := authParams(newPKCE())
	params.Set("connector_id", "local")
	r := h.authorize(attacker, params)
	page := attacker.get(r.location.String())
	req, csrf := reqField.FindStringSubmatch(page.body), csrfField.FindStringSubmatch(page.body)
	if req == nil || csrf == nil {
		t.Fatalf("login page has no req/csrf: %s", page.body)
	}
	planted := h.cookie(attacker, h.b.flow.Cookies().Browser)
	form := url.Values{"req": {req[1]}, "csrf": {csrf[1]}, "login": {"bob"}, "password": {bobPassword}}

	for name, hdr := range map[string]http.Header{
		"cross-site":                            crossSite,
		"cross-site, browser without Sec-Fetch": oldCrossSite,
		"same site, other origin":               {"Sec-Fetch-Site": {"same-site"}, "Origin": {"http://app.localhost"}},
	} {
		t.Run(name, func(t *testing.T) {
			victim := h.newBrowser()
			res := victim.send(h.issuer+"/login/local", form, hdr, planted)
			wantErrorPage(t, res, http.StatusForbidden, "cross_origin_request")
			if ck := setCookie(res, h.b.flow.Cookies().Session); ck != nil {
				t.Fatalf("cross-origin password post set the session cookie %v", ck)
			}
		})
	}
	// The same form, posted from the broker's own page, signs in.
	ok := attacker.send(h.issuer+"/login/local", form, h.sameOrigin())
	h.codeFrom(ok, params.Get("state"))
}

// TestForgedBrowserIDIsReplaced: a browser-binding id the broker did not
// make (made up, or made by another broker) is replaced by a fresh one, so
// whoever chose the value cannot continue the sign-in.
func TestForgedBrowserIDIsReplaced(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	other := newHarness(t, nil, nil, nil)
	otherBrowser := other.newBrowser()
	other.authorize(otherBrowser, authParams(newPKCE()))
	foreign := other.cookie(otherBrowser, other.b.flow.Cookies().Browser).Value

	name := h.b.flow.Cookies().Browser
	for label, value := range map[string]string{
		"made up":                strings.Repeat("A", 32),
		"made by another broker": foreign,
		"another broker's, bare": strings.SplitN(foreign, ".", 2)[0],
		"tampered":               flipFirst(foreign),
	} {
		t.Run(label, func(t *testing.T) {
			planted := &http.Cookie{Name: name, Value: value}
			victim := h.newBrowser()
			victim.client.Jar.SetCookies(mustURL(h.issuer), []*http.Cookie{planted})
			params := authParams(newPKCE())
			params.Set("connector_id", "local")
			r := h.authorize(victim, params)
			fresh := setCookie(r, name)
			if fresh == nil || fresh.Value == "" || fresh.Value == value {
				t.Fatalf("authorize with a forged browser id set %v, want a fresh id", fresh)
			}
			// Whoever planted the value cannot take over the sign-in...
			attacker := h.newBrowser()
			attacker.client.Jar.SetCookies(mustURL(h.issuer), []*http.Cookie{planted})
			if page := attacker.get(r.location.String()); page.status != http.StatusBadRequest || !strings.Contains(page.body, "another browser") {
				t.Fatalf("login page with the planted id = %d, want the \"started elsewhere\" page", page.status)
			}
			// ...while the victim, with the fresh id, goes on.
			if page := victim.get(r.location.String()); page.status != http.StatusOK || !csrfField.MatchString(page.body) {
				t.Fatalf("login page in the victim's browser = %d, want the password form", page.status)
			}
		})
	}
}

// TestCookiesOnHTTPSIssuer: under an https issuer (here with a path) both
// cookies are __Host- cookies: Secure, Path=/, no Domain. The session
// cookie is SameSite=Lax; the browser-binding cookie SameSite=None (the
// SAML IdP's cross-site POST carries it). A cookie under the old,
// unprefixed name is not read.
func TestCookiesOnHTTPSIssuer(t *testing.T) {
	h, newBrowser := newTLSHarness(t, "/sso", nil)
	names := h.b.flow.Cookies()
	if !strings.HasPrefix(names.Session, "__Host-fb_session_") || !strings.HasPrefix(names.Browser, "__Host-fb_browser_") {
		t.Fatalf("cookie names = %q, %q; want __Host- names", names.Session, names.Browser)
	}
	br := newBrowser()
	params := authParams(newPKCE())
	params.Set("connector_id", "local")
	r := h.authorize(br, params)
	bc := setCookie(r, names.Browser)
	if bc == nil {
		t.Fatalf("authorize set no browser cookie: %v", r.header["Set-Cookie"])
	}
	done := h.passwordLogin(br, r.location, "alice", alicePassword)
	h.codeFrom(done, params.Get("state"))
	sc := setCookie(done, names.Session)
	if sc == nil {
		t.Fatalf("login set no session cookie: %v", done.header["Set-Cookie"])
	}
	for _, tc := range []struct {
		c        *http.Cookie
		sameSite http.SameSite
	}{{bc, http.SameSiteNoneMode}, {sc, http.SameSiteLaxMode}} {
		if !tc.c.Secure || !tc.c.HttpOnly || tc.c.Path != "/" || tc.c.Domain != "" || tc.c.SameSite != tc.sameSite {
			t.Errorf("cookie %s: Secure=%v HttpOnly=%v Path=%q Domain=%q SameSite=%v; want Secure, HttpOnly, Path=/, no Domain, SameSite=%v",
				tc.c.Name, tc.c.Secure, tc.c.HttpOnly, tc.c.Path, tc.c.Domain, tc.c.SameSite, tc.sameSite)
		}
	}
	if !h.signedIn(br) {
		t.Fatal("no SSO after signing in over https")
	}
	// A sibling host can set fb_session_… (no prefix) for this host; the
	// broker must not read it.
	victim := newBrowser()
	victim.client.Jar.SetCookies(mustURL(h.issuer), []*http.Cookie{{Name: strings.TrimPrefix(names.Session, "__Host-"), Value: sc.Value, Path: "/"}})
	if h.signedIn(victim) {
		t.Fatal("a session cookie under the unprefixed name was accepted")
	}
}

// TestCookiesOnHTTPIssuer: on plain http (loopback development) the names
// keep no prefix and the cookies are not Secure; both are SameSite=Lax.
func TestCookiesOnHTTPIssuer(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	names := h.b.flow.Cookies()
	if !strings.HasPrefix(names.Session, "fb_session_") || !strings.HasPrefix(names.Browser, "fb_browser_") {
		t.Fatalf("cookie names = %q, %q", names.Session, names.Browser)
	}
	br := h.newBrowser()
	params := authParams(newPKCE())
	params.Set("connector_id", "local")
	r := h.authorize(br, params)
	done := h.passwordLogin(br, r.location, "alice", alicePassword)
	h.codeFrom(done, params.Get("state"))
	for _, c := range []*http.Cookie{setCookie(r, names.Browser), setCookie(done, names.Session)} {
		if c == nil {
			t.Fatal("a cookie was not set")
		}
		if c.Secure || !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode {
			t.Errorf("cookie %s: Secure=%v HttpOnly=%v Path=%q SameSite=%v; want HttpOnly, Path=/, SameSite=Lax", c.Name, c.Secure, c.HttpOnly, c.Path, c.SameSite)
		}
	}
}

// TestSAMLCallbackCrossSite: the IdP's HTTP-POST binding posts cross-site
// to /callback; that post is not refused as cross-origin.
func TestSAMLCallbackCrossSite(t *testing.T) {
	h, su := samlHarness(t)
	br := h.newBrowser()
	params := authParams(newPKCE())
	post := su.start(t, h, br, params)
	r := br.send(post.action, post.form, http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {su.srv.URL}})
	h.codeFrom(r, params.Get("state"))
}

// flipFirst changes the first character of s.
func flipFirst(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// hiddenFields returns a page's hidden form fields.
func hiddenFields(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(body, -1) {
		v.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return v
}

// TestLogoutWithoutHintAsksFirst is the logout CSRF of the attack run:
// GET /logout without id_token_hint shows a confirmation page; only its
// same-origin POST with the right token ends the session.
func TestLogoutWithoutHintAsksFirst(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	br := h.newBrowser()
	h.login(br, authParams(newPKCE()), "alice", alicePassword)

	page := br.get(h.issuer + "/logout")
	if page.status != http.StatusOK || !strings.Contains(page.body, `method="post"`) || setCookie(page, h.b.flow.Cookies().Session) != nil {
		t.Fatalf("GET /logout = %d, want the confirmation page and no cookie change; body %s", page.status, page.body)
	}
	if !h.signedIn(br) {
		t.Fatal("GET /logout without a hint ended the session")
	}
	token := hiddenFields(page.body).Get("csrf")
	if token == "" {
		t.Fatalf("confirmation page has no csrf field: %s", page.body)
	}
	if r := br.get(h.issuer + "/logout?csrf=" + url.QueryEscape(token)); r.status != http.StatusOK || !h.signedIn(br) {
		t.Fatalf("GET /logout?csrf= = %d; the token only counts in the confirmation POST", r.status)
	}
	wantErrorPage(t, br.send(h.issuer+"/logout", url.Values{"csrf": {token}}, crossSite), http.StatusForbidden, "cross_origin_request")
	if !h.signedIn(br) {
		t.Fatal("a cross-site confirmation POST ended the session")
	}
	if r := br.send(h.issuer+"/logout", url.Values{"csrf": {"forged"}}, h.sameOrigin()); r.status != http.StatusBadRequest || !h.signedIn(br) {
		t.Fatalf("confirmation with a forged token = %d, want 400 and the session kept", r.status)
	}
	// Another browser's token does not end this one's session.
	other := h.newBrowser()
	h.login(other, authParams(newPKCE()), "bob", bobPassword)
	otherToken := hiddenFields(other.get(h.issuer + "/logout").body).Get("csrf")
	if r := br.send(h.issuer+"/logout", url.Values{"csrf": {otherToken}}, h.sameOrigin()); r.status != http.StatusBadRequest || !h.signedIn(br) {
		t.Fatalf("confirmation with another browser's token = %d, want 400 and the session kept", r.status)
	}

	out := br.send(h.issuer+"/logout", url.Values{"csrf": {token}}, h.sameOrigin())
	if out.status != http.StatusOK || !strings.Contains(out.body, "Signed out") {
		t.Fatalf("confirmed logout = %d; body %s", out.status, out.body)
	}
	if c := setCookie(out, h.b.flow.Cookies().Session); c == nil || c.MaxAge >= 0 {
		t.Fatalf("confirmed logout did not clear the session cookie: %v", out.header["Set-Cookie"])
	}
	if h.signedIn(br) {
		t.Fatal("session alive after the confirmed logout")
	}
	if !h.signedIn(other) {
		t.Fatal("logout ended another browser's session")
	}
}

// TestLogoutCannotClearACookieItWasNotSent: a cross-site POST /logout
// arrives without the SameSite=Lax session cookie; the answer must not
// clear it (a Set-Cookie on a top-level navigation would).
func TestLogoutCannotClearACookieItWasNotSent(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	for name, r := range map[string]response{
		"GET":             h.newBrowser().get(h.issuer + "/logout"),
		"cross-site POST": h.newBrowser().send(h.issuer+"/logout", url.Values{}, crossSite),
	} {
		if c := setCookie(r, h.b.flow.Cookies().Session); c != nil {
			t.Errorf("%s /logout without a session cookie sets %v", name, c)
		}
	}
}

// TestLogoutHintMustBeThisSessions: an ID token of another session (the
// attacker's own) does not end the victim's session without confirmation.
func TestLogoutHintMustBeThisSessions(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	victim := h.newBrowser()
	h.login(victim, authParams(newPKCE()), "alice", alicePassword)
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "bob", bobPassword)
	tr := h.redeem(code, p)
	if tr.IDToken == "" {
		t.Fatalf("redeem: %s", tr.Error)
	}
	for _, q := range []url.Values{
		{"id_token_hint": {tr.IDToken}},
		{"id_token_hint": {tr.IDToken}, "post_logout_redirect_uri": {appLogout}, "state": {"x"}},
	} {
		r := victim.get(h.issuer + "/logout?" + q.Encode())
		if r.status != http.StatusOK || r.location != nil || !strings.Contains(r.body, `name="csrf"`) {
			t.Fatalf("logout with another session's hint = %d %v, want the confirmation page", r.status, r.location)
		}
		if !h.signedIn(victim) {
			t.Fatal("another session's ID token ended the victim's session")
		}
	}
}

// TestRPLogoutWithHint: the RP's own ID token ends the session at once and
// returns to post_logout_redirect_uri, by GET or by a cross-site POST. A
// real browser does not send the SameSite=Lax session cookie with a
// cross-site POST; the broker then answers with a page that posts the same
// fields again from its own origin, where the cookie rides along.
func TestRPLogoutWithHint(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	signIn := func() (*browser, string) {
		br := h.newBrowser()
		p := newPKCE()
		params := authParams(p)
		code, _ := h.login(br, params, "alice", alicePassword)
		tr := h.redeem(code, p)
		if tr.IDToken == "" {
			t.Fatalf("redeem: %s", tr.Error)
		}
		return br, tr.IDToken
	}
	wantBack := func(r response) {
		t.Helper()
		if r.location == nil || !strings.HasPrefix(r.location.String(), appLogout+"?") || r.location.Query().Get("state") != "bye" {
			t.Fatalf("logout = %d %v, want a redirect to %s with state; body %s", r.status, r.location, appLogout, r.body)
		}
	}

	br, idt := signIn()
	q := url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {appLogout}, "state": {"bye"}}
	wantBack(br.get(h.issuer + "/logout?" + q.Encode()))
	if h.signedIn(br) {
		t.Fatal("session alive after logout with the RP's hint")
	}

	br, idt = signIn()
	q.Set("id_token_hint", idt)
	// The cross-site POST, as a browser sends it: without the Lax cookie.
	withoutCookie := h.newBrowser()
	relay := withoutCookie.send(h.issuer+"/logout", q, crossSite)
	if relay.status != http.StatusOK || relay.location != nil || setCookie(relay, h.b.flow.Cookies().Session) != nil {
		t.Fatalf("cross-site POST /logout without the cookie = %d %v, want the relay page and no cookie change", relay.status, relay.location)
	}
	fields := hiddenFields(relay.body)
	if fields.Get("id_token_hint") != idt || fields.Get("post_logout_redirect_uri") != appLogout || fields.Get("state") != "bye" {
		t.Fatalf("relay page fields = %v", fields)
	}
	if !h.signedIn(br) {
		t.Fatal("the relay page ended the session by itself")
	}
	wantBack(br.send(h.issuer+"/logout", fields, h.sameOrigin()))
	if h.signedIn(br) {
		t.Fatal("session alive after the relayed logout")
	}

	// A same-site RP's POST carries the cookie: at once.
	br, idt = signIn()
	q.Set("id_token_hint", idt)
	wantBack(br.send(h.issuer+"/logout", q, http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"http://app.localhost"}}))
	if h.signedIn(br) {
		t.Fatal("session alive after the RP's POST logout")
	}
}

// TestHSTS: https issuers send Strict-Transport-Security, one year unless
// http.hsts_max_age says otherwise; 0s turns it off; http issuers never
// send it.
func TestHSTS(t *testing.T) {
	hour, off := time.Hour, time.Duration(0)
	for _, tc := range []struct {
		name   string
		maxAge *time.Duration
		want   string
	}{
		{"default", nil, "max-age=31536000"},
		{"configured", &hour, "max-age=3600"},
		{"off", &off, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, newBrowser := newTLSHarness(t, "", func(c *config.Config) { c.HTTP.HSTSMaxAge = tc.maxAge })
			br := newBrowser()
			for _, path := range []string{"/.well-known/openid-configuration", "/login", "/static/style.css"} {
				r := br.get(h.issuer + path)
				if got := r.header.Get("Strict-Transport-Security"); got != tc.want {
					t.Errorf("GET %s: Strict-Transport-Security = %q, want %q", path, got, tc.want)
				}
			}
		})
	}
	h := newHarness(t, nil, nil, nil)
	if got := h.newBrowser().get(h.issuer + "/login").header.Get("Strict-Transport-Security"); got != "" {
		t.Errorf("http issuer sends Strict-Transport-Security %q", got)
	}
}

// TestStaticHasNoDirectoryListing: /static/ serves its files, never a
// directory listing.
func TestStaticHasNoDirectoryListing(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	br := h.newBrowser()
	for _, path := range []string{"/static/", "/static/nope/"} {
		if r := br.get(h.issuer + path); r.status != http.StatusNotFound || strings.Contains(r.body, "style.css") {
			t.Errorf("GET %s = %d, want 404 without a listing; body %s", path, r.status, r.body)
		}
	}
	for _, path := range []string{"/static/style.css", "/static/autopost.js"} {
		if r := br.get(h.issuer + path); r.status != http.StatusOK || r.body == "" {
			t.Errorf("GET %s = %d, want the file", path, r.status)
		}
	}
}

// TestSecurityHeadersPerResponse: the security headers are the same on
// every response, whatever a handler did to them on another one (adding a
// value, replacing one), also under concurrent requests (-race).
func TestSecurityHeadersPerResponse(t *testing.T) {
	e := echo.New()
	e.Use(securityHeaders("max-age=60"))
	e.GET("/add", func(c echo.Context) error {
		h := c.Response().Header()
		h.Add("X-Frame-Options", "SAMEORIGIN")
		h.Add("Content-Security-Policy", "frame-src https://app.example")
		h.Set("Referrer-Policy", "no-referrer")
		return c.NoContent(http.StatusNoContent)
	})
	e.GET("/plain", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	want := map[string][]string{
		"Content-Security-Policy":   {oauth.PageCSP()},
		"X-Frame-Options":           {"DENY"},
		"Referrer-Policy":           {"same-origin"},
		"X-Content-Type-Options":    {"nosniff"},
		"Strict-Transport-Security": {"max-age=60"},
	}
	// Two responses that each add their own value keep their own.
	e.GET("/add/:v", func(c echo.Context) error {
		c.Response().Header().Add("X-Frame-Options", c.Param("v"))
		return c.NoContent(http.StatusNoContent)
	})
	first, second := httptest.NewRecorder(), httptest.NewRecorder()
	e.ServeHTTP(first, httptest.NewRequest(http.MethodGet, "/add/a", nil))
	e.ServeHTTP(second, httptest.NewRequest(http.MethodGet, "/add/b", nil))
	if got := first.Header()["X-Frame-Options"]; !slices.Equal(got, []string{"DENY", "a"}) {
		t.Errorf("first response's X-Frame-Options = %q, want [DENY a]", got)
	}
	if got := second.Header()["X-Frame-Options"]; !slices.Equal(got, []string{"DENY", "b"}) {
		t.Errorf("second response's X-Frame-Options = %q, want [DENY b]", got)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := "/plain"
			if i%2 == 0 {
				path = "/add"
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if path == "/add" {
				return
			}
			for k, v := range want {
				if got := rec.Header()[k]; !slices.Equal(got, v) {
					t.Errorf("GET /plain: %s = %q, want %q", k, got, v)
				}
			}
		}()
	}
	wg.Wait()
}
