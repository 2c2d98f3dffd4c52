package authflow_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedbroker/fedbroker/broker/authflow"
	"github.com/fedbroker/fedbroker/broker/logout"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/templates"
)

type fixture struct {
	*runtimetest.Fixture
	flow *authflow.Flow
}

func newFixture(t *testing.T) fixture {
	f := runtimetest.New(t, "", nil)
	tmpl, err := templates.New()
	if err != nil {
		t.Fatal(err)
	}
	a := tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: f.Keys, Store: f.Store, Now: f.Clock.Now})
	sealer, _ := tokens.NewSealer(nil)
	flow := authflow.New(authflow.Deps{
		Issuer: runtimetest.Issuer, Store: f.Store, Tokens: a, Sealer: sealer, Now: f.Clock.Now,
		Metrics: observe.NewMetrics(prometheus.NewRegistry()), Health: observe.NewHealth(),
		Pages:   &oauth.Writer{Issuer: runtimetest.Issuer, Templates: tmpl},
		Runtime: func() *runtime.Runtime { return f.Runtime },
		Logout:  logout.New(logout.Deps{Store: f.Store, Tokens: a, Runtime: func() *runtime.Runtime { return f.Runtime }, Now: f.Clock.Now}, logout.Settings{}),
	})
	return fixture{f, flow}
}

