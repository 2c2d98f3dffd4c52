package demo

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var (
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([\w]+)" value="([^"]*)"`)
	formAction  = regexp.MustCompile(`<form[^>]*action="([^"]+)"`)
	subjectRE   = regexp.MustCompile(`Signed in as <code>([^<]+)</code>`)
)

type testBrowser struct {
	t *testing.T
	c *http.Client
}

func newTestBrowser(t *testing.T) *testBrowser {
	jar, _ := cookiejar.New(nil)
	return &testBrowser{t: t, c: &http.Client{Jar: jar}}
}

func (b *testBrowser) do(method, u string, form url.Values) (string, *url.URL) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("%s %s ended at %s with %s: %s", method, u, resp.Request.URL, resp.Status, page)
	}
	return string(page), resp.Request.URL
}

// submit fills the page's first form with its hidden inputs plus fields and
// posts it.
func (b *testBrowser) submit(page string, at *url.URL, fields url.Values) (string, *url.URL) {
	b.t.Helper()
	m := formAction.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("no form on %s: %s", at, page)
	}
	action, err := at.Parse(html.UnescapeString(m[1]))
	if err != nil {
		b.t.Fatal(err)
	}
	form := url.Values{}
	for _, h := range hiddenInput.FindAllStringSubmatch(page, -1) {
		form.Set(h[1], html.UnescapeString(h[2]))
	}
	for k, v := range fields {
		form[k] = v
	}
	return b.do(http.MethodPost, action.String(), form)
}

func startDemo(t *testing.T) *Demo {
	t.Helper()
	d, err := Start(context.Background(), Options{Host: "127.0.0.1"})
	if err != nil {
		t.Fatalf("demo.Start: %v", err)
	}
	t.Cleanup(d.Close)
	return d
}

// TestDemoContoso signs in through the broker at Contoso (OpenID Connect):
// the app keeps the tokens in its session and shows them on its home page,
// Contoso's groups are in them, and the demo API accepts the access token.
func TestDemoContoso(t *testing.T) {
	d := startDemo(t)
	b := newTestBrowser(t)
	page := signInContoso(t, b, d)
	if !strings.Contains(page, "200 OK") || !strings.Contains(page, "alice@example.com") || !strings.Contains(page, `&#34;typ&#34;: &#34;at&#43;jwt&#34;`) {
		t.Fatalf("app page lacks the verified API call or claims: %s", page)
	}
	if n := strings.Count(page, `&#34;contoso-staff&#34;`); n != 3 {
		t.Errorf("Contoso's group appears %d times on the app page, want 3 (ID token, access token, API answer): %s", n, page)
	}
	// The page survives a reload: the tokens are in the app's session.
	again, _ := b.do(http.MethodGet, d.AppURL+"/", nil)
	if m := subjectRE.FindStringSubmatch(again); m == nil || m[1] != subjectRE.FindStringSubmatch(page)[1] {
		t.Errorf("the home page after a reload is not signed in as before: %s", again)
	}
}

// signInContoso signs Alice in at Contoso through the app and returns the
// app's signed-in home page.
func signInContoso(t *testing.T, b *testBrowser, d *Demo) string {
	t.Helper()
	page, at := b.do(http.MethodGet, d.AppURL+"/login?connector_id=contoso", nil)
	if !strings.HasPrefix(at.String(), d.ContosoURL) {
		t.Fatalf("sign-in did not reach Contoso: at %s", at)
	}
	page, at = b.submit(page, at, url.Values{"login": {"alice"}, "password": {"contoso-alice-pw"}})
	if at.String() != d.AppURL+"/" || !subjectRE.MatchString(page) {
		t.Fatalf("after Contoso login at %s: %s", at, page)
	}
	return page
}

// TestDemoLinking: Alice through Fabrikam (SAML) gets the same internal
// subject as Alice through Contoso.
func TestDemoLinking(t *testing.T) {
	d := startDemo(t)
	b := newTestBrowser(t)
	page, at := b.do(http.MethodGet, d.AppURL+"/login?connector_id=contoso", nil)
	page, _ = b.submit(page, at, url.Values{"login": {"alice"}, "password": {"contoso-alice-pw"}})
	viaContoso := subjectRE.FindStringSubmatch(page)
	if viaContoso == nil {
		t.Fatalf("no subject on the app page: %s", page)
	}

	b2 := newTestBrowser(t)
	page, at = b2.do(http.MethodGet, d.AppURL+"/login?connector_id=fabrikam", nil)
	if !strings.HasPrefix(at.String(), d.FabrikamURL) {
		t.Fatalf("sign-in did not reach Fabrikam: at %s", at)
	}
	page, at = b2.submit(page, at, url.Values{"user": {"alice"}, "password": {"fabrikam-alice-pw"}})
	// Fabrikam answers with a form that posts the assertion to the broker.
	if strings.Contains(page, "SAMLResponse") {
		page, at = b2.submit(page, at, nil)
	}
	if at.String() != d.AppURL+"/" {
		t.Fatalf("after Fabrikam login at %s: %s", at, page)
	}
	viaFabrikam := subjectRE.FindStringSubmatch(page)
	if viaFabrikam == nil || viaFabrikam[1] != viaContoso[1] {
		t.Fatalf("subject via Fabrikam = %v, via Contoso = %v: want one linked subject", viaFabrikam, viaContoso)
	}
}
