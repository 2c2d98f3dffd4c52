package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// The console's browser tests drive the admin console that the demo's
// broker serves on its admin listener, in a real chromium at a laptop's
// viewport. Each page they open is saved as a PNG in $SCREENSHOT_DIR (else
// the test's temporary directory); with UPDATE_SCREENSHOTS=1 the pages
// docs/console.md shows are copied to docs/console/ as well.

// consoleWidth and consoleHeight are the laptop viewport of the console's
// tests and screenshots.
const consoleWidth, consoleHeight = 1280, 800

// consoleURL is where the demo's banner says the console is, checked
// against where it runs.
func consoleURL(t *testing.T, d *Demo) string {
	t.Helper()
	var welcome bytes.Buffer
	d.PrintWelcome(&welcome)
	want := d.AdminURL + "/console/"
	if !strings.Contains(welcome.String(), want) {
		t.Fatalf("the demo's welcome does not print the console's URL %s:\n%s", want, welcome.String())
	}
	if !strings.Contains(welcome.String(), d.AdminToken) {
		t.Fatalf("the demo's welcome does not print the admin token:\n%s", welcome.String())
	}
	return want
}

// consoleTab opens a tab in a browser context of its own, at the laptop
// viewport, and signs in to the console with the demo's admin token.
func consoleTab(t *testing.T, browser context.Context, d *Demo, name string) *tab {
	t.Helper()
	tb := newTab(t, browser, name)
	tb.step("laptop viewport", chromedp.EmulateViewport(consoleWidth, consoleHeight))
	tb.step("open the console", chromedp.Navigate(consoleURL(t, d)), chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)))
	tb.check("login page", unlessEqual(run(tb, "login page location", chromedp.Location()), d.AdminURL+"/console/login", "the console without a session"))
	tb.step("sign in with the admin token",
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), d.AdminToken),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)))
	waitJS(tb, "overview", `location.pathname === "/console/" && document.querySelector('a[href="/console/connectors"]') !== null`)
	tb.check("signed in", unlessEqual(run(tb, "overview location", chromedp.Location()), d.AdminURL+"/console/", "after signing in"))
	return tb
}

