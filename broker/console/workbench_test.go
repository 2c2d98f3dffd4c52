package console

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

const wbToken = "workbench-test-token-0123456789"

// wbConfig is Bob's story: Contoso sends Bob's groups, the mapping passes
// them on, and the app's client may not ask for the groups scope, so his
// tokens have none.
const wbConfig = `
issuer: https://broker.test
storage: {type: memory}
connectors:
  - id: contoso
    type: local
    name: Contoso
    mapping: contoso
    config:
      users:
        - {username: bob, password_hash: "$2a$04$J4oZ5bWvX1JvS7mLr7cQnOe0l3HZ2c3Xx0rEJxq3Zo4iG0gk1n5tK", email: bob@contoso.example, name: Bob, groups: [contoso-staff]}
mappings:
  contoso:
    require:
      - expr: 'claims.?email.orValue("") != ""'
        message: Your account has no email address.
    claims:
      email: claims.?email
      groups: claims.?groups
clients:
  - id: demo-app
    name: Demo app
    public: true
    redirect_uris: ["http://127.0.0.1:5555/callback"]
    scopes: [openid, profile, email]
`

type wbClient struct {
	t    *testing.T
	srv  *httptest.Server
	http *http.Client
	csrf string
}

func newWorkbenchConsole(t *testing.T) (*wbClient, storage.Storage) {
	t.Helper()
	cfg, err := config.Parse([]byte(wbConfig), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.Compile(context.Background(), cfg, runtime.Deps{Issuer: cfg.Issuer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	store := memory.New()
	c := New(Deps{
		Issuer:      cfg.Issuer,
		Runtime:     func() *runtime.Runtime { return rt },
		Config:      func() *config.Config { return cfg },
		Store:       store,
		Audit:       observe.NewAudit(nil),
		Credentials: admin.NewCredentials(admin.Options{Token: wbToken}),
	})
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	cl := &wbClient{t: t, srv: srv, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	resp, err := cl.http.PostForm(srv.URL+Prefix+"/login", url.Values{"token": {wbToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login = %d", resp.StatusCode)
	}
	status, body := cl.get(Prefix + "/workbench")
	if status != http.StatusOK {
		t.Fatalf("GET workbench = %d: %s", status, body)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field: %s", body)
	}
	cl.csrf = m[1]
	return cl, store
}

func (c *wbClient) get(path string) (int, string) {
	c.t.Helper()
	resp, err := c.http.Get(c.srv.URL + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *wbClient) post(path string, form url.Values, header map[string]string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func bobForm(action string) url.Values {
	return url.Values{
		"target": {"connector:contoso"}, "client": {"demo-app"}, "scopes": {"openid email"},
		"claims": {`{"sub": "bob", "email": "bob@contoso.example", "groups": ["contoso-staff"]}`},
		"action": {action},
	}
}

func TestWorkbenchPage(t *testing.T) {
	c, _ := newWorkbenchConsole(t)
	_, body := c.get(Prefix + "/workbench")
	for _, want := range []string{
		`<label for="wb-claims">`, `<label for="wb-draft">`, `<label for="wb-target">`,
		`name="claims_file"`, `formtarget="_blank"`,
		"groups: claims.?groups", // the running mapping is the draft
		`/console/static/workbench.js`,
	} {
		if !strings.Contains(html.UnescapeString(body), want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("the page has an inline script")
	}
	if status, js := c.get(Prefix + "/static/workbench.js"); status != http.StatusOK || !strings.Contains(js, "X-CSRF-Token") {
		t.Errorf("workbench.js = %d", status)
	}
}

func TestWorkbenchPostsNeedCSRF(t *testing.T) {
	c, _ := newWorkbenchConsole(t)
	for _, path := range []string{"/workbench", "/workbench/compile", "/workbench/test-signin"} {
		resp, _ := c.post(Prefix+path, bobForm("evaluate"), nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without csrf = %d, want 403", path, resp.StatusCode)
		}
		form := bobForm("evaluate")
		form.Set("csrf", "wrong")
		if resp, _ := c.post(Prefix+path, form, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s with a wrong csrf = %d, want 403", path, resp.StatusCode)
		}
	}
}

// Bob's groups are missing from his token: the workbench shows that the
// upstream sent them, the mapping kept them, and the client's scopes
// withhold them.
func TestWorkbenchEvaluateShowsWhyGroupsAreMissing(t *testing.T) {
	c, _ := newWorkbenchConsole(t)
	form := bobForm("running")
	form.Set("csrf", c.csrf)
	resp, body := c.post(Prefix+"/workbench", form, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("evaluate = %d: %s", resp.StatusCode, body)
	}
	text := html.UnescapeString(body)
	for _, want := range []string{
		"Accepted",
		"require[0].expr", "passed",
		"claims.groups", `["contoso-staff"]`,
		"withheld from the ID token: needs the groups scope, which was not asked for",
		"Tokens client demo-app would receive",
		`"aud": "demo-app"`,
		"Linking decision",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("result lacks %q", want)
		}
	}
	// Asking for groups: the client may not.
	form.Set("scopes", "openid email groups")
	_, body = c.post(Prefix+"/workbench", form, nil)
	if !strings.Contains(html.UnescapeString(body), `client demo-app may not ask for scope "groups"`) {
		t.Error("no warning about the groups scope")
	}
}

func TestWorkbenchDraftErrors(t *testing.T) {
	c, _ := newWorkbenchConsole(t)
	draft := "claims:\n  email: claims.?email\n  groups: clams.?groups\n"
	// The compile endpoint, as the script calls it.
	resp, body := c.post(Prefix+"/workbench/compile", url.Values{"draft": {draft}}, map[string]string{"X-CSRF-Token": c.csrf})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("compile = %d: %s", resp.StatusCode, body)
	}
	var a struct {
		OK       bool `json:"ok"`
		Problems []struct {
			Path         string
			Line, Column int
			Message      string
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatal(err)
	}
	if a.OK || len(a.Problems) != 1 || a.Problems[0].Line != 3 || a.Problems[0].Column != 11 || a.Problems[0].Path != "claims.groups" {
		t.Errorf("compile = %s", body)
	}
	resp, body = c.post(Prefix+"/workbench/compile", url.Values{"draft": {"claims:\n  email: claims.email\n"}}, map[string]string{"X-CSRF-Token": c.csrf})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"ok":true`) {
		t.Errorf("good draft = %d %s", resp.StatusCode, body)
	}

	// Without JavaScript: the form shows the same problem at its place,
	// and the draft is not evaluated.
	form := bobForm("evaluate")
	form.Set("csrf", c.csrf)
	form.Set("draft", draft)
	form.Set("draft_for", "connector:contoso")
	resp, body = c.post(Prefix+"/workbench", form, nil)
	text := html.UnescapeString(body)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(text, "3:11") || !strings.Contains(text, `unknown name "clams"`) {
		t.Errorf("evaluate a bad draft = %d:\n%s", resp.StatusCode, text)
	}
	if !strings.Contains(text, "groups: clams.?groups") {
		t.Error("the draft text was not kept")
	}
}

func TestWorkbenchCompareAndSamples(t *testing.T) {
	c, _ := newWorkbenchConsole(t)
	form := bobForm("save")
	form.Set("csrf", c.csrf)
	form.Set("sample_name", "bob")
	if resp, body := c.post(Prefix+"/workbench", form, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Saved sample") {
		t.Fatalf("save = %d: %s", resp.StatusCode, body)
	}
	form.Set("action", "compare")
	form.Set("draft", "claims:\n  email: claims.?email\n  groups: claims.?groups.orValue([]).map(g, \"contoso:\" + g)\n")
	form.Set("draft_for", "connector:contoso")
	resp, body := c.post(Prefix+"/workbench", form, nil)
	text := html.UnescapeString(body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(text, "differs") || !strings.Contains(text, `"contoso-staff"`) || !strings.Contains(text, `"contoso:contoso-staff"`) {
		t.Errorf("compare = %d:\n%s", resp.StatusCode, text)
	}
}

func TestWorkbenchStartsTestSignIn(t *testing.T) {
	c, store := newWorkbenchConsole(t)
	form := bobForm("")
	form.Set("csrf", c.csrf)
	resp, body := c.post(Prefix+"/workbench/test-signin", form, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("test-signin = %d: %s", resp.StatusCode, body)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Scheme+"://"+loc.Host != "https://broker.test" || loc.Path != "/login/contoso" {
		t.Fatalf("redirect to %s", loc)
	}
	rec, err := store.GetAuthRequest(context.Background(), loc.Query().Get("req"))
	if err != nil || rec.Test == nil || !rec.Test.Start || fmt.Sprint(rec.Scopes) != "[openid email]" {
		t.Errorf("start record %+v, %v", rec, err)
	}
	_, page := c.get(Prefix + "/workbench")
	if !strings.Contains(page, "contoso, started") {
		t.Error("the page does not list the test sign-in")
	}
	status, js := c.get(Prefix + "/workbench/test-status")
	if status != http.StatusOK || !strings.Contains(js, `"pending":1`) {
		t.Errorf("test-status = %d %s", status, js)
	}
	// Not finished: loading it says so.
	form.Set("action", "load-test")
	_, body = c.post(Prefix+"/workbench", form, nil)
	if !strings.Contains(body, "no test sign-in has finished yet") {
		t.Errorf("load-test before the sign-in: %s", body)
	}
	// The result, as authflow stores it, loads and evaluates.
	if err := store.CreateAuthRequest(context.Background(), storage.AuthRequest{
		ID: storage.TestSignInResultID(loc.Query().Get("req")), Expiry: rec.Expiry,
		Test: &storage.TestSignIn{Connector: "contoso", Result: &storage.TestSignInResult{UpstreamSubject: "bob", Claims: map[string]any{"sub": "bob", "email": "bob@contoso.example", "groups": []any{"contoso-staff"}}}},
	}); err != nil {
		t.Fatal(err)
	}
	_, body = c.post(Prefix+"/workbench", form, nil)
	text := html.UnescapeString(body)
	if !strings.Contains(text, "Loaded the test sign-in with contoso") || !strings.Contains(text, "needs the groups scope") {
		t.Errorf("load-test:\n%s", text)
	}
}

// The browser posts the form as multipart (it has a file input): an
// uploaded claims file is evaluated, a SAML assertion as the SAML
// connector would read it.
func TestWorkbenchUpload(t *testing.T) {
	c, _ := newWorkbenchConsole(t)
	var body strings.Builder
	w := multipart.NewWriter(&body)
	for k, v := range map[string]string{"csrf": c.csrf, "target": "connector:contoso", "client": "demo-app", "scopes": "openid email", "action": "evaluate",
		"draft": "claims:\n  email: claims[?\"mail\"][?0]\n", "draft_for": "connector:contoso"} {
		_ = w.WriteField(k, v)
	}
	fw, _ := w.CreateFormFile("claims_file", "assertion.xml")
	_, _ = io.WriteString(fw, `<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">bob-1</saml:NameID></saml:Subject>
<saml:AttributeStatement><saml:Attribute Name="mail"><saml:AttributeValue>bob@contoso.example</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>`)
	_ = w.Close()
	req, _ := http.NewRequest(http.MethodPost, c.srv.URL+Prefix+"/workbench", strings.NewReader(body.String()))
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	text := html.UnescapeString(string(b))
	if resp.StatusCode != http.StatusOK || !strings.Contains(text, "Read as: saml-assertion") || !strings.Contains(text, `"email": "bob@contoso.example"`) {
		t.Errorf("upload = %d:\n%s", resp.StatusCode, text)
	}
}

// The connectors page and a person's session link here with ?connector=.
func TestWorkbenchLinkedFromOtherPages(t *testing.T) {
	c, _ := newWorkbenchConsole(t)
	status, body := c.get(Prefix + "/workbench?" + url.Values{"connector": {"contoso"}, "sub": {"bob-subject"}}.Encode())
	text := html.UnescapeString(body)
	if status != http.StatusOK || !strings.Contains(text, `<option value="connector:contoso" selected>`) || !strings.Contains(text, "sign in as them") {
		t.Errorf("GET ?connector= = %d:\n%s", status, text)
	}
}
