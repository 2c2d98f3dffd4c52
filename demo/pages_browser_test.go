package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// TestBrowserBrokerRootPage: the broker's URL that the demo prints (its
// issuer) opens, in a real browser, the broker's own page: 200, the
// broker's stylesheet and card, a heading and text naming the sign-in
// service, the issuer, and links to the discovery document and the JWKS.
// Both links work: the discovery document is JSON with the issuer and that
// JWKS URL, and the JWKS is JSON with public keys only.
func TestBrowserBrokerRootPage(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)

	var welcome bytes.Buffer
	d.PrintWelcome(&welcome)
	m := regexp.MustCompile(`(?m)^\s*Broker\s+(\S+)`).FindStringSubmatch(welcome.String())
	if m == nil {
		t.Fatalf("the demo's welcome names no broker URL:\n%s", welcome.String())
	}
	printed := m[1]
	if printed != d.BrokerURL {
		t.Fatalf("the demo prints the broker at %q, but it runs at %q", printed, d.BrokerURL)
	}
	issuer, err := url.Parse(d.BrokerURL)
	if err != nil {
		t.Fatal(err)
	}

	tb := newTab(t, browser, "root")
	resp := run(tb, "open the printed broker URL", chromedp.NavigateResponse(printed))
	tb.check("root page status", unlessEqual(fmt.Sprint(resp.Status), "200", "the status of the broker's root page"))
	tb.check("root page type", unlessEqual(resp.MimeType, "text/html", "the media type of the broker's root page"))
	at := run(tb, "root page location", chromedp.Location())
	tb.check("root page location", unlessEqual(at, d.BrokerURL+"/", "the broker's root page"))

	look := lookOf(tb, "root page")
	tb.check("root page viewport", unlessContains(look.Viewport, "width=device-width", "the root page's viewport meta"))
	tb.check("root page heading", unlessEqual(look.Heading, issuer.Host, "the root page's heading (the service's name)"))
	tb.check("root page card", unlessNonEmpty(strings.TrimPrefix(look.CardShadow, "none"), "the box shadow of the root page's card (the broker's style)"))
	tb.check("root page stylesheet", brokerStylesheet(tb, d, "root page stylesheet"))
	title := run(tb, "root page title", chromedp.Title())
	tb.check("root page title", unlessEqual(title, "Sign-in service", "the root page's title"))
	text := run(tb, "root page text", chromedp.Text(chromedp.CSS(`main`)))
	tb.check("root page text", unlessContains(text, "This is the sign-in service for "+issuer.Host+".", "the root page's text"))
	shownIssuer := run(tb, "issuer shown", chromedp.Text(chromedp.CSS(`main p code`)))
	tb.check("issuer shown", unlessEqual(shownIssuer, d.BrokerURL, "the issuer the root page shows"))
	// The demo's broker has no admin API: the page says nothing about one.
	tb.check("no admin section", unlessEqual(fmt.Sprint(strings.Contains(text, "For administrators")), "false", "an admin section on the root page of a broker without admin API"))

	links := run(tb, "endpoint links", chromedp.Evaluate[map[string][]string](`Object.fromEntries(
		Array.from(document.querySelectorAll("dl.endpoints dt"), dt => {
			const a = dt.nextElementSibling && dt.nextElementSibling.querySelector("a");
			return [dt.textContent.trim(), a ? [a.textContent.trim(), a.href] : []];
		}))`))
	discoveryURL := d.BrokerURL + "/.well-known/openid-configuration"
	jwksURL := d.BrokerURL + "/keys"
	for name, want := range map[string]string{"Discovery": discoveryURL, "Signing keys (JWKS)": jwksURL} {
		got := links[name]
		if len(got) != 2 || got[0] != want || got[1] != want {
			tb.check("endpoint links", fmt.Sprintf("the root page's %q entry links %q, want a link to %s showing that URL (all entries: %q)", name, got, want, links))
		}
	}

	// Follow the discovery link.
	resp = respond(tb, "follow the Discovery link", chromedp.Click(chromedp.Search(`//dl[@class="endpoints"]//a[normalize-space()=`+fmt.Sprintf("%q", discoveryURL)+`]`)))
	tb.check("discovery status", unlessEqual(fmt.Sprint(resp.Status), "200", "the status of the discovery document"))
	tb.check("discovery type", unlessEqual(resp.MimeType, "application/json", "the media type of the discovery document"))
	tb.check("discovery location", unlessEqual(run(tb, "discovery location", chromedp.Location()), discoveryURL, "after the Discovery link"))
	var disc struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		JWKSURI               string `json:"jwks_uri"`
	}
	body := shownJSON(tb, "discovery document")
	if err := json.Unmarshal([]byte(body), &disc); err != nil {
		tb.check("discovery JSON", fmt.Sprintf("the discovery document is not JSON (%v): %q", err, body))
	}
	tb.check("discovery issuer", unlessEqual(disc.Issuer, d.BrokerURL, "the discovery document's issuer"))
	tb.check("discovery jwks_uri", unlessEqual(disc.JWKSURI, jwksURL, "the discovery document's jwks_uri (the root page's JWKS link)"))
	tb.check("discovery authorization_endpoint", unlessPrefix(disc.AuthorizationEndpoint, d.BrokerURL+"/", "the discovery document's authorization_endpoint"))

	// Back to the root page, and follow the JWKS link.
	tb.step("the root page again", chromedp.Navigate(printed), chromedp.WaitVisible(chromedp.CSS(`dl.endpoints`)))
	resp = respond(tb, "follow the JWKS link", chromedp.Click(chromedp.Search(`//dl[@class="endpoints"]//a[normalize-space()=`+fmt.Sprintf("%q", jwksURL)+`]`)))
	tb.check("JWKS status", unlessEqual(fmt.Sprint(resp.Status), "200", "the status of the JWKS"))
	tb.check("JWKS type", unlessContains(resp.MimeType, "json", "the media type of the JWKS"))
	tb.check("JWKS location", unlessEqual(run(tb, "JWKS location", chromedp.Location()), jwksURL, "after the JWKS link"))
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	body = shownJSON(tb, "JWKS")
	if err := json.Unmarshal([]byte(body), &jwks); err != nil {
		tb.check("JWKS JSON", fmt.Sprintf("the JWKS is not JSON (%v): %q", err, body))
	}
	if len(jwks.Keys) == 0 {
		tb.check("JWKS keys", fmt.Sprintf("the JWKS has no keys: %q", body))
	}
	for _, k := range jwks.Keys {
		if k["kid"] == nil || k["kty"] == nil {
			tb.check("JWKS keys", fmt.Sprintf("a key without kid or kty: %v", k))
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				tb.check("JWKS keys", fmt.Sprintf("key %v publishes the private member %q", k["kid"], private))
			}
		}
	}
	for _, line := range tb.consoleLines() {
		if strings.Contains(line, "Content Security Policy") {
			t.Errorf("CSP violation: %s", line)
		}
	}
}