// consolePage follows the navigation link to path and waits for the
// page's heading; it returns the heading and the text of the page's main
// part.
func consolePage(tb *tab, path string) (heading, text string) {
	tb.t.Helper()
	tb.step("open "+path, chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href=%q]`, path))))
	waitJS(tb, "at "+path, `location.pathname === args[0] && document.readyState === "complete" && document.querySelector("h1") !== null`, path)
	return strings.TrimSpace(run(tb, path+" heading", chromedp.Text(chromedp.CSS("h1")))), pageText(tb, path)
}

// pageText is the text of the page's main part (the whole body when it
// has no main element).
func pageText(tb *tab, name string) string {
	tb.t.Helper()
	return run(tb, name+" text", chromedp.Evaluate[string](`(document.querySelector("main") || document.body).innerText`))
}

// definitions returns the terms and definitions of the page's dl lists
// (the first definition of each term).
func definitions(tb *tab, name string) map[string]string {
	tb.t.Helper()
	return run(tb, name+" definitions", chromedp.Evaluate[map[string]string](`(() => {
		const m = {};
		document.querySelectorAll("main dl > dt").forEach(dt => {
			const t = dt.innerText.trim();
			if (!(t in m) && dt.nextElementSibling) m[t] = dt.nextElementSibling.innerText.trim();
		});
		return m;
	})()`))
}

// waitText waits until the page's main part contains want.
func waitText(tb *tab, name, want string) {
	tb.t.Helper()
	waitJS(tb, name, `(document.querySelector("main") || document.body).innerText.includes(args[0])`, want)
}

// waitJS waits, within stepTimeout, until the JavaScript condition cond
// holds in the tab; cond sees args as the array args. It asks again every
// 100 ms and across navigations (a chromedp.Poll ends with the page it
// started on), so it may follow a click that loads another page.
func waitJS(tb *tab, name, cond string, args ...string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	js, err := json.Marshal(args)
	if err != nil {
		tb.t.Fatal(err)
	}
	expr := fmt.Sprintf(`(() => { const args = %s; try { return !!(%s); } catch (e) { return false; } })()`, js, cond)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			tb.after(name, nil)
			return
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%s did not hold within %s", cond, stepTimeout)
			}
			tb.after(name, err)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// docShots are the screenshots docs/console.md shows.
var docShots = []string{"overview", "connectors", "clients", "people", "person", "audit", "workbench"}

// consoleShot saves the tab's viewport as console-NAME.png in
// $SCREENSHOT_DIR (else a directory of the test) with a full-page
// screenshot beside it; with UPDATE_SCREENSHOTS=1 the viewport's PNG is
// copied to docs/console/NAME.png when docs/console.md shows it.
func consoleShot(tb *tab, name string) {
	tb.t.Helper()
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		dir = tb.t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	// A test sign-in's tab may be in front: a tab behind it draws no
	// frames to capture.
	tb.step("bring to front", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.BringToFront, cdp.Empty{})
		return err
	}))
	png := run(tb, "screenshot "+name, chromedp.CaptureScreenshot())
	full := run(tb, "full screenshot "+name, chromedp.FullScreenshot(100))
	file := filepath.Join(dir, "console-"+name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "console-"+name+"-full.png"), full, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("%s: screenshot %s", name, file)
	if os.Getenv("UPDATE_SCREENSHOTS") != "1" || !slices.Contains(docShots, name) {
		return
	}
	doc := filepath.Join("..", "docs", "console", name+".png")
	if err := os.MkdirAll(filepath.Dir(doc), 0o755); err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(doc, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("%s: copied to %s", name, doc)
}

// TestBrowserConsolePages: the console that the demo prints refuses a
// wrong token, takes the demo's admin token, and shows each page of its
// navigation: the overview with the signing key's algorithm, the
// connectors Contoso and Fabrikam, the demo app among the clients, the
// people search, the audit trail with the sign-ins just made, and the
// mapping workbench.
func TestBrowserConsolePages(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)
	home := consoleURL(t, d)

	tb := newTab(t, browser, "console")
	tb.step("laptop viewport", chromedp.EmulateViewport(consoleWidth, consoleHeight))
	tb.step("open the console", chromedp.Navigate(home), chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)))
	tb.check("login page", unlessEqual(run(tb, "login location", chromedp.Location()), d.AdminURL+"/console/login", "the console without a session"))
	tb.step("type a wrong token", chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), "not-the-token"))
	resp := respond(tb, "submit a wrong token", chromedp.Submit(chromedp.CSS(`input[name="token"]`)))
	tb.check("wrong token refused", unlessEqual(fmt.Sprint(resp.Status), "401", "the status of the login form with a wrong token"))
	waitText(tb, "wrong token refused", "That is not the admin token.")
	tb.check("still at the login page", unlessEqual(run(tb, "refused location", chromedp.Location()), d.AdminURL+"/console/login", "after a wrong token"))
	if n := run(tb, "no navigation", chromedp.Evaluate[int](`document.querySelectorAll('a[href="/console/people"]').length`)); n != 0 {
		tb.check("no navigation", "the login page with a wrong token shows the console's navigation")
	}
	tb.step("sign in with the admin token",
		chromedp.Clear(chromedp.CSS(`input[name="token"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), d.AdminToken),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)))
	waitJS(tb, "overview", `location.pathname === "/console/" && document.querySelector('a[href="/console/connectors"]') !== null`)
	tb.check("overview", unlessEqual(run(tb, "overview location", chromedp.Location()), home, "after signing in"))
	overview := definitions(tb, "overview")
	for term, want := range map[string]string{"Issuer": d.BrokerURL, "Readiness": "ready", "Algorithms (this replica)": "ES256", "In the shared key set": "ES256", "Replicas": "1 seen in the last 45s"} {
		tb.check("overview", unlessEqual(overview[term], want, "the overview's "+term))
	}
	consoleShot(tb, "overview")

	heading, text := consolePage(tb, "/console/connectors")
	tb.check("connectors heading", unlessEqual(heading, "Connectors", "the connectors page's heading"))
	for _, want := range []string{"Contoso (OpenID Connect) (contoso, oidc)", "Fabrikam (SAML) (fabrikam, saml)"} {
		tb.check("connectors", unlessContains(text, want, "the connectors page"))
	}
	// The effective configuration (folded away) names Contoso's issuer
	// and masks the client secret.
	settings := run(tb, "Contoso's settings", chromedp.TextContent(chromedp.CSS(`#connector-contoso details`)))
	tb.check("Contoso's settings", unlessContains(settings, d.ContosoURL, "Contoso's effective configuration"))
	tb.check("Contoso's secret masked", unlessContains(settings, "client_secretset", "Contoso's effective configuration"))
	tb.check("Contoso's secret masked", unlessEqual(fmt.Sprint(strings.Contains(settings, contosoSecret)), "false", "Contoso's client secret shown on the connectors page"))
	consoleShot(tb, "connectors")

	heading, text = consolePage(tb, "/console/clients")
	tb.check("clients heading", unlessEqual(heading, "Clients", "the clients page's heading"))
	for _, want := range []string{"Demo app (demo-app)", "public; authentication: none (public)", d.AppURL + "/callback", "demo-api"} {
		tb.check("clients", unlessContains(text, want, "the clients page"))
	}
	consoleShot(tb, "clients")

	heading, _ = consolePage(tb, "/console/people")
	tb.check("people heading", unlessEqual(heading, "People", "the people page's heading"))
	tb.step("people search field", chromedp.WaitVisible(chromedp.CSS(`input[name="q"]`)))
	consoleShot(tb, "people-empty")

	heading, _ = consolePage(tb, "/console/audit")
	tb.check("audit heading", unlessEqual(heading, "Audit", "the audit page's heading"))
	// The wrong token and the sign-in are in the trail.
	events := run(tb, "audit rows", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("main table tbody tr"), tr => tr.cells[1].innerText.trim() + " " + tr.cells[2].innerText.trim())`))
	for _, want := range [][]string{{"console_sign_in", "admin=token"}, {"admin_auth_failed", "path=/console/login"}} {
		if !slices.ContainsFunc(events, func(e string) bool { return strings.HasPrefix(e, want[0]+" ") && strings.Contains(e, want[1]) }) {
			tb.check("audit trail", fmt.Sprintf("the audit page lists %q, want %s with %s", events, want[0], want[1]))
		}
	}
	// Browsing the console is no failed authentication: the browser asks
	// for no /favicon.ico of the admin API.
	if slices.ContainsFunc(events, func(e string) bool { return strings.Contains(e, "/favicon.ico") }) {
		tb.check("audit trail", fmt.Sprintf("the audit page lists failed authentications for the browser's favicon requests: %q", events))
	}

	heading, _ = consolePage(tb, "/console/actions")
	tb.check("actions heading", unlessEqual(heading, "Actions", "the actions page's heading"))
	forms := run(tb, "actions", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("main form h2"), h => h.innerText.trim())`))
	tb.check("actions", unlessEqual(fmt.Sprint(forms), "[Reload the configuration Rotate the signing keys Revoke a person's tokens Remove an identity link]", "the actions offered"))
	consoleShot(tb, "actions")

	heading, _ = consolePage(tb, "/console/workbench")
	tb.check("workbench heading", unlessEqual(heading, "Mapping workbench", "the workbench's heading"))
	targets := run(tb, "workbench targets", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#wb-target option"), o => o.value)`))
	for _, want := range []string{"connector:contoso", "connector:fabrikam"} {
		if !slices.Contains(targets, want) {
			tb.check("workbench targets", fmt.Sprintf("the workbench offers %q, want %q among them", targets, want))
		}
	}
	assertNoCSPViolations(t, tb)
}

