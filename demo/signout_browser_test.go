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
// again" is single sign-on (no form); "Sign out" ends the app's session and
// the broker's (RP-initiated logout with id_token_hint) and comes back to
// the app's home page; signing in again then shows the broker's chooser and
// Contoso's password form (no silent SSO anywhere), where Bob signs in.
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

	tb.step("reload the home page", chromedp.Navigate(d.AppURL+"/"), chromedp.WaitVisible(chromedp.ID("signin")))
	tb.check("still signed out", signedOutPage(tb))

	// Signing in again asks: the broker's chooser (its session ended) and
	// Contoso's password form.
	openChooser(tb, d)
	tb.step("choose Contoso again", chromedp.Click(connectorLink("Contoso (OpenID Connect)")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)))
	at = run(tb, "Contoso asks again", chromedp.Location())
	tb.check("Contoso asks again", unlessPrefix(at, d.ContosoURL+"/", "the password form after signing out"))
	signInAtContoso(tb, "bob", "contoso-bob-pw")
	bob := assertSignedIn(tb, d, "bob@contoso.example", "contoso-staff")
	if bob == alice {
		t.Errorf("Bob signed in as Alice's subject %q", alice)
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