// TestBrowserCancelAtChooser: "Cancel and return to Demo app" on the
// broker's connector chooser ends on the demo app's error page with
// access_denied, "Sign-in cancelled" and the broker's error_description,
// and the browser is not signed in; the page's "Try again" opens a new
// chooser. Once a sign-in is cancelled it is over: the old chooser URL and
// the old Cancel link show the broker's "This sign-in has expired" page.
// The back button from the app's error page shows that page too, or, when
// chromium restores the cancelled chooser from its back/forward cache (it
// does, no-store or not), a copy whose connectors lead to that page: in
// neither case does a sign-in go on.
//
// The demo's broker has no local connector (Contoso is OpenID Connect,
// Fabrikam SAML), so it never shows its own password form: Cancel is
// tested from the chooser only.
func TestBrowserCancelAtChooser(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)

	tb := newTab(t, browser, "cancel")
	openChooser(tb, d)
	first := cancelAtChooser(tb, d)

	// Try again starts a new sign-in: a chooser of a new request.
	tb.step("press Try again", chromedp.Click(chromedp.ID("retry")), chromedp.WaitVisible(chromedp.CSS(`ul.connectors a`)))
	again := run(tb, "new chooser location", chromedp.Location())
	tb.check("new chooser", unlessPrefix(again, d.BrokerURL+"/login?", "the chooser after Try again"))
	if again == first.chooser {
		tb.check("new chooser", fmt.Sprintf("Try again shows the cancelled request's chooser %s", again))
	}
	for _, name := range []string{"Contoso (OpenID Connect)", "Fabrikam (SAML)"} {
		n := run(tb, "new chooser entries", chromedp.Evaluate[int](fmt.Sprintf(
			`Array.from(document.querySelectorAll("ul.connectors a")).filter(a => a.textContent.trim() === %q).length`, name)))
		tb.check("new chooser entries", unlessEqual(fmt.Sprint(n), "1", fmt.Sprintf("the number of %q entries on the new chooser", name)))
	}

	// Cancel this one too, then press the back button: the chooser it
	// returns to is the cancelled request's, now expired. Chromium keeps
	// pages in its back/forward cache even when they are sent with
	// Cache-Control: no-store, so Back may show the cancelled chooser as it
	// was instead of asking the broker again; then that copy must lead
	// nowhere: choosing a connector on it shows the expired page.
	// (Chromium 156 restores it.)
	second := cancelAtChooser(tb, d)
	restored := pressBack(tb, "press Back")
	tb.check("Back location", unlessEqual(run(tb, "Back location", chromedp.Location()), second.chooser, "after Back from the app's error page"))
	// chromedp's DOM queries wait for a document load that a page restored
	// from the cache never has: read and press that page with scripts.
	heading := run(tb, "Back heading", chromedp.Evaluate[string](`(() => { const h = document.querySelector("h1"); return h ? h.textContent.trim() : "" })()`))
	switch {
	case heading == "This sign-in has expired":
		expiredPage(tb, d, "Back after Cancel", second.chooser)
	case !restored:
		tb.check("Back after Cancel", fmt.Sprintf("Back loaded the cancelled request's chooser URL from the broker and got %q, want the expired page", heading))
	default:
		t.Logf("Back after Cancel: chromium restored the cancelled chooser (%q) from its back/forward cache; choosing a connector on it", heading)
		tb.check("stale chooser", unlessEqual(heading, "Sign in to Demo app", "the heading of the page restored by Back"))
		contoso := run(tb, "stale chooser's Contoso link", chromedp.Evaluate[string](
			`(() => { const a = Array.from(document.querySelectorAll("ul.connectors a")).find(a => a.textContent.trim() === "Contoso (OpenID Connect)"); return a ? a.href : "" })()`))
		tb.check("stale chooser's Contoso link", unlessPrefix(contoso, d.BrokerURL+"/login/contoso?", "the Contoso entry of the restored chooser"))
		resp := respond(tb, "choose Contoso on the stale chooser", chromedp.Evaluate[chromedp.Void](
			`Array.from(document.querySelectorAll("ul.connectors a")).find(a => a.textContent.trim() === "Contoso (OpenID Connect)").click()`))
		tb.check("stale chooser status", unlessEqual(fmt.Sprint(resp.Status), "400", "the status after choosing a connector of a cancelled request"))
		expiredPage(tb, d, "connector of a cancelled request", contoso)
	}

	// The first chooser URL and the first Cancel link, used again.
	resp := run(tb, "reuse the first chooser URL", chromedp.NavigateResponse(first.chooser))
	tb.check("reused chooser status", unlessEqual(fmt.Sprint(resp.Status), "400", "the status of a cancelled request's chooser"))
	expiredPage(tb, d, "reused chooser URL", first.chooser)
	resp = run(tb, "reuse the first Cancel link", chromedp.NavigateResponse(first.cancel))
	tb.check("reused Cancel status", unlessEqual(fmt.Sprint(resp.Status), "400", "the status of a used Cancel link"))
	expiredPage(tb, d, "reused Cancel link", first.cancel)

	tb.step("app home", chromedp.Navigate(d.AppURL+"/"), chromedp.WaitVisible(chromedp.ID("signin")))
	tb.check("not signed in after Cancel", signedOutPage(tb))

	for _, line := range tb.consoleLines() {
		if strings.Contains(line, "Content Security Policy") {
			t.Errorf("CSP violation: %s", line)
		}
	}
}

