package authflow_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedbroker/fedbroker/broker/authflow"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/logout"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/templates"
)

// cancelFixture is the flow with its audit log kept, at issuer path /sso.
type cancelFixture struct {
	fixture
	audit *bytes.Buffer
}

func newCancelFixture(t *testing.T, mutate func(*config.Config)) cancelFixture {
	t.Helper()
	f := runtimetest.New(t, "", mutate)
	tmpl, err := templates.New()
	if err != nil {
		t.Fatal(err)
	}
	a := tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: f.Keys, Store: f.Store, Now: f.Clock.Now})
	sealer, _ := tokens.NewSealer(nil)
	audit := &bytes.Buffer{}
	flow := authflow.New(authflow.Deps{
		Issuer: runtimetest.Issuer + "/sso", IssuerPath: "/sso", Store: f.Store, Tokens: a, Sealer: sealer, Now: f.Clock.Now,
		Audit:   observe.NewAudit(slog.New(slog.NewJSONHandler(audit, nil))),
		Metrics: observe.NewMetrics(prometheus.NewRegistry()), Health: observe.NewHealth(),
		Pages:   &oauth.Writer{Issuer: runtimetest.Issuer + "/sso", IssuerPath: "/sso", Templates: tmpl},
		Runtime: func() *runtime.Runtime { return f.Runtime },
		Logout:  logout.New(logout.Deps{Store: f.Store, Tokens: a, Runtime: func() *runtime.Runtime { return f.Runtime }, Now: f.Clock.Now}, logout.Settings{}),
	})
	return cancelFixture{fixture{f, flow}, audit}
}

// secondConnector adds a second local connector, so that the app gets the
// chooser.
func secondConnector(c *config.Config) {
	c.Connectors = append(c.Connectors, config.Connector{ID: "backup", Type: "local", Name: "Backup accounts", Config: c.Connectors[0].Config})
}

// started runs /authorize for app and returns the browser and the auth
// request's id.
func (f cancelFixture) started(t *testing.T) (authflow.Browser, string) {
	t.Helper()
	res, err := f.flow.Authorize(context.Background(), f.Runtime, authorizeForm(), authflow.Browser{})
	if err != nil || res.BrowserID == "" {
		t.Fatalf("Authorize = %+v, %v", res, err)
	}
	u, err := url.Parse(res.Redirect)
	if err != nil {
		t.Fatal(err)
	}
	return authflow.Browser{BrowserID: res.BrowserID}, u.Query().Get("req")
}

// cancelLink splits a page's cancel link into its request id and token,
// after checking its path.
func cancelLink(t *testing.T, link string) (reqID, token string) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || u.Path != "/sso/cancel" || u.Host != "" {
		t.Fatalf("cancel link %q; want /sso/cancel?req=…&csrf=…, on the broker", link)
	}
	return u.Query().Get("req"), u.Query().Get("csrf")
}