// TestBrowserConsoleSignOutEverywhere: Alice signs in to the demo app
// through Contoso. In the console, People finds her by her email; her page
// lists her session with the demo app; "Sign out everywhere" does nothing
// until its confirmation is ticked, then ends the session: her page lists
// none, the audit trail names the admin's action, and the demo app's open
// page says that its session ended.
func TestBrowserConsoleSignOutEverywhere(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)

	app := newTab(t, browser, "app")
	openChooser(app, d)
	app.step("choose Contoso", chromedp.Click(connectorLink("Contoso (OpenID Connect)")))
	signInAtContoso(app, "alice", "contoso-alice-pw")
	alice := assertSignedIn(app, d, "alice@example.com", "contoso-staff")

	tb := consoleTab(t, browser, d, "console")
	heading, _ := consolePage(tb, "/console/people")
	tb.check("people heading", unlessContains(heading, "People", "the people page's heading"))
	tb.step("search for Alice",
		chromedp.SendKeys(chromedp.CSS(`input[name="q"]`), "alice@example.com"),
		chromedp.Submit(chromedp.CSS(`input[name="q"]`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`a[href*=%q]`, "sub="+alice))))
	text := pageText(tb, "search results")
	for _, want := range []string{alice, "alice@example.com", "contoso"} {
		tb.check("search results", unlessContains(text, want, "the people search for alice@example.com"))
	}
	consoleShot(tb, "people")

	tb.step("open Alice's page", chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href*=%q]`, "sub="+alice))))
	waitJS(tb, "Alice's page", `location.pathname === "/console/person" && document.querySelector('form[action$="/person/signout"]') !== null`)
	tb.check("Alice's page", unlessEqual(run(tb, "Alice's heading", chromedp.Text(chromedp.CSS("h1"))), "Person "+alice, "the heading of Alice's page"))
	tb.check("Alice's link", unlessContains(pageText(tb, "Alice's page"), "alice@example.com — contoso:", "Alice's linked identities"))
	sessions := run(tb, "Alice's sessions", chromedp.Evaluate[[]map[string]string](sessionsJS))
	if len(sessions) != 1 || sessions[0]["Clients"] != "demo-app" || !strings.HasSuffix(sessions[0]["heading"], "via contoso") {
		tb.check("Alice's session", fmt.Sprintf("Alice's page lists the sessions %v, want one via contoso with the client demo-app", sessions))
	}
	consoleShot(tb, "person")
	personURL := run(tb, "Alice's page location", chromedp.Location())

	// A claim missing from the session's ID token leads to the workbench,
	// for the session's connector.
	tb.step("open the session's claims", chromedp.Click(chromedp.CSS(`article.session details summary`)),
		chromedp.WaitVisible(chromedp.CSS(`article.session details a[href*="/console/workbench"]`)))
	idClaims := run(tb, "the session's claims", chromedp.Text(chromedp.CSS(`article.session details table`)))
	tb.check("the session's claims", unlessContains(idClaims, "groups\t[\"contoso-staff\"]", "the claims of Alice's session"))
	tb.step("try the mapping in the workbench", chromedp.Click(chromedp.CSS(`article.session details a[href*="/console/workbench"]`)))
	waitJS(tb, "workbench for contoso", `location.pathname === "/console/workbench" && document.getElementById("wb-target") !== null`)
	tb.check("workbench target", unlessEqual(run(tb, "workbench target", chromedp.Value(chromedp.ID("wb-target"))), "connector:contoso", "the workbench's connector, opened from Alice's session"))
	tb.check("workbench hint", unlessContains(pageText(tb, "workbench"), "press Test sign-in and sign in as them", "the workbench opened from Alice's session"))
	tb.step("back to Alice's page", chromedp.Navigate(personURL))
	waitJS(tb, "Alice's page again", `location.pathname === "/console/person" && document.querySelector("article.session") !== null`)

	// The form that ends every session (it names no sid).
	everywhere := `form[action$="/person/signout"]:not(:has(input[name="sid"]))`
	if n := run(tb, "sign-out-everywhere form", chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, everywhere))); n != 1 {
		tb.check("sign-out-everywhere form", fmt.Sprintf("Alice's page has %d forms that sign her out everywhere, want 1", n))
	}
	tb.check("button", unlessEqual(run(tb, "button", chromedp.Text(chromedp.CSS(everywhere+` button[type="submit"]`))), "Sign out everywhere", "the form's button"))
	// Unconfirmed, the browser does not send the form.
	tb.step("sign out everywhere, unconfirmed", chromedp.Click(chromedp.CSS(everywhere+` button[type="submit"]`)))
	missing := run(tb, "confirmation required", chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q).validity.valueMissing`, everywhere+` input[name="confirm"]`)))
	tb.check("confirmation required", unlessEqual(fmt.Sprint(missing), "true", "the confirmation box's valueMissing after pressing the button unticked"))
	tb.check("not signed out", unlessEqual(fmt.Sprint(len(brokerSessions(t, d, alice))), "1", "Alice's sessions after pressing the button unticked"))

	tb.step("sign out everywhere, confirmed",
		chromedp.Click(chromedp.CSS(everywhere+` input[name="confirm"]`)),
		chromedp.Click(chromedp.CSS(everywhere+` button[type="submit"]`)))
	waitText(tb, "sessions ended", "Ended 1 session; the applications were told.")
	tb.check("no session left", unlessEqual(fmt.Sprint(run(tb, "sessions left", chromedp.Evaluate[[]map[string]string](sessionsJS))), "[]", "the sessions Alice's page lists after signing her out"))
	tb.check("no session left", unlessContains(pageText(tb, "Alice's page after the sign-out"), "No live sessions.", "Alice's page after the sign-out"))
	if got := brokerSessions(t, d, alice); len(got) != 0 {
		t.Errorf("the broker still has %d sessions of Alice", len(got))
	}
	consoleShot(tb, "person-signed-out")

	consolePage(tb, "/console/audit")
	waitText(tb, "audit names the sign-out", "admin_end_sessions")
	tb.check("audit names Alice", unlessContains(pageText(tb, "audit"), alice, "the audit trail after the sign-out"))
	consoleShot(tb, "audit")

	assertSessionEndedOnPage(app, d)
	assertNoCSPViolations(t, tb, app)
}

