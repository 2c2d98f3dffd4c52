package broker

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
)

// TestIssuerRootPage: the issuer URL itself is a page saying what the
// service is, with its discovery and JWKS URLs, with and without the
// trailing slash, at the root or below a path.
func TestIssuerRootPage(t *testing.T) {
	for _, path := range []string{"", "/sso"} {
		t.Run("issuer path "+path, func(t *testing.T) {
			h := newHarness(t, nil, nil, func(c *config.Config) { c.Issuer += path })
			issuer := h.issuer + path
			br := h.newBrowser()
			for _, u := range []string{issuer, issuer + "/"} {
				r := br.get(u)
				if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
					t.Fatalf("GET %s = %d %s, want 200 HTML; body %s", u, r.status, r.header.Get("Content-Type"), r.body)
				}
				host := strings.TrimPrefix(issuer, "http://")
				for _, want := range []string{
					"sign-in service", host,
					`href="` + issuer + `/.well-known/openid-configuration"`,
					issuer + "/keys",
					`href="` + path + `/static/style.css"`,
				} {
					if !strings.Contains(r.body, want) {
						t.Errorf("GET %s lacks %q:\n%s", u, want, r.body)
					}
				}
				if strings.Contains(r.body, "dmin") {
					t.Errorf("GET %s mentions an admin API that is off:\n%s", u, r.body)
				}
				if r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("Cache-Control") != "no-store" {
					t.Errorf("GET %s headers = %v; want the pages' usual headers", u, r.header)
				}
			}
			// The links on it work.
			if r := br.get(issuer + "/.well-known/openid-configuration"); r.status != http.StatusOK || !strings.Contains(r.body, `"issuer":"`+issuer+`"`) {
				t.Errorf("discovery = %d %s", r.status, r.body)
			}
			// Below the issuer path, nothing else became a page.
			if path != "" {
				if r := br.get(h.issuer + "/"); r.status != http.StatusNotFound {
					t.Errorf("GET / outside the issuer path = %d, want 404", r.status)
				}
			}
		})
	}
}

// TestIssuerRootPageNamesTheAdminListener: with the admin API on, the page
// tells an admin where it listens, never its token; an admin listener off
// the loopback is not published.
func TestIssuerRootPageNamesTheAdminListener(t *testing.T) {
	token := "admin-token-" + strings.Repeat("x", 20)
	for _, tc := range []struct {
		name       string
		admin      config.Admin
		want, not  []string
		mentionsIt bool
	}{
		{"default address", config.Admin{Token: token}, []string{"http://127.0.0.1:5557"}, []string{token}, true},
		{"loopback address with TLS", config.Admin{Addr: "127.0.0.1:9443", Token: token, TLS: &config.AdminTLS{CertFile: "c", KeyFile: "k"}}, []string{"https://127.0.0.1:9443"}, []string{token}, true},
		{"remote address", config.Admin{Addr: "10.1.2.3:5557", Token: token}, []string{"admin.addr"}, []string{token, "10.1.2.3"}, true},
		{"address without a token: off", config.Admin{Addr: "127.0.0.1:5557"}, nil, []string{"5557"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, nil, func(c *config.Config) { c.Admin = tc.admin })
			r := h.newBrowser().get(h.issuer + "/")
			if r.status != http.StatusOK {
				t.Fatalf("GET / = %d", r.status)
			}
			if got := strings.Contains(r.body, "dmin"); got != tc.mentionsIt {
				t.Errorf("page mentions the admin API: %v, want %v:\n%s", got, tc.mentionsIt, r.body)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.body, w) {
					t.Errorf("page lacks %q:\n%s", w, r.body)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(r.body, w) {
					t.Errorf("page shows %q:\n%s", w, r.body)
				}
			}
		})
	}
}

var cancelHref = regexp.MustCompile(`href="([^"]*/cancel\?[^"]*)"`)

// cancelURL is the cancel link of a page, resolved against the issuer.
func (h *harness) cancelURL(page response) string {
	h.t.Helper()
	m := cancelHref.FindStringSubmatch(page.body)
	if m == nil {
		h.t.Fatalf("page has no cancel link:\n%s", page.body)
	}
	u, err := url.Parse(h.issuer + "/")
	if err != nil {
		h.t.Fatal(err)
	}
	ref, err := u.Parse(html.UnescapeString(m[1]))
	if err != nil {
		h.t.Fatal(err)
	}
	return ref.String()
}

// wantCancelled checks that r sends the browser back to the app with
// access_denied, the app's state and the issuer.
func (h *harness) wantCancelled(r response, state string) {
	h.t.Helper()
	if r.status != http.StatusFound || r.location == nil {
		h.t.Fatalf("cancel = %d, want 302 to the app; body %s", r.status, r.body)
	}
	q := r.location.Query()
	if got := r.location.Scheme + "://" + r.location.Host + r.location.Path; got != appRedirect ||
		q.Get("error") != "access_denied" || q.Get("error_description") == "" || q.Get("state") != state || q.Get("iss") != h.issuer || q.Get("code") != "" {
		h.t.Fatalf("cancel went to %s; want %s with error=access_denied, a description, state=%s and iss", r.location, appRedirect, state)
	}
	if !strings.Contains(h.audit.String(), `"msg":"login_cancelled"`) {
		h.t.Errorf("audit has no login_cancelled: %s", h.audit.String())
	}
}