// cancelled is a sign-in given up at the chooser: the chooser's URL and
// its Cancel link.
type cancelled struct {
	chooser, cancel string
}

// cancelAtChooser presses the chooser's "Cancel and return to Demo app"
// and checks the demo app's error page: the authorization error response
// at the app's redirect URI (access_denied, the error_description, state
// and iss) shown as "Sign-in cancelled" with the error, the description
// and a Try again link.
func cancelAtChooser(tb *tab, d *Demo) cancelled {
	tb.t.Helper()
	var c cancelled
	c.chooser = run(tb, "chooser location", chromedp.Location())
	tb.check("chooser", unlessPrefix(c.chooser, d.BrokerURL+"/login?", "the broker's chooser"))
	links := run(tb, "Cancel link", chromedp.Evaluate[[][]string](
		`Array.from(document.querySelectorAll("a")).filter(a => a.textContent.trim().startsWith("Cancel and return to")).map(a => [a.textContent.trim(), a.href])`))
	if len(links) != 1 || len(links[0]) != 2 {
		tb.check("Cancel link", fmt.Sprintf("the chooser has Cancel links %q, want one", links))
	}
	tb.check("Cancel link text", unlessEqual(links[0][0], "Cancel and return to Demo app", "the Cancel link's text"))
	c.cancel = links[0][1]
	tb.check("Cancel link target", unlessPrefix(c.cancel, d.BrokerURL+"/cancel?", "the Cancel link"))

	resp := respond(tb, "press Cancel", chromedp.Click(chromedp.Search(`//a[starts-with(normalize-space(), "Cancel and return to")]`)))
	tb.step("the app's error page", chromedp.WaitVisible(chromedp.ID("error-code")))
	at := run(tb, "error page location", chromedp.Location())
	tb.check("error page", unlessPrefix(at, d.AppURL+"/callback?", "the app's redirect URI after Cancel"))
	tb.check("error page status", unlessEqual(fmt.Sprint(resp.Status), "400", "the status of the app's error page"))
	u, err := url.Parse(at)
	if err != nil {
		tb.check("error page", err.Error())
	}
	q := u.Query()
	switch {
	case q.Get("error") != "access_denied", q.Get("error_description") != "the user cancelled the sign-in",
		q.Get("iss") != d.BrokerURL, q.Get("state") == "", q.Has("code"):
		tb.check("error response", fmt.Sprintf("authorization response %q: want error=access_denied, the error_description, state, iss=%s and no code", u.RawQuery, d.BrokerURL))
	}
	tb.check("error heading", unlessEqual(run(tb, "error heading", chromedp.Text(chromedp.ID("error-heading"))), "Sign-in cancelled", "the error page's heading"))
	tb.check("error", unlessEqual(run(tb, "error code", chromedp.Text(chromedp.ID("error-code"))), "access_denied", "the error"))
	tb.check("error_description", unlessEqual(run(tb, "error_description", chromedp.Text(chromedp.ID("error-description"))), "the user cancelled the sign-in", "the error_description"))
	retry := run(tb, "Try again", chromedp.Evaluate[string](`(() => { const a = document.getElementById("retry"); return a ? a.textContent.trim() + " " + a.href : "" })()`))
	tb.check("Try again", unlessEqual(retry, "Try again "+d.AppURL+"/login", "the error page's Try again link"))
	return c
}