func (f cancelFixture) requestAlive(t *testing.T, reqID string) bool {
	t.Helper()
	_, err := f.Store.GetAuthRequest(context.Background(), reqID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func TestCancelFromTheChooserReturnsToTheApp(t *testing.T) {
	f := newCancelFixture(t, secondConnector)
	ctx := context.Background()
	b, reqID := f.started(t)
	res, err := f.flow.Chooser(ctx, f.Runtime, reqID, b)
	if err != nil || res.Template != "chooser.html" {
		t.Fatalf("Chooser = %+v, %v", res, err)
	}
	linkReq, token := cancelLink(t, res.Data.(templates.ChooserData).CancelURL)
	if linkReq != reqID || token == "" {
		t.Fatalf("cancel link names request %q with token %q; want %q and a token", linkReq, token, reqID)
	}

	err = f.flow.Cancel(ctx, f.Runtime, reqID, token, b)
	var re *oauth.RedirectError
	if !errors.As(err, &re) {
		t.Fatalf("Cancel = %v; want a redirect back to the app", err)
	}
	if re.RedirectURI != "http://127.0.0.1:9999/cb" || re.Code != oauth.ErrAccessDenied || re.State != "st" || re.Description == "" {
		t.Fatalf("Cancel redirect = %+v; want access_denied with a description and the state at the registered redirect", re)
	}
	if f.requestAlive(t, reqID) {
		t.Error("the auth request outlived its cancellation")
	}
	if !strings.Contains(f.audit.String(), `"msg":"login_cancelled"`) || !strings.Contains(f.audit.String(), `"client_id":"app"`) {
		t.Errorf("audit = %s; want login_cancelled for app", f.audit.String())
	}
	// Once cancelled, the request is gone: the chooser, the form and a
	// second cancel all say so.
	err = f.flow.Cancel(ctx, f.Runtime, reqID, token, b)
	var pe *oauth.PageError
	if !errors.As(err, &pe) || pe.Code != "expired_request" {
		t.Fatalf("second Cancel = %v; want the expired page", err)
	}
	if _, err := f.flow.StartLogin(ctx, f.Runtime, "local", reqID, b); !errors.As(err, &pe) || pe.Code != "expired_request" {
		t.Fatalf("StartLogin after Cancel = %v; want the expired page", err)
	}
}

func TestCancelFromThePasswordForm(t *testing.T) {
	f := newCancelFixture(t, nil)
	ctx := context.Background()
	b, reqID := f.started(t)
	res, err := f.flow.StartLogin(ctx, f.Runtime, "local", reqID, b)
	if err != nil || res.Template != "password.html" {
		t.Fatalf("StartLogin = %+v, %v", res, err)
	}
	data := res.Data.(templates.PasswordData)
	if data.ClientName != "Example App" {
		t.Errorf("password form names client %q; want the app's name, Example App", data.ClientName)
	}
	_, token := cancelLink(t, data.CancelURL)
	err = f.flow.Cancel(ctx, f.Runtime, reqID, token, b)
	var re *oauth.RedirectError
	if !errors.As(err, &re) || re.Code != oauth.ErrAccessDenied {
		t.Fatalf("Cancel = %v; want access_denied at the app", err)
	}
	// The form's own post now finds nothing.
	_, err = f.flow.PasswordLogin(ctx, f.Runtime, "local", authflow.PasswordForm{RequestID: reqID, CSRF: data.CSRF, Username: "alice", Password: runtimetest.AlicePassword, RemoteIP: "192.0.2.1"}, b)
	var pe *oauth.PageError
	if !errors.As(err, &pe) || pe.Code != "expired_request" {
		t.Fatalf("PasswordLogin after Cancel = %v; want the expired page", err)
	}
}

// TestCancelIsTheBrowsersOwn: only the browser that started the sign-in,
// with the link the broker gave it, can cancel it; anything else is a page
// and the sign-in goes on.
func TestCancelIsTheBrowsersOwn(t *testing.T) {
	f := newCancelFixture(t, nil)
	ctx := context.Background()
	b, reqID := f.started(t)
	res, err := f.flow.StartLogin(ctx, f.Runtime, "local", reqID, b)
	if err != nil {
		t.Fatal(err)
	}
	_, token := cancelLink(t, res.Data.(templates.PasswordData).CancelURL)
	other, _ := f.started(t)
	for _, tc := range []struct {
		name         string
		reqID, token string
		b            authflow.Browser
		code         string
	}{
		{"no browser cookie", reqID, token, authflow.Browser{}, "browser_mismatch"},
		{"another browser", reqID, token, other, "browser_mismatch"},
		{"no token", reqID, "", b, "invalid_csrf"},
		{"the password form's token", reqID, res.Data.(templates.PasswordData).CSRF, b, "invalid_csrf"},
		{"a wrong token", reqID, strings.Repeat("A", len(token)), b, "invalid_csrf"},
		{"no request", "", token, b, "expired_request"},
		{"an unknown request", "nope", token, b, "expired_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.flow.Cancel(ctx, f.Runtime, tc.reqID, tc.token, tc.b)
			var pe *oauth.PageError
			if !errors.As(err, &pe) || pe.Code != tc.code || pe.Status != http.StatusBadRequest {
				t.Fatalf("Cancel = %v; want a 400 %s page, no redirect", err, tc.code)
			}
			if !f.requestAlive(t, reqID) {
				t.Fatal("a refused Cancel deleted the sign-in")
			}
		})
	}
	if strings.Contains(f.audit.String(), "login_cancelled") {
		t.Errorf("audit = %s; a refused Cancel was logged as a cancellation", f.audit.String())
	}
}

// TestCancelAfterTheRedirectWasUnregistered: a reload that drops the
// redirect URI the sign-in started with leaves no place to return to.
func TestCancelAfterTheRedirectWasUnregistered(t *testing.T) {
	f := newCancelFixture(t, nil)
	ctx := context.Background()
	b, reqID := f.started(t)
	res, err := f.flow.StartLogin(ctx, f.Runtime, "local", reqID, b)
	if err != nil {
		t.Fatal(err)
	}
	_, token := cancelLink(t, res.Data.(templates.PasswordData).CancelURL)
	reloaded := runtimetest.New(t, "", func(c *config.Config) {
		for i := range c.Clients {
			if c.Clients[i].ID == "app" {
				c.Clients[i].RedirectURIs = []string{"http://127.0.0.1:9999/elsewhere"}
			}
		}
	})
	err = f.flow.Cancel(ctx, reloaded.Runtime, reqID, token, b)
	var pe *oauth.PageError
	if !errors.As(err, &pe) {
		t.Fatalf("Cancel = %v; want a page, never a redirect to an unregistered address", err)
	}
}

// TestSignOutErrorsSaySignOut: the sign-out endpoint's refusals are not
// headed as a sign-in's.
func TestSignOutErrorsSaySignOut(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b, sess := f.signedIn(t)
	hint := f.idToken(t, sess)
	for _, tc := range []struct {
		name string
		req  authflow.LogoutRequest
	}{
		{"redirect without a hint", authflow.LogoutRequest{PostLogoutRedirectURI: logoutURI}},
		{"redirect with a forged hint", authflow.LogoutRequest{PostLogoutRedirectURI: logoutURI, IDTokenHint: "a.b.c"}},
		{"two clients", authflow.LogoutRequest{PostLogoutRedirectURI: logoutURI, IDTokenHint: hint, ClientID: "svc"}},
		{"unregistered redirect", authflow.LogoutRequest{PostLogoutRedirectURI: "http://127.0.0.1:9999/elsewhere", IDTokenHint: hint}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.flow.Logout(ctx, f.Runtime, tc.req, b)
			var pe *oauth.PageError
			if !errors.As(err, &pe) {
				t.Fatalf("Logout = %v; want an error page", err)
			}
			if h := strings.ToLower(pe.Heading); !strings.Contains(h, "sign-out") || strings.Contains(h, "sign-in") {
				t.Errorf("Logout error headed %q; want a sign-out heading", pe.Heading)
			}
		})
	}
}
