package broker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// TestFullFlow runs the whole browser flow on every backend: authorize,
// chooser, local login, code, token, userinfo, refresh, revoke, logout, with
// every issued token verified by go-oidc against the live JWKS.
func TestFullFlow(t *testing.T) {
	for name, newStore := range backends() {
		t.Run(name, func(t *testing.T) {
			clk := newClock()
			h := newHarness(t, newStore(t, clk), clk, nil)
			testFullFlow(t, h)
		})
	}
}

func testFullFlow(t *testing.T, h *harness) {
	ctx := context.Background()
	br := h.newBrowser()
	p := newPKCE()
	params := authParams(p)

	// Two connectors: the chooser lists both.
	r := h.authorize(br, params)
	if r.status != http.StatusFound || r.location.Path != "/login" {
		t.Fatalf("authorize = %d %v, want 302 to /login", r.status, r.location)
	}
	chooser := br.get(r.location.String())
	if chooser.status != http.StatusOK || !strings.Contains(chooser.body, "Break-glass accounts") || !strings.Contains(chooser.body, "Backup accounts") {
		t.Fatalf("chooser = %d, want both connectors listed; body %s", chooser.status, chooser.body)
	}
	for _, hdr := range []struct{ name, want string }{
		{"X-Frame-Options", "DENY"},
		{"Referrer-Policy", "same-origin"},
	} {
		if got := chooser.header.Get(hdr.name); got != hdr.want {
			t.Errorf("chooser %s = %q, want %q", hdr.name, got, hdr.want)
		}
	}
	if csp := chooser.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("chooser CSP = %q, want frame-ancestors 'none'", csp)
	}
	loginURL, _ := url.Parse(h.issuer + "/login/local?req=" + r.location.Query().Get("req"))
	done := h.passwordLogin(br, loginURL, "alice", alicePassword)
	if done.status != http.StatusSeeOther {
		t.Fatalf("login POST = %d, want 303 (after a POST); body %s", done.status, done.body)
	}
	q := done.location.Query()
	if got := done.location.Scheme + "://" + done.location.Host + done.location.Path; got != appRedirect {
		t.Fatalf("redirected to %s, want %s", got, appRedirect)
	}
	if q.Get("state") != params.Get("state") || q.Get("iss") != h.issuer {
		t.Fatalf("redirect state=%q iss=%q, want %q %q", q.Get("state"), q.Get("iss"), params.Get("state"), h.issuer)
	}
	var sessionCookieSeen bool
	for _, ck := range br.client.Jar.Cookies(mustURL(h.issuer)) {
		if ck.Name == h.b.flow.Cookies().Session {
			sessionCookieSeen = true
		}
	}
	if !sessionCookieSeen {
		t.Fatal("no SSO session cookie after login")
	}

	tr := h.redeem(q.Get("code"), p)
	if tr.status != http.StatusOK {
		t.Fatalf("redeem = %d %s: %s", tr.status, tr.Error, tr.Description)
	}
	if cc := tr.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("token Cache-Control = %q, want no-store", cc)
	}
	if tr.TokenType != "Bearer" || tr.AccessToken == "" || tr.IDToken == "" || tr.RefreshToken == "" {
		t.Fatalf("token response missing parts: %+v", tr)
	}
	idt, err := h.verifier("app").Verify(ctx, tr.IDToken)
	if err != nil {
		t.Fatalf("go-oidc Verify(id_token): %v", err)
	}
	if idt.Nonce != params.Get("nonce") {
		t.Errorf("id_token nonce = %q, want %q", idt.Nonce, params.Get("nonce"))
	}
	if err := idt.VerifyAccessToken(tr.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	var claims struct {
		Email    string   `json:"email"`
		Name     string   `json:"name"`
		Groups   []string `json:"groups"`
		AZP      string   `json:"azp"`
		SID      string   `json:"sid"`
		AuthTime int64    `json:"auth_time"`
		AMR      []string `json:"amr"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Email != "alice@acme.com" || claims.Name != "Alice Example" || !slices.Equal(claims.Groups, []string{"eng", "admins"}) || claims.AZP != "app" || claims.SID == "" || claims.AuthTime == 0 || !slices.Equal(claims.AMR, []string{"pwd"}) {
		t.Errorf("id_token claims = %+v", claims)
	}
	if strings.Contains(idt.Subject, "alice") {
		t.Errorf("sub %q carries the username; want an opaque subject", idt.Subject)
	}

	// The access token is an RFC 9068 JWT for the client's resource audience.
	atVerifier := oidcVerifierFor(t, h, "api.acme.com")
	at, err := atVerifier.Verify(ctx, tr.AccessToken)
	if err != nil {
		t.Fatalf("go-oidc Verify(access_token, aud api.acme.com): %v", err)
	}
	if at.Subject != idt.Subject {
		t.Errorf("access token sub %q != id token sub %q", at.Subject, idt.Subject)
	}
	if typ := jwtHeader(t, tr.AccessToken)["typ"]; typ != "at+jwt" {
		t.Errorf("access token typ = %v, want at+jwt", typ)
	}
	if _, err := oidcVerifierFor(t, h, "app").Verify(ctx, tr.AccessToken); err == nil {
		t.Error("access token verified for audience app; want only api.acme.com")
	}

	// userinfo
	ui := h.userinfo(tr.AccessToken)
	if ui.status != http.StatusOK || ui.claims["sub"] != idt.Subject || ui.claims["email"] != "alice@acme.com" {
		t.Errorf("userinfo = %d %v", ui.status, ui.claims)
	}
	if bad := h.userinfo(tr.AccessToken + "x"); bad.status != http.StatusUnauthorized || !strings.Contains(bad.header.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("userinfo with a forged token = %d %q, want 401 invalid_token", bad.status, bad.header.Get("WWW-Authenticate"))
	}
	if bad := h.userinfo(tr.IDToken); bad.status != http.StatusUnauthorized {
		t.Errorf("userinfo with an ID token = %d, want 401", bad.status)
	}

	// refresh rotates
	tr2 := h.refresh(tr.RefreshToken, "app")
	if tr2.status != http.StatusOK || tr2.RefreshToken == "" || tr2.RefreshToken == tr.RefreshToken {
		t.Fatalf("refresh = %d %s, want a new refresh token", tr2.status, tr2.Error)
	}
	idt2, err := h.verifier("app").Verify(ctx, tr2.IDToken)
	if err != nil || idt2.Subject != idt.Subject {
		t.Fatalf("refreshed id_token: %v (sub %v)", err, idt2)
	}
	// narrower scope is fine, wider is not
	if n := h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr2.RefreshToken}, "client_id": {"app"}, "scope": {"openid admin"}}, "", ""); n.Error != "invalid_scope" {
		t.Errorf("refresh widening scope = %d %q, want invalid_scope", n.status, n.Error)
	}

	// SSO: another client signs in without a password.
	p2 := newPKCE()
	params2 := url.Values{"client_id": {"other"}, "redirect_uri": {"http://127.0.0.1:8888/cb"}, "response_type": {"code"}, "scope": {"openid email"}, "state": {"s2"}, "code_challenge": {p2.challenge}, "code_challenge_method": {"S256"}}
	sso := h.authorize(br, params2)
	if sso.status != http.StatusFound || sso.location.Query().Get("code") == "" {
		t.Fatalf("SSO authorize = %d %v, want a code without login", sso.status, sso.location)
	}
	// prompt=login forces the password again.
	params2.Set("prompt", "login")
	if again := h.authorize(br, params2); again.location == nil || again.location.Query().Get("code") != "" {
		t.Fatalf("prompt=login answered with a code: %v", again.location)
	}

	// revoke the refresh family
	rv := h.revoke(tr2.RefreshToken, "app")
	if rv != http.StatusOK {
		t.Fatalf("revoke = %d, want 200", rv)
	}
	if dead := h.refresh(tr2.RefreshToken, "app"); dead.Error != "invalid_grant" {
		t.Errorf("refresh after revoke = %d %q, want invalid_grant", dead.status, dead.Error)
	}
	if rv := h.revoke("garbage-token", "app"); rv != http.StatusOK {
		t.Errorf("revoke of an unknown token = %d, want 200 (RFC 7009 §2.2)", rv)
	}

	// logout with a valid hint redirects to the registered URI
	lo := br.get(h.issuer + "/logout?" + url.Values{"id_token_hint": {tr2.IDToken}, "post_logout_redirect_uri": {appLogout}, "state": {"bye"}}.Encode())
	if lo.status != http.StatusFound || lo.location == nil || !strings.HasPrefix(lo.location.String(), appLogout) || lo.location.Query().Get("state") != "bye" {
		t.Fatalf("logout = %d %v, want 302 to %s with state", lo.status, lo.location, appLogout)
	}
	// the session is gone: prompt=none now fails with login_required
	params3 := authParams(newPKCE())
	params3.Set("prompt", "none")
	none := h.authorize(br, params3)
	if none.location == nil || none.location.Query().Get("error") != "login_required" {
		t.Fatalf("prompt=none after logout = %d %v, want login_required", none.status, none.location)
	}
	if !strings.Contains(h.audit.String(), `"msg":"login"`) {
		t.Errorf("audit log has no login event: %s", h.audit.String())
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// oidcVerifierFor verifies a JWT for audience aud against the broker's JWKS
// with go-oidc; the access token's typ differs, which go-oidc ignores.
func oidcVerifierFor(t *testing.T, h *harness, aud string) *oidc.IDTokenVerifier {
	t.Helper()
	ks := oidc.NewRemoteKeySet(context.Background(), h.issuer+"/keys")
	return oidc.NewVerifier(h.issuer, ks, &oidc.Config{ClientID: aud, Now: h.clock.Now, SupportedSigningAlgs: []string{"ES256"}})
}

func jwtHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	part, _, _ := strings.Cut(tok, ".")
	raw, err := b64(part)
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

type userinfoResponse struct {
	status int
	header http.Header
	claims map[string]any
}

func (h *harness) userinfo(token string) userinfoResponse {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	ur := userinfoResponse{status: resp.StatusCode, header: resp.Header}
	_ = json.NewDecoder(resp.Body).Decode(&ur.claims)
	return ur
}

func (h *harness) revoke(token, clientID string) int {
	h.t.Helper()
	resp, err := http.PostForm(h.issuer+"/revoke", url.Values{"token": {token}, "client_id": {clientID}})
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestConfidentialClient uses client_secret_basic and client_secret_post.
func TestConfidentialClient(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	br := h.newBrowser()
	params := url.Values{"client_id": {"svc"}, "redirect_uri": {svcRedirect}, "response_type": {"code"}, "scope": {"openid offline_access"}, "state": {"x"}}
	code, _ := h.login(br, params, "bob", bobPassword)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {svcRedirect}}
	tr := h.token(form, "svc", svcSecret)
	if tr.status != http.StatusOK || tr.RefreshToken == "" {
		t.Fatalf("basic auth redeem = %d %s %s", tr.status, tr.Error, tr.Description)
	}
	post := h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {"svc"}, "client_secret": {svcSecret}}, "", "")
	if post.status != http.StatusOK {
		t.Fatalf("client_secret_post refresh = %d %s", post.status, post.Error)
	}
}

// TestClientAuthentication is the token endpoint's client authentication,
// as an attacker would probe it.
func TestClientAuthentication(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	base := url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}, "redirect_uri": {svcRedirect}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range base {
			v[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	tests := []struct {
		name       string
		form       url.Values
		user, pass string
		status     int
		code       string
	}{
		{"two methods: basic and post", with("client_id", "svc", "client_secret", svcSecret), "svc", svcSecret, 401, "invalid_client"},
		{"confidential without authentication", with("client_id", "svc"), "", "", 401, "invalid_client"},
		{"wrong secret basic", base, "svc", svcSecret + "x", 401, "invalid_client"},
		{"wrong secret post", with("client_id", "svc", "client_secret", "nope"), "", "", 401, "invalid_client"},
		{"unknown client", with("client_id", "mallory"), "", "", 401, "invalid_client"},
		{"no client at all", base, "", "", 401, "invalid_client"},
		{"public client with a secret", with("client_id", "app", "client_secret", "x"), "", "", 401, "invalid_client"},
		{"basic id differs from form id", with("client_id", "app"), "svc", svcSecret, 401, "invalid_client"},
		{"private_key_jwt is not offered", with("client_id", "svc", "client_assertion", "x.y.z", "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), "", "", 401, "invalid_client"},
		{"right secret, bad code", base, "svc", svcSecret, 400, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := h.token(tt.form, tt.user, tt.pass)
			wantOAuthError(t, tr, tt.status, tt.code)
			if tt.status == 401 && tr.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	if tr := h.token(url.Values{"grant_type": {"password"}, "client_id": {"app"}}, "", ""); tr.Error != "unsupported_grant_type" {
		t.Errorf("password grant = %q, want unsupported_grant_type", tr.Error)
	}
	if tr := h.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {"other"}, "refresh_token": {"a.b"}}, "", ""); tr.Error != "invalid_grant" {
		t.Errorf("bogus refresh = %q, want invalid_grant", tr.Error)
	}
}

// TestCodeExpiry: a code is good for 60 seconds.
func TestCodeExpiry(t *testing.T) {
	clk := newClock()
	h := newHarness(t, nil, clk, nil)
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	clk.Advance(61 * time.Second)
	wantOAuthError(t, h.redeem(code, p), 400, "invalid_grant")
}

func TestRefreshLifetimes(t *testing.T) {
	clk := newClock()
	h := newHarness(t, nil, clk, nil)
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	tr := h.redeem(code, p)
	if tr.status != 200 {
		t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	// Idle: 24h by default.
	clk.Advance(25 * time.Hour)
	wantOAuthError(t, h.refresh(tr.RefreshToken, "app"), 400, "invalid_grant")
}