// sessionsJS lists the sessions a person's page shows: each one's heading
// and its details by term.
const sessionsJS = `Array.from(document.querySelectorAll("article.session"), a => {
	const s = {heading: a.querySelector("h3").innerText.trim()};
	a.querySelectorAll("dl > dt").forEach(dt => { s[dt.innerText.trim()] = dt.nextElementSibling.innerText.trim(); });
	return s;
})`

// startTestSignIn presses the workbench's "Test sign-in" button and
// returns the tab it opens, once that tab has gone through the broker's
// login to the upstream's page under upstreamURL. (Attached any earlier,
// while the new tab still loads the form's POST, chromium leaves it at
// about:blank on a busy machine.)
func startTestSignIn(tb *tab, connector, upstreamURL string) *tab {
	tb.t.Helper()
	tb.check("Test sign-in button", unlessEqual(run(tb, "Test sign-in target", chromedp.Evaluate[string](`document.getElementById("wb-test").formTarget`)), "_blank", "the Test sign-in button's formtarget"))
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	opened := chromedp.WaitNewTarget(ctx, func(info *target.Info) bool {
		return info.Type == "page" && strings.HasPrefix(info.URL, upstreamURL+"/")
	})
	tb.step("press Test sign-in ("+connector+")", chromedp.Click(chromedp.ID("wb-test")))
	var id target.ID
	select {
	case id = <-opened:
	case <-ctx.Done():
	}
	if id == "" {
		tb.check("test sign-in tab", "pressing Test sign-in opened no tab that reached "+upstreamURL)
	}
	return openTab(tb.t, tb.ctx, "test-"+connector, chromedp.WithTargetID(id))
}

