package demo

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestBrowserSignOut: Alice signs in at Contoso; the tokens page shows the
// raw access token and a curl line that the demo API accepts; "Sign in
// again" is single sign-on (no form); "Sign out" ends the app's session,
// the broker's (RP-initiated logout with id_token_hint) and Contoso's (the
// broker's upstream logout: Contoso's end_session_endpoint with the ID
// token Contoso issued, back through the broker's /logout/contoso) and
// comes back to the app's home page; signing in again then shows the
// broker's chooser and Contoso's password form, where Bob signs in.
// Contoso keeps single sign-on sessions, so the password form proves that
// its session ended: with upstream_logout: false on the broker's contoso
// connector the sign-in would pass through silently, and the test fails.
func TestBrowserSignOut(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)

	tb := newTab(t, browser, "signout")
	openChooser(tb, d)
	tb.step("choose Contoso", chromedp.Click(connectorLink("Contoso (OpenID Connect)")))
	signInAtContoso(tb, "alice", "contoso-alice-pw")
	alice := assertSignedIn(tb, d, "alice@example.com", "contoso-staff")
	tb.check("curl line", curlLineWorks(tb, d, alice))

	// While signed in, signing in again is single sign-on at the broker:
	// no chooser, no form.
	tb.step("sign in again (SSO)", chromedp.Navigate(d.AppURL+"/login"), chromedp.WaitVisible(chromedp.ID("signed-in")))
	tb.check("SSO", unlessEqual(run(tb, "SSO location", chromedp.Location()), d.AppURL+"/", "after Sign in again"))
	tb.check("SSO subject", unlessEqual(run(tb, "SSO subject", chromedp.Text(chromedp.CSS(`#signed-in code`))), alice, "the subject after SSO"))

	tb.step("press Sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signed-out")))
	at := run(tb, "location after sign-out", chromedp.Location())
	tb.check("back at the app", unlessPrefix(at, d.AppURL+"/?state=", "after Sign out"))
	tb.check("signed out", signedOutPage(tb))
	reqs := tb.documentRequests()
	tb.check("RP-initiated logout", loggedOutAtBroker(reqs, d))
	tb.check("upstream logout at Contoso", loggedOutAtContoso(reqs, d))

	tb.step("reload the home page", chromedp.Navigate(d.AppURL+"/"), chromedp.WaitVisible(chromedp.ID("signin")))
	tb.check("still signed out", signedOutPage(tb))

	// Signing in again asks: the broker's chooser (its session ended) and
	// Contoso's password form (Contoso's session ended too).
	openChooser(tb, d)
	tb.step("choose Contoso again", chromedp.Click(connectorLink("Contoso (OpenID Connect)")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)))
	at = run(tb, "Contoso asks again", chromedp.Location())
	tb.check("Contoso asks again", unlessPrefix(at, d.ContosoURL+"/", "the password form after signing out"))
	signInAtContoso(tb, "bob", "contoso-bob-pw")
	// Bob's Contoso groups are not "contoso-..." ones: the mapping drops
	// them all (the story the admin console's workbench explains).
	bob := assertSignedIn(tb, d, "bob@contoso.example", "")
	if bob == alice {
		t.Errorf("Bob signed in as Alice's subject %q", alice)
	}
}

// TestBrowserSignOutAtContoso: Alice is signed in to the demo app through
// Contoso. In another tab of her browser she opens Contoso's own /logout
// and confirms. Contoso tells the broker (back-channel logout to
// /logout/contoso), the broker ends its session and tells the demo app,
// and the app's open page, which watches its session, says that it ended;
// a reload shows the app signed out.
func TestBrowserSignOutAtContoso(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)

	app := newTab(t, browser, "app")
	openChooser(app, d)
	app.step("choose Contoso", chromedp.Click(connectorLink("Contoso (OpenID Connect)")))
	signInAtContoso(app, "alice", "contoso-alice-pw")
	assertSignedIn(app, d, "alice@example.com", "contoso-staff")

	contoso := app.sibling("contoso")
	contoso.step("open Contoso's sign-out", chromedp.Navigate(d.ContosoURL+"/logout"),
		chromedp.WaitVisible(chromedp.Search(`//form//button[normalize-space()="Sign out"]`)))
	at := run(contoso, "Contoso's sign-out location", chromedp.Location())
	contoso.check("Contoso's sign-out", unlessPrefix(at, d.ContosoURL+"/logout", "the confirmation page"))
	contoso.step("confirm at Contoso", chromedp.Click(chromedp.Search(`//form//button[normalize-space()="Sign out"]`)),
		chromedp.WaitVisible(chromedp.ID("signed-out")))
	heading := run(contoso, "Contoso signed out", chromedp.Text(chromedp.CSS("h1")))
	contoso.check("Contoso signed out", unlessEqual(strings.TrimSpace(heading), "Signed out", "Contoso's page after confirming"))

	assertSessionEndedOnPage(app, d)
	assertNoCSPViolations(t, app, contoso)
}

