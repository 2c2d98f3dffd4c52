package demo

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// heldIDToken returns the ID token of the app's one session.
func heldIDToken(t *testing.T, a *App) string {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.sessions) != 1 {
		t.Fatalf("the app has %d sessions, want 1", len(a.sessions))
	}
	for _, s := range a.sessions {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.idToken
	}
	return ""
}

// signOut presses the tokens page's "Sign out" button and returns where
// the browser ended and every URL it was redirected to on the way.
func signOut(t *testing.T, b *testBrowser, d *Demo, page string) (string, *url.URL, []*url.URL) {
	t.Helper()
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no sign-out form on the page: %s", page)
	}
	var via []*url.URL
	b.c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		via = append(via, req.URL)
		return nil
	}
	defer func() { b.c.CheckRedirect = nil }()
	end, at := b.do(http.MethodPost, d.AppURL+"/logout", url.Values{"csrf": {m[1]}})
	return end, at, via
}

// assertSignedOutEverywhere: the app shows its sign-in button, and signing
// in again stops at the broker's chooser (no SSO session left).
func assertSignedOutEverywhere(t *testing.T, b *testBrowser, d *Demo) {
	t.Helper()
	page, _ := b.do(http.MethodGet, d.AppURL+"/", nil)
	if subjectRE.MatchString(page) || !strings.Contains(page, `id="signin"`) {
		t.Errorf("the app is still signed in after signing out: %s", page)
	}
	page, at := b.do(http.MethodGet, d.AppURL+"/login", nil)
	if !strings.HasPrefix(at.String(), d.BrokerURL+"/login?req=") || !strings.Contains(page, `class="connectors"`) {
		t.Errorf("signing in again after signing out ended at %s, want the broker's chooser: %s", at, page)
	}
}

// TestDemoSignOutRefreshesHint: "Sign out" with an ID token close to its
// expiry refreshes it first, so the broker gets a valid id_token_hint of
// the browser's session, ends it at once and sends the browser back to the
// app's home page with the app's state; the app's refresh token is
// revoked.
func TestDemoSignOutRefreshesHint(t *testing.T) {
	d := startDemo(t)
	b := newTestBrowser(t)
	signInContoso(t, b, d)
	// From here on every token counts as about to expire.
	d.app.margin.Store(int64(6 * time.Minute))
	page, _ := b.do(http.MethodGet, d.AppURL+"/", nil)
	held := heldIDToken(t, d.app)
	var sess *appSession
	d.app.mu.Lock()
	for _, s := range d.app.sessions {
		sess = s
	}
	d.app.mu.Unlock()

	page, at, via := signOut(t, b, d, page)
	if !strings.HasPrefix(at.String(), d.AppURL+"/?state=") || !strings.Contains(page, `id="signed-out"`) {
		t.Fatalf("after Sign out at %s, want the app's home page saying so: %s", at, page)
	}
	var hint string
	for _, u := range via {
		if strings.HasPrefix(u.String(), d.BrokerURL+"/logout?") {
			hint = u.Query().Get("id_token_hint")
			if got := u.Query().Get("post_logout_redirect_uri"); got != d.AppURL+"/" {
				t.Errorf("post_logout_redirect_uri = %q, want %q", got, d.AppURL+"/")
			}
		}
	}
	switch {
	case hint == "":
		t.Fatalf("the browser never went to the broker's end_session_endpoint with a hint: %v", via)
	case hint == held:
		t.Errorf("the hint is the ID token held before signing out, want a refreshed one")
	}
	// The app revoked its last refresh token (the one the refresh for the
	// hint returned).
	sess.mu.Lock()
	last := sess.token.RefreshToken
	sess.mu.Unlock()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {last}, "client_id": {"demo-app"}}
	resp, err := http.PostForm(d.BrokerURL+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.String(), "invalid_grant") {
		t.Errorf("refresh with the app's refresh token after signing out: %s %s, want 400 invalid_grant", resp.Status, body)
	}
	assertSignedOutEverywhere(t, b, d)
}

