package broker

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/workbench"
	"github.com/fedbroker/fedbroker/mapping"
)

var cancelLink = regexp.MustCompile(`href="(/cancel\?[^"]+)"`)

// newWorkbench is the console's workbench over the harness's broker.
func (h *harness) newWorkbench() *workbench.Workbench {
	return workbench.New(workbench.Deps{
		Issuer:  h.issuer,
		Runtime: h.b.rt.Load,
		Config:  func() *config.Config { return h.b.running },
		Store:   h.store,
		Now:     h.clock.Now,
	})
}

// wantNothingIssued checks that no sign-in side effect exists: no session
// cookie, no redirect (so no code), no link, no session or refresh family
// of subject.
func (h *harness) wantNothingIssued(t *testing.T, r response, subject string) {
	t.Helper()
	if r.status != http.StatusOK || r.location != nil {
		t.Errorf("test sign-in ended with %d %v, want the 200 page", r.status, r.location)
	}
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, h.b.flow.Cookies().Session+"=") && !strings.Contains(c, "Max-Age=0") {
			t.Errorf("test sign-in set the session cookie: %s", c)
		}
	}
	ctx := context.Background()
	if links, err := h.store.ListLinks(ctx); err != nil || len(links) != 0 {
		t.Errorf("links = %v, %v; want none", links, err)
	}
	fams, sessions, err := h.store.RevokeSubject(ctx, subject)
	if err != nil || fams != 0 || sessions != 0 {
		t.Errorf("subject %s has %d families and %d sessions (%v); want none", subject, fams, sessions, err)
	}
}