// TestBrowserAdminSignOut: Alice is signed in to the demo app; an operator
// signs her out everywhere with the broker's admin API (DELETE
// /admin/subjects/{sub}/sessions). The broker tells the demo app, whose
// open page says that the session ended; a reload shows it signed out.
func TestBrowserAdminSignOut(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)

	app := newTab(t, browser, "app")
	openChooser(app, d)
	app.step("choose Contoso", chromedp.Click(connectorLink("Contoso (OpenID Connect)")))
	signInAtContoso(app, "alice", "contoso-alice-pw")
	alice := assertSignedIn(app, d, "alice@example.com", "contoso-staff")

	var ended struct {
		Ended []string `json:"sessions_ended"`
	}
	if st := admin(t, d, http.MethodDelete, "/admin/subjects/"+url.PathEscape(alice)+"/sessions", &ended); st != http.StatusOK || len(ended.Ended) != 1 {
		t.Fatalf("DELETE /admin/subjects/%s/sessions: status %d, ended %v; want 200 and one session", alice, st, ended.Ended)
	}
	assertSessionEndedOnPage(app, d)
	assertNoCSPViolations(t, app)
}

// assertSessionEndedOnPage waits for the app's signed-in page, still open
// in tb, to say that its session ended (its script asks the app every
// 1.5 s), and checks that a reload shows the app signed out, with the
// notice.
func assertSessionEndedOnPage(tb *tab, d *Demo) {
	tb.t.Helper()
	start := time.Now()
	tb.step("the page says the session ended", chromedp.WaitVisible(chromedp.ID("session-ended")))
	tb.t.Logf("the app's page showed the session ended %s after the sign-out", time.Since(start).Round(time.Millisecond))
	tb.check("session ended", unlessEqual(run(tb, "session ended text", chromedp.Text(chromedp.ID("session-ended"))),
		"Your session was ended (signed out elsewhere)", "the page's notice"))
	tb.check("ended page", signedOutPage(tb))
	tb.check("still at the app", unlessEqual(run(tb, "location", chromedp.Location()), d.AppURL+"/", "the page that noticed"))
	tb.step("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("signin")))
	tb.check("reloaded signed out", signedOutPage(tb))
	tb.step("reloaded notice", chromedp.WaitVisible(chromedp.ID("ended-elsewhere")))
}

// assertNoCSPViolations fails the test when a tab's console reports one.
func assertNoCSPViolations(t *testing.T, tabs ...*tab) {
	t.Helper()
	for _, tb := range tabs {
		for _, line := range tb.consoleLines() {
			if strings.Contains(line, "Content Security Policy") {
				t.Errorf("%s: CSP violation: %s", tb.name, line)
			}
		}
	}
}

// TestBrowserErrorPage: an error response of the broker (here
// invalid_request for an unknown connector_id) ends on the demo app's error
// page with the error, its error_description and a "Try again" link.
func TestBrowserErrorPage(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)

	tb := newTab(t, browser, "error")
	tb.step("sign in with an unknown connector", chromedp.Navigate(d.AppURL+"/login?connector_id=no-such-idp"),
		chromedp.WaitVisible(chromedp.ID("error-description")))
	at := run(tb, "error page location", chromedp.Location())
	tb.check("error page", unlessPrefix(at, d.AppURL+"/callback?", "the error page"))
	tb.check("error", unlessEqual(run(tb, "error code", chromedp.Text(chromedp.ID("error-code"))), "invalid_request", "the error"))
	tb.check("error_description", unlessEqual(run(tb, "error_description", chromedp.Text(chromedp.ID("error-description"))), "unknown or disallowed connector_id", "the error_description"))
	retry := run(tb, "Try again", chromedp.Evaluate[string](`document.getElementById("retry").href`))
	tb.check("Try again", unlessEqual(retry, d.AppURL+"/login", "the Try again link"))
	tb.step("press Try again", chromedp.Click(chromedp.ID("retry")), chromedp.WaitVisible(chromedp.CSS(`ul.connectors a`)))
}