// TestDemoSignOutWithoutValidHint: with no valid ID token to send (it has
// expired and there is no refresh token), "Sign out" still ends the app's
// session at once; the broker, without a hint, asks for confirmation and
// then shows its own "signed out" page (it may not redirect without a valid
// hint), and its session is gone too.
func TestDemoSignOutWithoutValidHint(t *testing.T) {
	d := startDemo(t)
	b := newTestBrowser(t)
	page := signInContoso(t, b, d)
	d.app.mu.Lock()
	for _, s := range d.app.sessions {
		s.mu.Lock()
		s.token.RefreshToken = ""
		s.mu.Unlock()
	}
	d.app.mu.Unlock()
	d.app.skew.Store(int64(10 * time.Minute)) // the ID token has expired
	page, at, _ := signOut(t, b, d, page)
	d.app.skew.Store(0)
	if !strings.HasPrefix(at.String(), d.BrokerURL+"/logout?") || at.Query().Get("id_token_hint") != "" || at.Query().Get("post_logout_redirect_uri") != "" {
		t.Fatalf("sign-out without a valid hint went to %s, want the broker's end_session_endpoint without hint or redirect", at)
	}
	if !strings.Contains(page, "Sign out?") {
		t.Fatalf("the broker did not ask for confirmation: %s", page)
	}
	// The app's session ended before the broker asked.
	if home, _ := b.do(http.MethodGet, d.AppURL+"/", nil); subjectRE.MatchString(home) {
		t.Errorf("the app is still signed in while the broker asks: %s", home)
	}
	page, _ = b.submit(page, at, nil)
	if !strings.Contains(page, "<h1>Signed out</h1>") {
		t.Fatalf("after confirming at the broker: %s", page)
	}
	assertSignedOutEverywhere(t, b, d)
}

// TestAppErrorPage: the app shows a broker's error response with its
// error_description, HTML-escaped, and a "Try again" link; access_denied
// (the person cancelled at the broker) reads as a cancelled sign-in.
func TestAppErrorPage(t *testing.T) {
	a := NewApp("http://127.0.0.1:1", "demo-app", "http://127.0.0.1:2", "http://127.0.0.1:3", http.DefaultClient, slog.New(slog.DiscardHandler))
	rec := httptest.NewRecorder()
	a.refused(rec, "access_denied", `You cancelled <b>the</b> "sign-in"`)
	body := rec.Body.String()
	for _, want := range []string{
		`Sign-in cancelled`,
		`<code id="error-code">access_denied</code>`,
		`<span id="error-description">You cancelled &lt;b&gt;the&lt;/b&gt; &#34;sign-in&#34;</span>`,
		`<a class="button" id="retry" href="/login">Try again</a>`,
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("error page lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<b>") {
		t.Errorf("error_description not escaped:\n%s", body)
	}

	rec = httptest.NewRecorder()
	a.refused(rec, "invalid_scope", "scope x is not allowed")
	if body := rec.Body.String(); !strings.Contains(body, "Sign-in failed") || !strings.Contains(body, "scope x is not allowed") {
		t.Errorf("error page for invalid_scope:\n%s", body)
	}
}

// TestAppCallbackOtherBrowser: an authorization response carried to another
// browser than the one that started the sign-in is refused (login CSRF),
// and so is a reused one.
func TestAppCallbackOtherBrowser(t *testing.T) {
	d := startDemo(t)
	get := func(b *testBrowser, u string) (int, string, *url.URL) {
		t.Helper()
		resp, err := b.c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body := new(bytes.Buffer)
		_, _ = body.ReadFrom(resp.Body)
		return resp.StatusCode, body.String(), resp.Request.URL
	}
	b := newTestBrowser(t)
	status, page, at := get(b, d.AppURL+"/login?connector_id=no-such-idp")
	if status != http.StatusBadRequest || !strings.Contains(page, "unknown or disallowed connector_id") {
		t.Fatalf("at %s: %d %s", at, status, page)
	}
	for _, c := range []*testBrowser{newTestBrowser(t), b} {
		status, page, _ := get(c, at.String())
		if status != http.StatusBadGateway || !strings.Contains(page, "does not belong to a sign-in this browser started") {
			t.Errorf("replayed callback: %d %s", status, page)
		}
	}
}

// TestAppLogLine: the app's log lines have one msg key (the message), not
// a second one from an attribute.
func TestAppLogLine(t *testing.T) {
	var buf bytes.Buffer
	a := NewApp("http://127.0.0.1:1", "demo-app", "http://127.0.0.1:2", "http://127.0.0.1:3", http.DefaultClient, slog.New(slog.NewJSONHandler(&buf, nil)))
	a.fail(httptest.NewRecorder(), "The code could not be exchanged for tokens", errors.New("boom"))
	line := buf.String()
	if n := strings.Count(line, `"msg":`); n != 1 {
		t.Errorf("log line has %d msg keys, want 1: %s", n, line)
	}
	if !strings.Contains(line, `"msg":"demo app: The code could not be exchanged for tokens"`) || !strings.Contains(line, `"err":"boom"`) {
		t.Errorf("log line: %s", line)
	}
}