// testSignInComplete waits for the test sign-in tab's last page: the
// broker's "Test sign-in complete", which says that no session was
// started.
func testSignInComplete(tb *tab, d *Demo, connectorName string) {
	tb.t.Helper()
	waitJS(tb, "test sign-in complete", `document.querySelector("h1").textContent.trim() === "Test sign-in complete"`)
	tb.check("test sign-in page", unlessPrefix(run(tb, "test sign-in page location", chromedp.Location()), d.BrokerURL+"/", "the page that ends a test sign-in"))
	text := pageText(tb, "test sign-in page")
	tb.check("test sign-in page", unlessContains(text, connectorName+" signed in", "the test sign-in page"))
	tb.check("test sign-in page", unlessContains(text, "no session was started and no token was issued", "the test sign-in page"))
}

// loadedTestSignIn waits until the workbench, which watches its test
// sign-ins, has loaded the finished one and shows its result.
func loadedTestSignIn(tb *tab, connector string) {
	tb.t.Helper()
	waitText(tb, "test sign-in loaded ("+connector+")", "Loaded the test sign-in with "+connector)
	tb.step("result shown", chromedp.WaitVisible(chromedp.ID("wb-result-h")))
}

// ruleRow is one row of the workbench's table of rules.
type ruleRow struct {
	Path, Expr, Result, Value string
}