// TestBrowserPhoneWidth: on a 375×812 phone viewport (mobile emulation, so
// a page without a viewport meta would be laid out 980 px wide) none of the
// pages of a sign-in is wider than the screen: the app's home, the broker's
// chooser, the password page (Contoso's, a fedbroker with the broker's
// templates), the app's tokens page with its long tokens, the app's error
// page, Fabrikam's login page and the broker's root page (its issuer URL,
// with the long discovery and JWKS URLs). Each is saved as a screenshot
// ($SCREENSHOT_DIR, else the test's temporary directory).
func TestBrowserPhoneWidth(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)

	tb := newTab(t, browser, "phone")
	tb.step("phone viewport", chromedp.EmulateViewport(375, 812, chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch))
	tb.step("open the demo app", chromedp.Navigate(d.AppURL+"/"), chromedp.WaitVisible(chromedp.ID("signin")))
	fitsPhone(tb, "app home")
	tb.step("press Sign in", chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.CSS(`ul.connectors a`)))
	fitsPhone(tb, "broker chooser")
	tb.step("choose Contoso", chromedp.Click(connectorLink("Contoso (OpenID Connect)")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)))
	fitsPhone(tb, "broker password page")
	signInAtContoso(tb, "alice", "contoso-alice-pw")
	tb.step("tokens page", chromedp.WaitVisible(chromedp.ID("signed-in")))
	fitsPhone(tb, "app tokens page")
	tb.step("error page", chromedp.Navigate(d.AppURL+"/login?connector_id=no-such-idp"), chromedp.WaitVisible(chromedp.ID("error-description")))
	fitsPhone(tb, "app error page")
	tb.step("Fabrikam", chromedp.Navigate(d.AppURL+"/login?connector_id=fabrikam"), chromedp.WaitVisible(chromedp.CSS(`input[name="user"]`)))
	fitsPhone(tb, "Fabrikam login page")
	tb.step("broker root page", chromedp.Navigate(d.BrokerURL), chromedp.WaitVisible(chromedp.CSS(`dl.endpoints`)))
	fitsPhone(tb, "broker root page")
}

// look is what the tests read of a page's layout.
type look struct {
	Viewport    string  `json:"viewport"`
	Heading     string  `json:"heading"`
	Labels      int     `json:"labels"`
	CardShadow  string  `json:"cardShadow"`
	CardRight   float64 `json:"cardRight"`
	ScrollWidth int     `json:"scrollWidth"`
	InnerWidth  int     `json:"innerWidth"`
}

func lookOf(tb *tab, name string) look {
	tb.t.Helper()
	return run(tb, name, chromedp.Evaluate[look](`(() => {
		const m = document.querySelector('meta[name="viewport"]');
		const h = document.querySelector("h1");
		const c = document.querySelector(".card");
		return {
			viewport: m ? m.content : "",
			heading: h ? h.textContent.trim() : "",
			labels: document.querySelectorAll("label[for]").length,
			cardShadow: c ? getComputedStyle(c).boxShadow : "",
			cardRight: c ? c.getBoundingClientRect().right : 0,
			scrollWidth: document.documentElement.scrollWidth,
			innerWidth: window.innerWidth,
		};
	})()`))
}

// fitsPhone saves a screenshot of the page and checks that it has a
// viewport meta and that neither the page nor its card is wider than the
// 375 px viewport.
func fitsPhone(tb *tab, name string) {
	tb.t.Helper()
	l := lookOf(tb, name)
	tb.t.Logf("%s at 375 px: scrollWidth %d, innerWidth %d, card right edge %.1f; screenshot %s", name, l.ScrollWidth, l.InnerWidth, l.CardRight, tb.screenshot("phone "+name))
	tb.check(name+" viewport", unlessContains(l.Viewport, "width=device-width", name+": the viewport meta"))
	if l.ScrollWidth > 375 || l.InnerWidth > 375 || l.CardRight > 375 {
		tb.check(name+" width", fmt.Sprintf("%s overflows a 375 px phone: scrollWidth %d, innerWidth %d, card right edge %.1f", name, l.ScrollWidth, l.InnerWidth, l.CardRight))
	}
}

