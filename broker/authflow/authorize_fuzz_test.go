package authflow

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// FuzzAuthorize: whatever the request, Authorize does not panic, answers
// nothing that would be a 5xx (the store is the memory store: no outage),
// sends the browser only to the broker's own login pages or to a
// registered redirect URI of the client, carries back only a state that
// is VSCHAR and at most 2048 bytes, and stores a small auth request.
func FuzzAuthorize(f *testing.F) {
	const (
		app      = "app"
		appCB    = "http://127.0.0.1:9999/cb"
		svc      = "svc"
		svcCB    = "https://svc.example.com/callback"
		ch       = validChallenge
		s256     = "S256"
		openid   = "openid email"
		none     = ""
		loopback = "198.51.100.1"
	)
	type seed struct {
		client, redirect, responseType, scope, state, nonce, challenge, method, prompt, maxAge, loginHint, connector, extra string
		session                                                                                                             bool
		addr                                                                                                                string
	}
	big := strings.Repeat("A", 70000)
	for _, s := range []seed{
		// Valid requests: public with PKCE, confidential without, SSO.
		{app, appCB, "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{svc, svcCB, "code", "openid offline_access read", "xyz", none, none, none, none, none, none, none, none, false, loopback},
		{app, appCB, "code", openid, "st", "n", ch, s256, none, "0", none, none, none, true, loopback},
		{app, appCB, "code", openid, "st", "n", ch, s256, "none", none, none, none, none, true, none},
		{app, appCB, "code", openid, "st", "n", ch, s256, "login", "300", "alice@acme.com", "local", none, true, none},
		{app, appCB, "code", openid, "st", "n", ch, s256, "none", none, none, none, none, false, loopback},
		// Repeated and unknown parameters, request objects.
		{app, appCB, "code", openid, "st", "n", ch, s256, none, none, none, none, "state=again&client_id=svc", false, loopback},
		{app, appCB, "code", openid, "st", "n", ch, s256, none, none, none, none, "redirect_uri=https%3A%2F%2Fevil.example%2Fcb", false, loopback},
		{app, appCB, "code", openid, "st", "n", ch, s256, none, none, none, none, "request=x.y.z&request_uri=https%3A%2F%2Fevil.example", false, loopback},
		{app, appCB, "code", openid, "st", "n", ch, s256, none, none, none, none, "response_mode=fragment&frobnicate=1", false, loopback},
		// Huge values.
		{app, appCB, "code", openid, big, "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, appCB, "code", openid, "st", big, ch, s256, none, none, none, none, none, false, loopback},
		{app, appCB, "code", openid, "st", "n", big, s256, none, none, none, none, none, false, loopback},
		{app, appCB, "code", "openid " + big, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, appCB, "code", strings.Repeat("openid ", 5000), "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, appCB, "code", openid, "st", "n", ch, s256, strings.Repeat("login ", 5000), none, none, none, none, false, loopback},
		{app, appCB, "code", openid, "st", "n", ch, s256, none, strings.Repeat("9", 5000), none, none, none, false, loopback},
		{app, appCB, "code", openid, "st", "n", ch, s256, none, none, big + "@acme.com", none, none, false, loopback},
		{app, appCB, "code", openid, "st", "n", ch, s256, none, none, none, big, none, false, loopback},
		{big, appCB, "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://127.0.0.1:" + big + "/cb", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		// Bad redirect_uri variants.
		{app, "http://127.0.0.1:9999/cb#frag", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://evil.example@127.0.0.1:9999/cb", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://127.0.0.1:9999/cb/../evil", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://127.0.0.1:9999/%63b", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://127.0.0.1:9999/cb?x=1", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "//evil.example/cb", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "javascript:alert(1)", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{svc, "https://svc.example.com.evil.example/callback", "code", openid, "st", none, none, none, none, none, none, none, none, false, loopback},
		{svc, "https://svc.example.com:8443/callback", "code", openid, "st", none, none, none, none, none, none, none, none, false, loopback},
		{svc, "http://127.0.0.1:9999/cb", "code", openid, "st", none, none, none, none, none, none, none, none, false, loopback},
		// Loopback ports.
		{app, "http://127.0.0.1:1/cb", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://127.0.0.1:65535/cb", "code", openid, "st", "n", ch, s256, none, none, none, none, none, true, loopback},
		{app, "http://127.0.0.1:0/cb", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://127.0.0.1:65536/cb", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://127.0.0.1:/cb", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://127.0.0.1/cb", "code", "openid", "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://[::1]:9999/cb", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, "2001:db8::1"},
		{app, "http://localhost:9999/cb", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, "::ffff:198.51.100.1"},
		// Unicode, NUL bytes, control characters.
		{app, appCB, "code", openid, "état", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, appCB, "token", openid, "st\x00", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, appCB, "code", openid, "st\r\nLocation: https://evil.example", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, appCB, "code", openid, "st", "n\xff\x00", ch, s256, none, none, "ålice\x00@acme.com", none, none, false, loopback},
		{app, appCB, "code", "openid\u00a0email", "st", "n", ch, s256, "login\u3000consent", "１２", none, none, none, false, loopback},
		{"app\x00", appCB, "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, loopback},
		{app, "http://127.0.0.1:9999/cb\x00", "code", openid, "st", "n", ch, s256, none, none, none, none, none, false, "not an address\x00"},
		{app, "http://127.0.0.1:９９９９/cb", "code", openid, "st", "n", ch, s256, none, none, none, "lo\x00cal", none, false, loopback},
	} {
		f.Add(s.client, s.redirect, s.responseType, s.scope, s.state, s.nonce, s.challenge, s.method, s.prompt, s.maxAge, s.loginHint, s.connector, s.extra, s.session, s.addr)
	}

	fx := newAuthzFixture(f)
	ctx := context.Background()
	signedIn := fx.signIn(f, Browser{})
	registered := map[string][]string{}
	for _, c := range fx.Config.Clients {
		registered[c.ID] = c.RedirectURIs
	}

	f.Fuzz(func(t *testing.T, client, redirect, responseType, scope, state, nonce, challenge, method, prompt, maxAge, loginHint, connector, extra string, session bool, addr string) {
		// The clock moves a second a request: expired records are swept,
		// limits refill, and the SSO session is renewed when it ends.
		fx.Clock.Advance(time.Second)
		if _, err := fx.Store.GetSession(ctx, signedIn.SessionID); err != nil {
			signedIn = fx.signIn(t, Browser{})
		}
		form := url.Values{}
		for k, v := range map[string]string{
			"client_id": client, "redirect_uri": redirect, "response_type": responseType, "scope": scope,
			"state": state, "nonce": nonce, "code_challenge": challenge, "code_challenge_method": method,
			"prompt": prompt, "max_age": maxAge, "login_hint": loginHint, "connector_id": connector,
		} {
			if v != "" {
				form.Set(k, v)
			}
		}
		more, _ := url.ParseQuery(extra)
		for k, vs := range more {
			for _, v := range vs {
				form.Add(k, v)
			}
		}
		b := Browser{RemoteIP: addr}
		if session {
			b.SessionID, b.BrowserID = signedIn.SessionID, signedIn.BrowserID
		}

		res, err := fx.flow.Authorize(ctx, fx.Runtime, form, b)

		var (
			pe *oauth.PageError
			re *oauth.RedirectError
		)
		switch {
		case err == nil:
			if res.Template != "" || res.Redirect == "" {
				t.Fatalf("Authorize = %+v; want a redirect and no page", res)
			}
			if strings.HasPrefix(res.Redirect, "/login?req=") || strings.HasPrefix(res.Redirect, "/login/") {
				u, perr := url.Parse(res.Redirect)
				if perr != nil {
					t.Fatalf("login redirect %q does not parse: %v", res.Redirect, perr)
				}
				req, gerr := fx.Store.TakeAuthRequest(ctx, u.Query().Get("req"))
				if gerr != nil {
					t.Fatalf("login redirect %q names no stored request: %v", res.Redirect, gerr)
				}
				checkStoredRequest(t, req, registered)
				return
			}
			checkClientRedirect(t, "redirect", res.Redirect, form.Get("client_id"), registered)
		case errors.As(err, &re):
			checkClientRedirect(t, "redirect error", re.RedirectURI, form.Get("client_id"), registered)
			if !validState(re.State) {
				t.Fatalf("redirect error %q carries a state of %d bytes that is not VSCHAR: %q", re.Code, len(re.State), truncate(re.State))
			}
			if re.State != form.Get("state") {
				t.Fatalf("redirect error carries state %q, the request had %q", truncate(re.State), truncate(form.Get("state")))
			}
		case errors.As(err, &pe):
			if pe.Status < 400 || pe.Status >= 500 {
				t.Fatalf("Authorize = page %d %s; want a 4xx page", pe.Status, pe.Code)
			}
		default:
			t.Fatalf("Authorize = %T %v; the writer would answer it with a 5xx", err, err)
		}
	})
}

// checkClientRedirect fails unless target is a registered redirect URI of
// client (a loopback one on any port), with no user info or fragment.
func checkClientRedirect(t *testing.T, what, target, client string, registered map[string][]string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("%s to %q does not parse: %v", what, truncate(target), err)
	}
	if u.User != nil || u.Fragment != "" || strings.Contains(target, "#") {
		t.Fatalf("%s to %q has user info or a fragment", what, truncate(target))
	}
	for _, r := range registered[client] {
		ru, err := url.Parse(r)
		if err != nil {
			continue
		}
		sameHost := u.Host == ru.Host ||
			u.Scheme == "http" && config.IsLoopback(u.Hostname()) && u.Hostname() == ru.Hostname()
		if u.Scheme == ru.Scheme && sameHost && u.EscapedPath() == ru.EscapedPath() {
			return
		}
	}
	t.Fatalf("%s to %q, which is not a registered redirect URI of client %q (%v)", what, truncate(target), truncate(client), registered[client])
}

// checkStoredRequest fails unless the stored auth request is small and
// holds only bounded values.
func checkStoredRequest(t *testing.T, req storage.AuthRequest, registered map[string][]string) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > 8<<10 {
		t.Fatalf("stored auth request is %d bytes, want at most 8 KiB", len(body))
	}
	if _, ok := registered[req.ClientID]; !ok {
		t.Fatalf("stored auth request for unknown client %q", truncate(req.ClientID))
	}
	checkClientRedirect(t, "stored redirect_uri", req.RedirectURI, req.ClientID, registered)
	for _, p := range strings.Fields(req.Prompt) {
		switch p {
		case "none", "login", "consent", "select_account":
		default:
			t.Fatalf("stored prompt %q", truncate(req.Prompt))
		}
	}
	if req.CodeChallenge != "" && (!oauth.ValidChallenge(req.CodeChallenge) || req.CodeChallengeMethod != oauth.PKCEMethodS256) {
		t.Fatalf("stored code_challenge %q with method %q", truncate(req.CodeChallenge), truncate(req.CodeChallengeMethod))
	}
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