func ruleRows(tb *tab, name string) map[string]ruleRow {
	tb.t.Helper()
	rows := run(tb, name, chromedp.Evaluate[[]ruleRow](`Array.from(document.querySelectorAll(".wb-result table.wb-rules tbody tr"), tr => {
		const td = tr.querySelectorAll("td");
		return {Path: td[0].innerText.trim(), Expr: td[1].innerText.trim(), Result: td[2].innerText.trim(), Value: td[3].innerText.trim()};
	})`))
	out := make(map[string]ruleRow, len(rows))
	for _, r := range rows {
		out[r.Path] = r
	}
	return out
}

// TestBrowserConsoleWorkbenchContoso: in the mapping workbench an admin
// runs a test sign-in through Contoso as Bob. The new tab goes through the
// broker's login to Contoso's form and ends on the broker's "Test sign-in
// complete" page, with no session and no link made; the workbench loads
// what Contoso sent and shows every rule's result and the tokens the demo
// app would get, which tell why Bob's groups are missing from his token.
// Bob's claims are saved as a sample; a draft with a typo is reported at
// its line and column as it is typed and when the form is sent; a valid
// draft that keeps his groups (prefixed with "contoso-") is compared with
// the sample and the difference is shown. People then finds no Bob.
func TestBrowserConsoleWorkbenchContoso(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)

	tb := consoleTab(t, browser, d, "workbench")
	consolePage(tb, "/console/workbench")
	tb.step("choose Contoso and the demo app",
		chromedp.SetValue(chromedp.ID("wb-target"), "connector:contoso"),
		chromedp.SetValue(chromedp.ID("wb-client"), "demo-app"))

	signin := startTestSignIn(tb, "contoso", d.ContosoURL)
	signin.step("Contoso's login form", chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)))
	signin.check("Contoso's login form", unlessPrefix(run(signin, "login form location", chromedp.Location()), d.ContosoURL+"/", "the test sign-in's login form"))
	signInAtContoso(signin, "bob", "contoso-bob-pw")
	testSignInComplete(signin, d, "Contoso (OpenID Connect)")

	loadedTestSignIn(tb, "contoso")
	claims := run(tb, "upstream claims", chromedp.Value(chromedp.ID("wb-claims")))
	tb.check("upstream claims", unlessContains(claims, `"bob@contoso.example"`, "the claims Contoso sent for Bob"))
	rules := ruleRows(tb, "rules")
	tb.check("email rule", unlessContains(rules["claims.email"].Value, "bob@contoso.example", "the value of claims.email"))
	assertBobsGroupsReason(tb, claims, rules)
	consoleShot(tb, "workbench")
	// The test sign-in made no link (and so no session) for Bob.
	links, err := d.Broker.Store.ListLinks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.Contains(l.Key, "bob") {
			t.Errorf("the test sign-in linked Bob: %+v", l)
		}
	}

	// Bob's claims become a sample of this session.
	tb.step("save Bob as a sample",
		chromedp.SendKeys(chromedp.ID("wb-sample-name"), "bob"),
		chromedp.Click(chromedp.CSS(`button[name="action"][value="save"]`)))
	waitText(tb, "sample saved", `Saved sample "bob"`)

	// A typo in the draft, typed: the script reports it at its place.
	pos := run(tb, "select the groups expression", chromedp.Evaluate[[]int](`(() => {
		const ta = document.getElementById("wb-draft");
		const i = ta.value.indexOf("claims.?groups");
		if (i < 0) return [];
		ta.focus();
		ta.setSelectionRange(i, i + "claims".length);
		const before = ta.value.slice(0, i).split("\n");
		return [before.length, before[before.length - 1].length + 1];
	})()`))
	if len(pos) != 2 {
		tb.check("draft", "the draft has no claims.?groups expression to edit")
	}
	at := fmt.Sprintf("%d:%d", pos[0], pos[1])
	tb.step("type a typo", chromedp.KeyEvent("clams"))
	tb.step("problem shown as typed", chromedp.WaitVisible(chromedp.CSS(`#wb-problems button.wb-pos`)))
	shown := run(tb, "problem position", chromedp.Text(chromedp.CSS(`#wb-problems button.wb-pos`)))
	tb.check("problem position (script)", unlessEqual(shown, at, "the position the script reports"))
	tb.check("problem message (script)", unlessContains(run(tb, "problem", chromedp.Text(chromedp.CSS(`#wb-problems li`))), `unknown name "clams"`, "the problem the script reports"))
	// The position is a button that puts the caret there.
	tb.step("go to the problem", chromedp.Click(chromedp.CSS(`#wb-problems button.wb-pos`)))
	caret := run(tb, "caret", chromedp.Evaluate[string](`(() => {
		const ta = document.getElementById("wb-draft");
		const before = ta.value.slice(0, ta.selectionStart).split("\n");
		return before.length + ":" + (before[before.length - 1].length + 1);
	})()`))
	tb.check("caret at the problem", unlessEqual(caret, at, "the caret after pressing the position"))

	// The same draft sent with the form: the server reports it too.
	tb.step("evaluate the draft with the form", chromedp.Click(chromedp.CSS(`button[name="action"][value="evaluate"]`)),
		chromedp.WaitVisible(chromedp.ID("wb-error")))
	tb.check("not evaluated", unlessContains(run(tb, "form error", chromedp.Text(chromedp.ID("wb-error"))), "does not compile", "the form's error"))
	tb.step("problem shown by the server", chromedp.WaitVisible(chromedp.CSS(`#wb-problems span.wb-pos`)))
	tb.check("problem position (form)", unlessEqual(run(tb, "server problem position", chromedp.Text(chromedp.CSS(`#wb-problems span.wb-pos`))), at, "the position the server reports"))
	tb.check("problem message (form)", unlessContains(run(tb, "server problem", chromedp.Text(chromedp.CSS(`#wb-problems li`))), `unknown name "clams"`, "the problem the server reports"))
	tb.check("draft kept", unlessContains(run(tb, "draft kept", chromedp.Value(chromedp.ID("wb-draft"))), "clams.?groups", "the draft after sending the form"))

	// A valid draft that keeps every group, prefixing Contoso's name where
	// it is missing, differs from the running mapping on Bob's sample.
	tb.step("write a valid draft", chromedp.Evaluate[chromedp.Void](`(() => {
		const ta = document.getElementById("wb-draft");
		const at = ta.value.indexOf("clams.?groups");
		const start = ta.value.lastIndexOf("groups: ", at) + "groups: ".length;
		const end = ta.value.indexOf("\n", at);
		ta.focus();
		ta.setSelectionRange(start, end < 0 ? ta.value.length : end);
	})()`), chromedp.KeyEvent(`'claims.?groups.orValue([]).map(g, string(g).startsWith("contoso-") ? string(g) : "contoso-" + string(g))'`))
	tb.step("the draft compiles", chromedp.WaitVisible(chromedp.CSS(`#wb-problems .wb-ok`)))
	tb.step("compare with the samples", chromedp.Click(chromedp.CSS(`button[name="action"][value="compare"]`)),
		chromedp.WaitVisible(chromedp.ID("wb-compare-h")))
	waitText(tb, "comparison", "1 of 1 samples differ between the draft and the running mapping.")
	cmp := run(tb, "comparison table", chromedp.Text(chromedp.CSS(`.wb-compare table`)))
	for _, want := range []string{"bob", "differs", `"contoso-sales"`, `"contoso-emea-partners"`} {
		tb.check("comparison", unlessContains(cmp, want, "the comparison of the draft with Bob's sample"))
	}
	consoleShot(tb, "workbench-compare")

	// Nor does the console know Bob as a person.
	consolePage(tb, "/console/people")
	tb.step("search for Bob",
		chromedp.SendKeys(chromedp.CSS(`input[name="q"]`), "bob@contoso.example"),
		chromedp.Submit(chromedp.CSS(`input[name="q"]`)))
	waitText(tb, "nobody found", "No one matches “bob@contoso.example”.")
	assertNoCSPViolations(t, tb, signin)
}