func TestTestSignInLocal(t *testing.T) {
	h := newHarness(t, nil, nil, func(cfg *config.Config) {
		// local links, so a real sign-in would write a link.
		cfg.Mappings["linked"] = mapping.Spec{Link: "claims.email_verified == true ? claims.email : \"\"", Claims: map[string]mapping.ClaimSpec{"email": {Expr: "claims.email"}}}
		cfg.Connectors[0].Mapping = "linked"
		cfg.Links.Groups = [][]string{{"local", "backup"}}
	})
	wb := h.newWorkbench()
	ctx := context.Background()
	handle, loginURL, err := wb.StartTestSignIn(ctx, "local", []string{"openid", "groups"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(loginURL)
	br := h.newBrowser()

	// Another connector's login URL does not take the handle.
	wantErrorPage(t, br.get(h.issuer+"/login/backup?req="+url.QueryEscape(handle)), http.StatusBadRequest, "unknown_connector")

	page := br.get(loginURL)
	if page.status != http.StatusOK || !strings.Contains(page.body, "mapping workbench (test only)") {
		t.Fatalf("login page = %d; body %s", page.status, page.body)
	}
	// The handle works once: a second browser, or the same one again,
	// gets the expired page.
	wantErrorPage(t, h.newBrowser().get(loginURL), http.StatusBadRequest, "expired_request")
	wantErrorPage(t, br.get(loginURL), http.StatusBadRequest, "expired_request")

	req, csrf := reqField.FindStringSubmatch(page.body), csrfField.FindStringSubmatch(page.body)
	if req == nil || csrf == nil {
		t.Fatalf("login page has no req/csrf: %s", page.body)
	}
	if req[1] == handle {
		t.Fatal("the sign-in runs under the console's handle")
	}
	// The running sign-in's id is useless at /authorize, the chooser and
	// the token endpoint.
	wantErrorPage(t, br.get(h.issuer+"/login?req="+url.QueryEscape(req[1])), http.StatusBadRequest, "expired_request")
	for _, id := range []string{handle, req[1]} {
		r := br.get(h.issuer + "/authorize?" + url.Values{"client_id": {"app"}, "request_uri": {"urn:ietf:params:oauth:request_uri:" + id}, "redirect_uri": {appRedirect}, "response_type": {"code"}}.Encode())
		if r.status == http.StatusOK || r.location != nil && r.location.Query().Get("code") != "" {
			t.Errorf("authorize with the test id %q = %d %v", id, r.status, r.location)
		}
		tr := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {id}, "redirect_uri": {appRedirect}, "client_id": {"app"}, "code_verifier": {strings.Repeat("v", 43)}}, "", "")
		wantOAuthError(t, tr, http.StatusBadRequest, "invalid_grant")
	}

	action := *u
	action.RawQuery = ""
	form := url.Values{"req": {req[1]}, "csrf": {csrf[1]}, "login": {"alice"}, "password": {alicePassword}}
	done := br.postForm(action.String(), form)
	if !strings.Contains(done.body, "Test sign-in complete") {
		t.Fatalf("finish = %d; body %s", done.status, done.body)
	}
	res, err := wb.TestSignInResult(ctx, handle)
	if err != nil {
		t.Fatal(err)
	}
	r := res.Result
	if r == nil || r.Claims["email"] != "alice@acme.com" || !reflect.DeepEqual(r.Claims["groups"], []any{"eng", "admins"}) || r.UpstreamSubject == "" {
		t.Fatalf("result = %+v", res)
	}
	h.wantNothingIssued(t, done, mapping.DefaultSubject("local", r.UpstreamSubject))
	h.wantAudit(t, "test_signin", "local", map[string]string{"upstream_sub": r.UpstreamSubject})
	if h.auditCount("login", "local") != 0 {
		t.Error("a test sign-in was audited as a login")
	}

	// Replaying the form is refused.
	wantErrorPage(t, br.postForm(action.String(), form), http.StatusBadRequest, "expired_request")

	// The result evaluates in the workbench: the link key is there, and
	// nothing links (no link was written).
	ev, err := wb.Evaluate(ctx, workbench.Request{Target: workbench.Target{ID: "local"}, Input: workbench.InputOf(res), Client: "app", Scopes: []string{"openid", "email"}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Linking == nil || ev.Linking.Decision != "new" || ev.Tokens.IDToken.Claims["email"] != "alice@acme.com" {
		t.Errorf("evaluation = %+v %+v", ev.Linking, ev.Tokens)
	}
}

func TestTestSignInCancel(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	wb := h.newWorkbench()
	ctx := context.Background()
	handle, loginURL, err := wb.StartTestSignIn(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	br := h.newBrowser()
	page := br.get(loginURL)
	cancel := cancelLink.FindStringSubmatch(page.body)
	if cancel == nil {
		t.Fatalf("no cancel link: %s", page.body)
	}
	r := br.get(h.issuer + strings.ReplaceAll(cancel[1], "&amp;", "&"))
	if !strings.Contains(r.body, "Test sign-in cancelled") || r.location != nil {
		t.Fatalf("cancel = %d %v; body %s", r.status, r.location, r.body)
	}
	res, err := wb.TestSignInResult(ctx, handle)
	if err != nil || res.Result != nil || !strings.Contains(res.Failure, "cancelled") {
		t.Errorf("result = %+v, %v", res, err)
	}
}

func TestTestSignInUpstreamOIDC(t *testing.T) {
	idp := newCorpIdP(t)
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{corpConnector(idp)}, nil))
	wb := h.newWorkbench()
	ctx := context.Background()
	handle, loginURL, err := wb.StartTestSignIn(ctx, "corp", []string{"openid", "email"})
	if err != nil {
		t.Fatal(err)
	}
	br := h.newBrowser()
	cb := h.atUpstream(br, br.get(loginURL))
	done := br.get(cb.String())
	if !strings.Contains(done.body, "Test sign-in complete") {
		t.Fatalf("callback = %d %v; body %s", done.status, done.location, done.body)
	}
	res, err := wb.TestSignInResult(ctx, handle)
	if err != nil {
		t.Fatal(err)
	}
	if res.Result.UpstreamSubject != "corp-u-1" || res.Result.Claims["email"] != "dana@acme.com" || res.Result.Claims["preferred_username"] != "dana" {
		t.Errorf("result = %+v", res.Result)
	}
	h.wantNothingIssued(t, done, mapping.DefaultSubject("corp", "corp-u-1"))
	// The upstream's callback cannot be replayed.
	wantErrorPage(t, br.get(cb.String()), http.StatusBadRequest, "expired_request")
}

// The newcomer's path, on the admin listener: the console's workbench
// starts a test sign-in, the sign-in runs at the public listener, and the
// workbench shows why the person's groups are not in the app's tokens.
func TestWorkbenchConsoleTestSignInEndToEnd(t *testing.T) {
	const token = "console-admin-token-0123456789"
	h := newHarness(t, nil, nil, func(cfg *config.Config) {
		// The app may not ask for the groups scope.
		cfg.Clients[0].Scopes = []string{"openid", "profile", "email"}
	})
	admin := httptest.NewServer(h.b.AdminHandler(AdminOptions{Token: token}))
	t.Cleanup(admin.Close)
	console := h.newBrowser()
	if r := console.postForm(admin.URL+"/console/login", url.Values{"token": {token}}); r.status != http.StatusSeeOther {
		t.Fatalf("console login = %d %s", r.status, r.body)
	}
	page := console.get(admin.URL + "/console/workbench")
	csrf := csrfField.FindStringSubmatch(page.body)
	if page.status != http.StatusOK || csrf == nil {
		t.Fatalf("workbench = %d: %s", page.status, page.body)
	}
	form := url.Values{"csrf": {csrf[1]}, "target": {"connector:local"}, "client": {"app"}, "scopes": {"openid email"}}
	start := console.postForm(admin.URL+"/console/workbench/test-signin", form)
	if start.status != http.StatusSeeOther || start.location == nil || !strings.HasPrefix(start.location.String(), h.issuer+"/login/local?req=") {
		t.Fatalf("test-signin = %d %v: %s", start.status, start.location, start.body)
	}
	// The new tab, at the public listener.
	tab := h.newBrowser()
	done := h.passwordLogin(tab, start.location, "alice", alicePassword)
	if !strings.Contains(done.body, "Test sign-in complete") {
		t.Fatalf("sign-in = %d: %s", done.status, done.body)
	}
	got, err := h.newWorkbench().TestSignInResult(context.Background(), start.location.Query().Get("req"))
	if err != nil || got.Result == nil {
		t.Fatalf("result = %+v, %v", got, err)
	}
	h.wantNothingIssued(t, done, mapping.DefaultSubject("local", got.Result.UpstreamSubject))
	form.Set("action", "load-test")
	res := console.postForm(admin.URL+"/console/workbench", form)
	text := html.UnescapeString(res.body)
	for _, want := range []string{
		"Loaded the test sign-in with local",
		`"groups": [`, `"eng"`, // what the connector sent
		"needs the groups scope, which was not asked for, and client app may not ask for it",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("workbench result lacks %q:\n%s", want, text)
		}
	}
	h.wantAudit(t, "workbench_test_signin_started", "local", map[string]string{"admin": "token"})
}