// expiredPage checks that the page at want is the broker's "This sign-in
// has expired" page, in the broker's style, and offers no way to sign in.
func expiredPage(tb *tab, d *Demo, name, want string) {
	tb.t.Helper()
	tb.check(name, unlessEqual(run(tb, name+" location", chromedp.Location()), want, name))
	page := run(tb, name, chromedp.Evaluate[[]string](`(() => {
		const h = document.querySelector("h1"), c = document.querySelector("p.code");
		return [h ? h.textContent.trim() : "", c ? c.textContent.trim() : "",
			String(document.querySelectorAll("ul.connectors a, input[type=password]").length)];
	})()`))
	tb.check(name+" heading", unlessEqual(page[0], "This sign-in has expired", name+": the heading"))
	tb.check(name+" code", unlessEqual(page[1], "Error: expired_request", name+": the error code"))
	tb.check(name+" no sign-in", unlessEqual(page[2], "0", name+": connectors or password fields on the page"))
	tb.check(name+" style", brokerStylesheet(tb, d, name+" stylesheet"))
}

// brokerStylesheet checks that the page's stylesheet with rules is the
// broker's style.css: it loaded under the broker's CSP (style-src 'self').
func brokerStylesheet(tb *tab, d *Demo, name string) string {
	tb.t.Helper()
	sheets := run(tb, name, chromedp.Evaluate[[]string](
		`Array.from(document.styleSheets).filter(s => { try { return s.cssRules.length > 0 } catch (e) { return false } }).map(s => s.href || "inline")`))
	want := d.BrokerURL + "/static/style.css"
	if len(sheets) != 1 || sheets[0] != want {
		return fmt.Sprintf("the page's stylesheets with rules are %q, want the broker's %s", sheets, want)
	}
	return ""
}

