package demo

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestBrowserSignIn drives the demo in a real chromium: Alice signs in at
// the demo app through the broker's chooser, once at Contoso (OpenID
// Connect, Contoso's own login form) and once, in a fresh browser context,
// at Fabrikam (SAML: redirect-binding AuthnRequest, Fabrikam's styled login
// page, POST-binding response posted by Fabrikam's page script to the
// broker's ACS). Both logins end on the demo app with the same internal
// subject, and each upstream's groups reach the tokens.
func TestBrowserSignIn(t *testing.T) {
	browser := newBrowser(t)
	d, err := Start(context.Background(), Options{Host: "127.0.0.1"})
	if err != nil {
		t.Fatalf("demo.Start: %v", err)
	}
	t.Cleanup(d.Close)

	contoso := newTab(t, browser, "contoso")
	openChooser(contoso, d)
	contoso.step("choose Contoso", chromedp.Click(connectorLink("Contoso (OpenID Connect)")))
	contoso.step("Contoso login form",
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)))
	at := run(contoso, "Contoso login form location", chromedp.Location())
	contoso.check("Contoso login form", unlessPrefix(at, d.ContosoURL+"/", "the login form is not Contoso's own page"))
	signInAtContoso(contoso, "alice", "contoso-alice-pw")
	viaContoso := assertSignedIn(contoso, d, "alice@example.com", "contoso-staff")

	fabrikam := newTab(t, browser, "fabrikam")
	openChooser(fabrikam, d)
	fabrikam.step("choose Fabrikam", chromedp.Click(connectorLink("Fabrikam (SAML)")))
	fabrikam.step("Fabrikam login form",
		chromedp.WaitVisible(chromedp.CSS(`input[name="user"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)))
	at = run(fabrikam, "Fabrikam login form location", chromedp.Location())
	fabrikam.check("Fabrikam login form", unlessPrefix(at, d.FabrikamURL+"/", "the login form is not Fabrikam's page"))
	look := lookOf(fabrikam, "Fabrikam login page")
	fabrikam.check("Fabrikam viewport", unlessContains(look.Viewport, "width=device-width", "Fabrikam's viewport meta"))
	fabrikam.check("Fabrikam heading", unlessEqual(look.Heading, "Sign in to Fabrikam", "Fabrikam's heading"))
	fabrikam.check("Fabrikam labels", unlessEqual(fmt.Sprint(look.Labels), "2", "Fabrikam's labelled fields"))
	fabrikam.check("Fabrikam card", unlessNonEmpty(strings.TrimPrefix(look.CardShadow, "none"), "the box shadow of Fabrikam's card (its style)"))
	signInAtFabrikam(fabrikam, "alice", "fabrikam-alice-pw")
	viaFabrikam := assertSignedIn(fabrikam, d, "alice@example.com", "fabrikam-staff")
	fabrikam.check("SAML POST binding", samlPostedByScript(fabrikam.documentRequests(), d.BrokerURL+"/callback/fabrikam"))

	if viaFabrikam != viaContoso {
		t.Errorf("subject via Fabrikam = %q, via Contoso = %q: want one linked subject", viaFabrikam, viaContoso)
	}
	for _, tb := range []*tab{contoso, fabrikam} {
		for _, line := range tb.consoleLines() {
			if strings.Contains(line, "Content Security Policy") {
				t.Errorf("%s: CSP violation: %s", tb.name, line)
			}
		}
	}
}

// TestBrowserWrongPassword: a wrong password at Contoso keeps the user on
// Contoso's form with an error, in a real browser, and the right one then
// still completes the sign-in (the form's request and CSRF fields survive
// the failed attempt).
func TestBrowserWrongPassword(t *testing.T) {
	browser := newBrowser(t)
	d, err := Start(context.Background(), Options{Host: "127.0.0.1"})
	if err != nil {
		t.Fatalf("demo.Start: %v", err)
	}
	t.Cleanup(d.Close)

	tb := newTab(t, browser, "contoso")
	openChooser(tb, d)
	tb.step("choose Contoso", chromedp.Click(connectorLink("Contoso (OpenID Connect)")))
	tb.step("submit a wrong password",
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "fabrikam-alice-pw"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	msg := run(tb, "error shown", chromedp.Text(chromedp.CSS(`[role="alert"]`)))
	tb.check("error shown", unlessContains(msg, "not correct", "the error message"))
	at := run(tb, "still at Contoso", chromedp.Location())
	tb.check("still at Contoso", unlessPrefix(at, d.ContosoURL+"/", "after a wrong password"))
	tb.step("clear the name", chromedp.Clear(chromedp.CSS(`input[name="login"]`)))
	signInAtContoso(tb, "alice", "contoso-alice-pw")
	assertSignedIn(tb, d, "alice@example.com", "contoso-staff")
}

// signInAtContoso fills and submits Contoso's login form.
func signInAtContoso(tb *tab, login, password string) {
	tb.t.Helper()
	tb.step("submit Contoso login",
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), login),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
}

// signInAtFabrikam fills and submits Fabrikam's login form.
func signInAtFabrikam(tb *tab, user, password string) {
	tb.t.Helper()
	tb.step("submit Fabrikam login",
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
}

// openChooser goes from the demo app's home page through "Sign in" to the
// broker's chooser and checks that both upstreams are offered.
func openChooser(tb *tab, d *Demo) {
	tb.t.Helper()
	tb.step("open the demo app", chromedp.Navigate(d.AppURL+"/"), chromedp.WaitVisible(chromedp.ID("signin")))
	tb.step("press Sign in", chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.CSS(`ul.connectors a`)))
	at := run(tb, "chooser location", chromedp.Location())
	tb.check("chooser", unlessPrefix(at, d.BrokerURL+"/", "the chooser is not the broker's page"))
	names := run(tb, "chooser entries", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("ul.connectors a"), a => a.textContent.trim())`))
	for _, want := range []string{"Contoso (OpenID Connect)", "Fabrikam (SAML)"} {
		if !slices.Contains(names, want) {
			tb.check("chooser entries", fmt.Sprintf("chooser lists %q, want %q among them", names, want))
		}
	}
	// The stylesheet loaded under the broker's CSP (style-src 'self').
	sheets := run(tb, "chooser stylesheet", chromedp.Evaluate[int](
		`Array.from(document.styleSheets).filter(s => { try { return s.cssRules.length > 0 } catch (e) { return false } }).length`))
	if sheets == 0 {
		tb.check("chooser stylesheet", "the chooser has no stylesheet with rules: style.css did not load")
	}
}