// signedOutPage checks that the page is the app's home page, signed out.
func signedOutPage(tb *tab) string {
	tb.t.Helper()
	state := run(tb, "signed-out page", chromedp.Evaluate[[]bool](
		`[document.getElementById("signin") !== null, document.getElementById("signed-in") === null, document.getElementById("signout") === null]`))
	if len(state) != 3 || !state[0] || !state[1] || !state[2] {
		return fmt.Sprintf("the app's page is not signed out (sign-in button, no subject, no sign-out button: %v)", state)
	}
	return ""
}

// loggedOutAtBroker checks that the browser went through the broker's
// end_session_endpoint with an id_token_hint, the registered
// post_logout_redirect_uri and a state.
func loggedOutAtBroker(reqs []*network.EventRequestWillBeSent, d *Demo) string {
	for _, r := range reqs {
		if !strings.HasPrefix(r.Request.URL, d.BrokerURL+"/logout?") {
			continue
		}
		u := r.Request.URL
		for _, want := range []string{"id_token_hint=", "post_logout_redirect_uri=" + url.QueryEscape(d.AppURL+"/"), "state="} {
			if !strings.Contains(u, want) {
				return fmt.Sprintf("the sign-out request %s lacks %s", u, want)
			}
		}
		return ""
	}
	return "the browser never went to the broker's end_session_endpoint"
}

// loggedOutAtContoso checks that the browser went through Contoso's
// end_session_endpoint (the broker's upstream logout) with an
// id_token_hint, the broker's /logout/contoso as post_logout_redirect_uri
// and a state, and came back through that URL.
func loggedOutAtContoso(reqs []*network.EventRequestWillBeSent, d *Demo) string {
	back := d.BrokerURL + "/logout/contoso"
	sent, returned := false, false
	for _, r := range reqs {
		switch u := r.Request.URL; {
		case strings.HasPrefix(u, d.ContosoURL+"/logout?"):
			for _, want := range []string{"id_token_hint=", "post_logout_redirect_uri=" + url.QueryEscape(back), "state="} {
				if !strings.Contains(u, want) {
					return fmt.Sprintf("the broker's sign-out request to Contoso %s lacks %s", u, want)
				}
			}
			sent = true
		case sent && strings.HasPrefix(u, back+"?"):
			returned = true
		}
	}
	switch {
	case !sent:
		return "the browser never went to Contoso's end_session_endpoint"
	case !returned:
		return "the browser never came back from Contoso to " + back
	}
	return ""
}

var curlLine = regexp.MustCompile(`^curl -H "Authorization: DPoP ([A-Za-z0-9_.-]+)" -H "DPoP: ([A-Za-z0-9_.-]+)" (\S+)$`)

// curlLineWorks checks the raw access token and the curl line on the tokens
// page (the token is DPoP-bound: the line carries a proof made for it), and
// runs the line's request as curl would: the demo API answers 200 for the
// subject.
func curlLineWorks(tb *tab, d *Demo, subject string) string {
	tb.t.Helper()
	raw := strings.TrimSpace(run(tb, "raw access token", chromedp.Text(chromedp.ID("access-token-raw"))))
	line := strings.TrimSpace(run(tb, "curl line", chromedp.Text(chromedp.ID("curl"))))
	m := curlLine.FindStringSubmatch(line)
	switch {
	case m == nil:
		return fmt.Sprintf("the curl line %q is not curl -H \"Authorization: DPoP <token>\" -H \"DPoP: <proof>\" <url>", line)
	case m[1] != raw:
		return fmt.Sprintf("the curl line's token is not the raw access token shown (%q)", raw)
	case m[3] != d.APIURL+"/whoami":
		return fmt.Sprintf("the curl line calls %s, want the demo API's %s/whoami", m[3], d.APIURL)
	}
	req, err := http.NewRequest(http.MethodGet, m[3], nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Authorization", "DPoP "+m[1])
	req.Header.Set("DPoP", m[2])
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), subject) {
		return fmt.Sprintf("the curl line's request got %s %s", resp.Status, body)
	}
	return ""
}