// TestCancelFromTheChooser: the chooser's Cancel link takes the person
// back to the app with access_denied; the sign-in is gone after it.
func TestCancelFromTheChooser(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	br := h.newBrowser()
	params := authParams(newPKCE())
	r := h.authorize(br, params)
	if r.status != http.StatusFound || r.location.Path != "/login" {
		t.Fatalf("authorize = %d %v, want the chooser", r.status, r.location)
	}
	chooser := br.get(r.location.String())
	cancel := h.cancelURL(chooser)
	if !strings.HasPrefix(cancel, h.issuer+"/cancel?") {
		t.Fatalf("cancel link %s; want %s/cancel?…", cancel, h.issuer)
	}
	// Another browser cannot use it.
	if other := h.newBrowser().get(cancel); other.status != http.StatusBadRequest || other.location != nil {
		t.Fatalf("cancel from another browser = %d %v, want a 400 page", other.status, other.location)
	}
	h.wantCancelled(br.get(cancel), params.Get("state"))
	if again := br.get(r.location.String()); again.status != http.StatusBadRequest || !strings.Contains(again.body, "expired") {
		t.Fatalf("chooser after cancel = %d, want the expired page; body %s", again.status, again.body)
	}
}

// TestPasswordFormNamesTheAppAndCancels: the password form says which app
// the person signs in to, and its Cancel link goes back to it.
func TestPasswordFormNamesTheAppAndCancels(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	br := h.newBrowser()
	params := authParams(newPKCE())
	params.Set("connector_id", "local")
	r := h.authorize(br, params)
	form := br.get(r.location.String())
	if form.status != http.StatusOK || !strings.Contains(form.body, "Example App") || !strings.Contains(form.body, "Break-glass accounts") {
		t.Fatalf("password form = %d, want it to name the app and the connector; body %s", form.status, form.body)
	}
	h.wantCancelled(br.get(h.cancelURL(form)), params.Get("state"))
}

// TestConnectorNamedCancel: /cancel lies outside /login, so a connector
// may be called "cancel".
func TestConnectorNamedCancel(t *testing.T) {
	h := newHarness(t, nil, nil, func(c *config.Config) {
		for i := range c.Connectors {
			if c.Connectors[i].ID == "backup" {
				c.Connectors[i].ID = "cancel"
			}
		}
	})
	br := h.newBrowser()
	params := authParams(newPKCE())
	params.Set("connector_id", "cancel")
	r := h.authorize(br, params)
	if r.status != http.StatusFound || r.location.Path != "/login/cancel" {
		t.Fatalf("authorize = %d %v, want the connector cancel's form", r.status, r.location)
	}
	done := h.passwordLogin(br, r.location, "carol", "carol-password-123")
	if done.status != http.StatusSeeOther || done.location.Query().Get("code") == "" {
		t.Fatalf("sign-in at connector cancel = %d %v, want a code", done.status, done.location)
	}
}

// TestThrottledPasswordPage: the 429 page says when to try again (the
// limits refill within a minute) and offers a way on and a way back.
func TestThrottledPasswordPage(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	br := h.newBrowser()
	params := authParams(newPKCE())
	params.Set("connector_id", "local")
	r := h.authorize(br, params)
	var last response
	for range 8 {
		last = h.passwordLogin(br, r.location, "alice", "wrong")
		if last.status == http.StatusTooManyRequests {
			break
		}
	}
	if last.status != http.StatusTooManyRequests || !strings.Contains(last.body, "too_many_attempts") {
		t.Fatalf("wrong passwords = %d, want a 429 too_many_attempts page; body %s", last.status, last.body)
	}
	if !strings.Contains(last.body, "Wait a minute") || strings.Contains(last.body, "few minutes") {
		t.Errorf("429 page does not say to wait a minute:\n%s", last.body)
	}
	retry := regexp.MustCompile(`href="([^"]*/login/local\?req=[^"]+)"`).FindStringSubmatch(last.body)
	if retry == nil {
		t.Fatalf("429 page has no link back to the form:\n%s", last.body)
	}
	if form := br.get(h.issuer + html.UnescapeString(retry[1])); form.status != http.StatusOK || !strings.Contains(form.body, `name="password"`) {
		t.Fatalf("try-again link = %d, want the password form", form.status)
	}
	h.wantCancelled(br.get(h.cancelURL(last)), params.Get("state"))
}

// TestSignOutErrorPage: a refused sign-out is headed as a sign-out.
func TestSignOutErrorPage(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	r := h.newBrowser().get(h.issuer + "/logout?post_logout_redirect_uri=" + url.QueryEscape(appLogout))
	if r.status != http.StatusBadRequest || r.location != nil {
		t.Fatalf("logout redirect without a hint = %d %v, want a 400 page", r.status, r.location)
	}
	if !strings.Contains(r.body, "This sign-out request cannot be completed") || strings.Contains(r.body, "sign-in") {
		t.Errorf("sign-out error page:\n%s\nwant a sign-out heading and no mention of a sign-in", r.body)
	}
}