func authorizeForm(extra ...string) url.Values {
	v := url.Values{
		"client_id": {"app"}, "redirect_uri": {"http://127.0.0.1:9999/cb"}, "response_type": {"code"},
		"scope": {"openid email"}, "state": {"st"}, "nonce": {"n"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

// signIn runs authorize → password form → finish for alice and returns the
// final result and the browser's cookies.
func (f fixture) signIn(t *testing.T, password string) (authflow.Result, authflow.Browser, error) {
	t.Helper()
	ctx := context.Background()
	var b authflow.Browser
	res, err := f.flow.Authorize(ctx, f.Runtime, authorizeForm(), b)
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	if res.BrowserID == "" || !strings.HasPrefix(res.Redirect, "/login/local?req=") {
		t.Fatalf("Authorize = %+v; want a browser binding and the local login (the only connector)", res)
	}
	b.BrowserID = res.BrowserID
	u, _ := url.Parse(res.Redirect)
	reqID := u.Query().Get("req")
	res, err = f.flow.StartLogin(ctx, f.Runtime, "local", reqID, b)
	if err != nil || res.Template != "password.html" {
		t.Fatalf("StartLogin = %+v, %v; want the password form", res, err)
	}
	data := res.Data.(templates.PasswordData)
	res, err = f.flow.PasswordLogin(ctx, f.Runtime, "local", authflow.PasswordForm{
		RequestID: reqID, CSRF: data.CSRF, Username: "alice", Password: password, RemoteIP: "192.0.2.1",
	}, b)
	return res, b, err
}

func TestLoginEndsWithACodeAndASession(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, b, err := f.signIn(t, runtimetest.AlicePassword)
	if err != nil {
		t.Fatalf("PasswordLogin: %v", err)
	}
	u, err := url.Parse(res.Redirect)
	if err != nil || u.Host != "127.0.0.1:9999" || u.Query().Get("code") == "" || u.Query().Get("state") != "st" || u.Query().Get("iss") != runtimetest.Issuer {
		t.Fatalf("finish redirect = %q; want the client with code, state and iss", res.Redirect)
	}
	if res.Session == nil || res.Session.Subject == "" || res.Session.Grant.SessionID != res.Session.PublicID {
		t.Fatalf("finish session = %+v", res.Session)
	}
	// Single sign-on: the next authorize answers at once.
	b.SessionID = res.Session.ID
	sso, err := f.flow.Authorize(ctx, f.Runtime, authorizeForm("state", "st2"), b)
	if err != nil || !strings.Contains(sso.Redirect, "code=") || !strings.Contains(sso.Redirect, "state=st2") {
		t.Fatalf("SSO authorize = %+v, %v; want a code at once", sso, err)
	}
	// prompt=login asks again.
	if again, err := f.flow.Authorize(ctx, f.Runtime, authorizeForm("prompt", "login"), b); err != nil || !strings.HasPrefix(again.Redirect, "/login/") {
		t.Fatalf("prompt=login = %+v, %v; want the login page", again, err)
	}
	// Logout without a hint asks first; the confirmation ends the session
	// and SSO no longer answers.
	out, err := f.flow.Logout(ctx, f.Runtime, authflow.LogoutRequest{}, b)
	if err != nil || out.EndSession || out.Template != "logout_confirm.html" {
		t.Fatalf("Logout without a hint = %+v, %v; want the confirmation page", out, err)
	}
	confirm := out.Data.(templates.LogoutConfirmData).CSRF
	out, err = f.flow.Logout(ctx, f.Runtime, authflow.LogoutRequest{Confirm: confirm}, b)
	if err != nil || !out.EndSession || out.Template != "logged_out.html" {
		t.Fatalf("confirmed Logout = %+v, %v", out, err)
	}
	_, err = f.flow.Authorize(ctx, f.Runtime, authorizeForm("prompt", "none"), b)
	var re *oauth.RedirectError
	if !errors.As(err, &re) || re.Code != oauth.ErrLoginRequired {
		t.Fatalf("prompt=none after logout = %v, want login_required", err)
	}
}

func TestWrongPasswordShowsTheFormAgain(t *testing.T) {
	f := newFixture(t)
	res, _, err := f.signIn(t, "wrong")
	if err != nil || res.Template != "password.html" || res.Status != 401 || res.Session != nil {
		t.Fatalf("wrong password = %+v, %v; want the form again with 401 and no session", res, err)
	}
}

func TestLoginFromAnotherBrowserIsRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, err := f.flow.Authorize(ctx, f.Runtime, authorizeForm(), authflow.Browser{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(res.Redirect)
	for _, b := range []authflow.Browser{{}, {BrowserID: strings.Repeat("x", 32)}} {
		if _, err := f.flow.StartLogin(ctx, f.Runtime, "local", u.Query().Get("req"), b); err == nil {
			t.Errorf("StartLogin from browser %+v succeeded", b)
		}
	}
	if _, err := f.flow.StartLogin(ctx, f.Runtime, "nope", u.Query().Get("req"), authflow.Browser{BrowserID: res.BrowserID}); err == nil {
		t.Error("StartLogin at an unknown connector succeeded")
	}
}

func TestLogoutRedirectNeedsAnIDTokenHint(t *testing.T) {
	f := newFixture(t)
	_, err := f.flow.Logout(context.Background(), f.Runtime, authflow.LogoutRequest{PostLogoutRedirectURI: "http://127.0.0.1:9999/bye", IDTokenHint: "forged.token.here"}, authflow.Browser{})
	var pe *oauth.PageError
	if !errors.As(err, &pe) {
		t.Fatalf("Logout with a forged hint = %v; want an error page, no redirect", err)
	}
}

func TestAuthorizeRefusesBeforeTrustingTheClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"unknown client", authorizeForm("client_id", "ghost")},
		{"unregistered redirect", authorizeForm("redirect_uri", "https://evil.example/cb")},
		{"loopback redirect with a fragment", authorizeForm("redirect_uri", "http://127.0.0.1:1234/cb#x")},
		{"repeated parameter", func() url.Values { v := authorizeForm(); v.Add("state", "again"); return v }()},
		{"huge state", authorizeForm("state", strings.Repeat("s", 3000))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.flow.Authorize(ctx, f.Runtime, tc.form, authflow.Browser{})
			var pe *oauth.PageError
			if !errors.As(err, &pe) {
				t.Fatalf("Authorize = %v; want an error page, never a redirect", err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		form url.Values
		code string
	}{
		{"no openid", authorizeForm("scope", "email"), oauth.ErrInvalidScope},
		{"scope not allowed", authorizeForm("scope", "openid admin"), oauth.ErrInvalidScope},
		{"token flow", authorizeForm("response_type", "token"), oauth.ErrUnsupportedResponseType},
		{"plain PKCE", authorizeForm("code_challenge_method", "plain"), oauth.ErrInvalidRequest},
		{"no PKCE for a public client", func() url.Values {
			v := authorizeForm()
			v.Del("code_challenge")
			v.Del("code_challenge_method")
			return v
		}(), oauth.ErrInvalidRequest},
		{"prompt none without a session", authorizeForm("prompt", "none"), oauth.ErrLoginRequired},
		{"request object", authorizeForm("request", "eyJ..."), oauth.ErrRequestNotSupported},
		{"negative max_age", authorizeForm("max_age", "-1"), oauth.ErrInvalidRequest},
		{"unknown connector_id", authorizeForm("connector_id", "nope"), oauth.ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.flow.Authorize(ctx, f.Runtime, tc.form, authflow.Browser{})
			var re *oauth.RedirectError
			if !errors.As(err, &re) || re.Code != tc.code || re.State != tc.form.Get("state") {
				t.Fatalf("Authorize = %#v; want a redirect with %s and the state", err, tc.code)
			}
		})
	}
}