// pressBack goes one entry back in the tab's history, as the browser's
// Back button does, and waits for the page: a new load, or a page that
// chromium restores from its back/forward cache (which fires no load
// event, so chromedp.NavigateBack would wait for one in vain). It reports
// whether the page came from that cache.
func pressBack(tb *tab, name string) (restored bool) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	done := make(chan bool, 1)
	navigated := false // runs only in the listener's goroutine
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	err := chromedp.Listen(lctx, func(ev any) {
		switch e := ev.(type) {
		case *page.EventFrameNavigated:
			if e.Frame.ParentID != "" {
				return
			}
			if e.Type == page.NavigationTypeBackForwardCacheRestore {
				select {
				case done <- true:
				default:
				}
				return
			}
			navigated = true
		case *page.EventLoadEventFired:
			if navigated {
				select {
				case done <- false:
				default:
				}
			}
		}
	})
	if err == nil {
		var history page.GetNavigationHistoryResult
		history, err = chromedp.Run(ctx, chromedp.NavigationEntries())
		switch {
		case err != nil:
		case history.CurrentIndex < 1 || history.CurrentIndex >= int64(len(history.Entries)):
			err = fmt.Errorf("no page to go back to (history entry %d of %d)", history.CurrentIndex, len(history.Entries))
		default:
			back := history.Entries[history.CurrentIndex-1].ID
			err = chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				_, err := cdp.Call(ctx, t, page.NavigateToHistoryEntry, page.NavigateToHistoryEntryParams{EntryID: back})
				return err
			}))
		}
	}
	if err == nil {
		select {
		case restored = <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	tb.after(name, err)
	return restored
}

// respond runs actions that navigate, as a step, and returns the response
// of the page they lead to (after redirects).
func respond(tb *tab, name string, actions ...chromedp.Action[chromedp.Void]) *network.Response {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	tb.after(name, err)
	return resp
}

// shownJSON returns the text of the JSON document the tab shows.
func shownJSON(tb *tab, name string) string {
	tb.t.Helper()
	return run(tb, name, chromedp.Evaluate[string](`(() => {
		const pre = document.querySelector("body > pre");
		return pre ? pre.textContent : document.body.innerText;
	})()`))
}