// connectorLink selects the chooser's button for the connector name.
func connectorLink(name string) chromedp.Search {
	return chromedp.Search(fmt.Sprintf(`//ul[@class="connectors"]//a[normalize-space()=%q]`, name))
}

// assertSignedIn waits for the demo app's tokens page (its home page, once
// the callback has kept the tokens in the app's session) and checks the
// claims, the upstream's group in both tokens, the access token's type and
// the demo API's answer. It returns the subject.
func assertSignedIn(tb *tab, d *Demo, email, group string) string {
	tb.t.Helper()
	tb.step("back at the demo app", chromedp.WaitVisible(chromedp.ID("signed-in")))
	at := run(tb, "demo app location", chromedp.Location())
	tb.check("demo app location", unlessEqual(at, d.AppURL+"/", "the tokens page"))
	subject := run(tb, "subject", chromedp.Text(chromedp.CSS(`#signed-in code`)))
	tb.check("subject", unlessNonEmpty(subject, "the subject"))
	idToken := run(tb, "ID token", chromedp.Text(chromedp.ID("id-token")))
	tb.check("ID token", unlessContains(idToken, fmt.Sprintf(`"email": %q`, email), "the decoded ID token"))
	tb.check("ID token", unlessContains(idToken, fmt.Sprintf(`"sub": %q`, subject), "the decoded ID token"))
	// group "" is none: Bob's groups are all dropped by the mapping.
	groups := fmt.Sprintf("\"groups\": [\n    %q\n  ]", group)
	if group == "" {
		groups = `"groups": []`
	}
	tb.check("ID token groups", unlessContains(idToken, groups, "the decoded ID token"))
	accessToken := run(tb, "access token", chromedp.Text(chromedp.ID("access-token")))
	tb.check("access token groups", unlessContains(accessToken, groups, "the decoded access token"))
	atHeader := run(tb, "access token header", chromedp.Text(chromedp.ID("access-token-header")))
	tb.check("access token header", unlessContains(atHeader, `"typ": "at+jwt"`, "the access token header"))
	status := run(tb, "API status", chromedp.Text(chromedp.ID("api-status")))
	tb.check("API status", unlessEqual(strings.TrimSpace(status), "200 OK", "the demo API's status"))
	apiBody := run(tb, "API body", chromedp.Text(chromedp.ID("api-body")))
	tb.check("API body", unlessContains(apiBody, subject, "the demo API's answer"))
	return subject
}

// samlPostedByScript checks the POST-binding leg: the browser posted a
// SAMLResponse to the broker's ACS and the broker answered with a redirect
// onward. The test never clicks the IdP's "Continue" button, so the post
// came from the IdP page's script. (Chromium reports the initiator of a
// script-submitted form navigation as "other", so it is not checked.)
func samlPostedByScript(reqs []*network.EventRequestWillBeSent, acs string) string {
	var post *network.EventRequestWillBeSent
	for _, r := range reqs {
		if r.Request.Method == "POST" && strings.HasPrefix(r.Request.URL, acs) {
			post = r
		}
	}
	if post == nil {
		var seen []string
		for _, r := range reqs {
			seen = append(seen, r.Request.Method+" "+r.Request.URL)
		}
		return fmt.Sprintf("no POST to %s among the document requests %q", acs, seen)
	}
	form, err := url.ParseQuery(postBody(post))
	if err != nil || form.Get("SAMLResponse") == "" {
		return fmt.Sprintf("POST %s carried no SAMLResponse form field (err %v)", post.Request.URL, err)
	}
	for _, r := range reqs {
		if r.RequestID == post.RequestID && r.RedirectResponse != nil {
			return "" // the ACS answered with a redirect onward
		}
	}
	return fmt.Sprintf("the broker's ACS did not redirect after POST %s", post.Request.URL)
}

func unlessPrefix(got, prefix, what string) string {
	if strings.HasPrefix(got, prefix) {
		return ""
	}
	return fmt.Sprintf("%s: at %q, want a URL under %q", what, got, prefix)
}

func unlessContains(got, want, what string) string {
	if strings.Contains(got, want) {
		return ""
	}
	return fmt.Sprintf("%s = %q, want it to contain %q", what, got, want)
}

func unlessEqual(got, want, what string) string {
	if got == want {
		return ""
	}
	return fmt.Sprintf("%s = %q, want %q", what, got, want)
}

func unlessNonEmpty(got, what string) string {
	if got != "" {
		return ""
	}
	return what + " is empty"
}