// assertBobsGroupsReason checks that the workbench, showing Bob's test
// sign-in through Contoso, says why his token has no groups: Contoso sent
// his groups (sales, emea-partners, as its sales department names them),
// and the contoso mapping's claims.groups rule keeps only the groups named
// "contoso-...", so its value is empty and no token the demo app would
// get carries any of them.
func assertBobsGroupsReason(tb *tab, claims string, rules map[string]ruleRow) {
	tb.t.Helper()
	for _, want := range []string{`"sales"`, `"emea-partners"`} {
		tb.check("Contoso sent groups", unlessContains(claims, want, "the claims Contoso sent for Bob"))
	}
	g, ok := rules["claims.groups"]
	if !ok {
		tb.check("groups rule", fmt.Sprintf("the rules table has no claims.groups row: %v", rules))
	}
	tb.check("groups rule", unlessContains(g.Expr, `filter(g, string(g).startsWith("contoso-"))`, "the expression of claims.groups"))
	tb.check("groups rule", unlessEqual(g.Result, "value", "the result of claims.groups"))
	tb.check("groups rule", unlessPrefix(g.Value, "[]", "the value of claims.groups"))
	tokens := run(tb, "token preview", chromedp.Evaluate[string](`document.querySelector(".wb-result").innerText.split("Linking decision")[1]`))
	tb.check("token preview", unlessContains(tokens, "Tokens client demo-app would receive (scopes: openid profile email groups)", "the tokens the demo app would receive"))
	for _, group := range []string{"sales", "emea-partners"} {
		tb.check("token preview", unlessEqual(fmt.Sprint(strings.Contains(tokens, group)), "false", "Bob's group "+group+" in the tokens the demo app would receive"))
	}
	tb.step("scroll to the rules", chromedp.Evaluate[chromedp.Void](`document.querySelector(".wb-result .wb-scroll").previousElementSibling.scrollIntoView({block: "start"})`))
}

// TestBrowserConsoleWorkbenchFabrikam: a test sign-in through Fabrikam
// (SAML) from the workbench ends on the broker's "Test sign-in complete"
// page; the workbench shows Fabrikam's attributes and the mapping's
// result for Carol.
func TestBrowserConsoleWorkbenchFabrikam(t *testing.T) {
	browser := newBrowser(t)
	d := startDemo(t)

	tb := consoleTab(t, browser, d, "workbench")
	consolePage(tb, "/console/workbench")
	tb.step("choose Fabrikam", chromedp.SetValue(chromedp.ID("wb-target"), "connector:fabrikam"),
		chromedp.SetValue(chromedp.ID("wb-client"), "demo-app"))
	signin := startTestSignIn(tb, "fabrikam", d.FabrikamURL)
	signin.step("Fabrikam's login form", chromedp.WaitVisible(chromedp.CSS(`input[name="user"]`)))
	signin.check("Fabrikam's login form", unlessPrefix(run(signin, "login form location", chromedp.Location()), d.FabrikamURL+"/", "the test sign-in's login form"))
	signInAtFabrikam(signin, "carol", "fabrikam-carol-pw")
	testSignInComplete(signin, d, "Fabrikam (SAML)")
	signin.check("SAML POST binding", postedField(signin.documentRequests(), d.FabrikamURL+"/", d.BrokerURL+"/callback/fabrikam", "SAMLResponse"))

	loadedTestSignIn(tb, "fabrikam")
	tb.check("target", unlessEqual(run(tb, "target", chromedp.Value(chromedp.ID("wb-target"))), "connector:fabrikam", "the workbench's target after loading"))
	claims := run(tb, "upstream attributes", chromedp.Value(chromedp.ID("wb-claims")))
	for _, want := range []string{"urn:oid:0.9.2342.19200300.100.1.3", "carol@fabrikam.example", "fabrikam-staff"} {
		tb.check("upstream attributes", unlessContains(claims, want, "the attributes Fabrikam sent for Carol"))
	}
	rules := ruleRows(tb, "rules")
	tb.check("email rule", unlessContains(rules["claims.email"].Value, "carol@fabrikam.example", "the value of claims.email"))
	tb.check("groups rule", unlessContains(rules["claims.groups"].Value, "fabrikam-staff", "the value of claims.groups"))
	tb.check("link rule", unlessContains(rules["link"].Value, "carol@fabrikam.example", "the value of link"))
	tb.check("decision", unlessContains(run(tb, "decision", chromedp.Text(chromedp.CSS(".wb-decision"))), "Accepted", "the mapping's decision"))
	consoleShot(tb, "workbench-fabrikam")
	assertNoCSPViolations(t, tb, signin)
}
