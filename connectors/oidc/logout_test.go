package oidc

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// setSID makes the test user's ID tokens carry sid.
func setSID(op *logoutOP, sid string) {
	op.SetUser(testidp.User{Subject: "u1", Claims: map[string]any{
		"email": "ada@example.com", "email_verified": true, "name": "Ada", "sid": sid,
	}})
}

// dataOf decodes id's connector data.
func dataOf(t *testing.T, id connectors.Identity) connectorData {
	t.Helper()
	var d connectorData
	if err := json.Unmarshal(id.ConnectorData, &d); err != nil {
		t.Fatalf("ConnectorData %q: %v", id.ConnectorData, err)
	}
	return d
}

// idTokenClaims verifies raw as an ID token of c and returns its claims.
func idTokenClaims(t *testing.T, c *Connector, raw string) map[string]any {
	t.Helper()
	idt, err := oidc.NewVerifier(c.cfg.Issuer, c.keys, c.verifierConfig).Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("kept ID token does not verify: %v", err)
	}
	var m map[string]any
	if err := idt.Claims(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLogoutSignInKeepsSessionAndIDToken(t *testing.T) {
	op := newLogoutOP(t, "/end_session")
	setSID(op, "sess-1")
	c := open(t, op.config(), nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if id.SessionID != "sess-1" {
		t.Errorf("SessionID = %q, want sess-1", id.SessionID)
	}
	if d := dataOf(t, id); d.RefreshToken == "" || strings.Contains(string(id.ConnectorData), "id_token") {
		t.Errorf("ConnectorData = %s, want the refresh token only (the ID token goes with the session alone)", id.ConnectorData)
	}
	if len(id.LogoutData) == 0 {
		t.Fatal("LogoutData is empty, want the ID token")
	}
	if got := idTokenClaims(t, c, string(id.LogoutData)); got["sid"] != "sess-1" || got["sub"] != "u1" {
		t.Errorf("kept ID token claims = %v, want sub u1 and sid sess-1", got)
	}
}

func TestLogoutSignInWithoutSID(t *testing.T) {
	op := newLogoutOP(t, "/end_session")
	id, err := login(t, open(t, op.config(), nil))
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if id.SessionID != "" {
		t.Errorf("SessionID = %q, want none (the ID token has no sid)", id.SessionID)
	}
}

func TestLogoutUserinfoDoesNotSetSID(t *testing.T) {
	op := newLogoutOP(t, "/end_session")
	op.SetUser(testidp.User{
		Subject:        "u1",
		Claims:         map[string]any{"email": "ada@example.com", "email_verified": true, "sid": "from-token"},
		UserinfoClaims: map[string]any{"sid": "from-userinfo"},
	})
	cfg := op.config()
	cfg.UserInfo = true
	id, err := login(t, open(t, cfg, nil))
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if id.SessionID != "from-token" || id.Claims["sid"] != "from-token" {
		t.Errorf("SessionID = %q, claims sid = %v; want the ID token's from-token", id.SessionID, id.Claims["sid"])
	}
}

func TestLogoutRequest(t *testing.T) {
	op := newLogoutOP(t, "/end_session?tenant=t1")
	setSID(op, "sess-1")
	c := open(t, op.config(), nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	req, ok, err := c.LogoutRequest(context.Background(), connectors.Identity{Subject: id.Subject, SessionID: id.SessionID, LogoutData: id.LogoutData}, logoutURL, "st-1")
	if err != nil || !ok {
		t.Fatalf("LogoutRequest() = %+v, %v, %v; want a request", req, ok, err)
	}
	if req.PostURL != "" || req.Fields != nil {
		t.Errorf("LogoutRequest() = %+v, want a redirect only", req)
	}
	u, err := url.Parse(req.RedirectURL)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u.Scheme+"://"+u.Host+u.Path, op.Issuer()+"/end_session"; got != want {
		t.Errorf("redirect to %q, want %q", got, want)
	}
	q := u.Query()
	want := url.Values{
		"tenant":                   {"t1"},
		"id_token_hint":            {string(id.LogoutData)},
		"post_logout_redirect_uri": {logoutURL},
		"state":                    {"st-1"},
		"client_id":                {op.ClientID()},
	}
	for k, v := range want {
		if !slices.Equal(q[k], v) {
			t.Errorf("query %s = %q, want %q", k, q[k], v)
		}
	}
	if len(q) != len(want) {
		t.Errorf("query = %v, want exactly %v", q, want)
	}

	if _, _, err := c.LogoutRequest(context.Background(), id, "", "st-1"); err == nil {
		t.Error("LogoutRequest() without a logout URL: no error")
	}
}

func TestLogoutRequestNothingToEnd(t *testing.T) {
	ctx := context.Background()
	t.Run("no end_session_endpoint", func(t *testing.T) {
		op := newLogoutOP(t, "")
		c := open(t, op.config(), nil)
		id, err := login(t, c)
		if err != nil {
			t.Fatalf("login error = %v", err)
		}
		if d := dataOf(t, id); len(id.LogoutData) != 0 || d.RefreshToken == "" {
			t.Errorf("ConnectorData = %s, LogoutData %d bytes; want the refresh token and no ID token without an end_session_endpoint", id.ConnectorData, len(id.LogoutData))
		}
		req, ok, err := c.LogoutRequest(ctx, id, logoutURL, "st")
		if ok || err != nil {
			t.Errorf("LogoutRequest() = %+v, %v, %v; want ok=false, no error", req, ok, err)
		}
	})
	op := newLogoutOP(t, "/end_session")
	c := open(t, op.config(), nil)
	// Without LogoutData (a sign-in from before the endpoint was known)
	// there is no id_token_hint, whatever the connector data holds.
	for name, data := range map[string][]byte{
		"no connector data":   nil,
		"refresh token":       []byte(`{"refresh_token":"rt-1"}`),
		"capped":              []byte(`{"until":1999999999,"claims":{"sub":"u1"}}`),
		"undecodable":         []byte("\x00garbage"),
		"an older build's id": []byte(`{"refresh_token":"rt-1","id_token":"x.y.z"}`),
	} {
		t.Run(name, func(t *testing.T) {
			req, ok, err := c.LogoutRequest(ctx, connectors.Identity{Subject: "u1", ConnectorData: data}, logoutURL, "st")
			if ok || err != nil {
				t.Errorf("LogoutRequest() = %+v, %v, %v; want ok=false, no error", req, ok, err)
			}
		})
	}
}

func TestLogoutEndSessionNotHTTPS(t *testing.T) {
	op := newLogoutOP(t, "http://op.example/end_session")
	c := open(t, op.config(), nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if len(id.LogoutData) != 0 {
		t.Errorf("LogoutData keeps an ID token for an ignored end_session_endpoint")
	}
	if _, ok, err := c.LogoutRequest(context.Background(), id, logoutURL, "st"); ok || err != nil {
		t.Errorf("LogoutRequest() = %v, %v; want ok=false, no error", ok, err)
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "end_session_endpoint") {
		t.Errorf("Warnings() = %q, want one about the end_session_endpoint", w)
	}
}

func TestLogoutOfflineAccessOff(t *testing.T) {
	op := newLogoutOP(t, "/end_session")
	cfg := op.config()
	off := false
	cfg.OfflineAccess = &off
	c := open(t, cfg, nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if len(id.ConnectorData) != 0 || len(id.LogoutData) == 0 {
		t.Fatalf("ConnectorData = %s, LogoutData %d bytes; want no connector data and the ID token for logout", id.ConnectorData, len(id.LogoutData))
	}
	if id.NoRefresh || !id.RefreshUntil.IsZero() {
		t.Errorf("NoRefresh %v RefreshUntil %v, want no limit with offline_access off", id.NoRefresh, id.RefreshUntil)
	}
	got, err := c.Refresh(context.Background(), connectors.Scopes{}, id)
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	if got.Subject != "u1" || string(got.ConnectorData) != string(id.ConnectorData) {
		t.Errorf("Refresh() = %+v, want the identity unchanged", got)
	}
	if _, ok, err := c.LogoutRequest(context.Background(), id, logoutURL, "st"); !ok || err != nil {
		t.Errorf("LogoutRequest() = %v, %v; want a request", ok, err)
	}
}

// Refreshes carry no ID token: it is kept with the broker's session alone
// (LogoutData), not in the connector data every refresh family stores.
func TestLogoutRefreshKeepsNoIDToken(t *testing.T) {
	ctx := context.Background()
	op := newLogoutOP(t, "/end_session")
	setSID(op, "sess-1")
	c := open(t, op.config(), nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	first := dataOf(t, id)

	// As the broker calls it: subject and connector data only.
	r1, err := c.Refresh(ctx, connectors.Scopes{OfflineAccess: true}, connectors.Identity{Subject: id.Subject, ConnectorData: id.ConnectorData})
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	d1 := dataOf(t, r1)
	if d1.RefreshToken == "" || d1.RefreshToken == first.RefreshToken {
		t.Errorf("refresh token after refresh = %q, want the new one", d1.RefreshToken)
	}
	if strings.Contains(string(r1.ConnectorData), "id_token") || len(r1.LogoutData) != 0 {
		t.Errorf("after refresh: ConnectorData %s, LogoutData %d bytes; want neither to carry an ID token", r1.ConnectorData, len(r1.LogoutData))
	}
	if r1.SessionID != "sess-1" {
		t.Errorf("SessionID after refresh = %q, want sess-1", r1.SessionID)
	}

	// The upstream answers a refresh without an ID token.
	op.SetNoIDTokenOnRefresh(true)
	r2, err := c.Refresh(ctx, connectors.Scopes{OfflineAccess: true}, connectors.Identity{Subject: id.Subject, SessionID: id.SessionID, ConnectorData: r1.ConnectorData})
	if err != nil {
		t.Fatalf("Refresh() without id_token error = %v", err)
	}
	if d2 := dataOf(t, r2); d2.RefreshToken == "" || d2.RefreshToken == d1.RefreshToken {
		t.Errorf("refresh token after refresh = %q, want a new one", d2.RefreshToken)
	}
	if r2.SessionID != "sess-1" {
		t.Errorf("SessionID after a refresh without ID token = %q, want sess-1", r2.SessionID)
	}
	op.SetNoIDTokenOnRefresh(false)

	// Data that an older build wrote with the ID token in it still
	// refreshes, and drops it.
	old, err := json.Marshal(map[string]string{"refresh_token": dataOf(t, r2).RefreshToken, "id_token": string(id.LogoutData)})
	if err != nil {
		t.Fatal(err)
	}
	r3, err := c.Refresh(ctx, connectors.Scopes{OfflineAccess: true}, connectors.Identity{Subject: id.Subject, ConnectorData: old})
	if err != nil {
		t.Fatalf("Refresh() of old-format data error = %v", err)
	}
	if d3 := dataOf(t, r3); d3.RefreshToken == "" || strings.Contains(string(r3.ConnectorData), "id_token") {
		t.Errorf("ConnectorData after refreshing old-format data = %s, want a refresh token only", r3.ConnectorData)
	}
}

func TestLogoutRefreshWithoutEndSession(t *testing.T) {
	op := newLogoutOP(t, "")
	c := open(t, op.config(), nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	r, err := c.Refresh(context.Background(), connectors.Scopes{OfflineAccess: true}, connectors.Identity{Subject: id.Subject, ConnectorData: id.ConnectorData})
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	if d := dataOf(t, r); d.RefreshToken == "" || strings.Contains(string(r.ConnectorData), "id_token") || len(id.LogoutData) != 0 {
		t.Errorf("ConnectorData = %s, want a refresh token and no ID token", r.ConnectorData)
	}
}

// noneToken is an unsigned JWT (alg none) with claims.
func noneToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"logout+jwt"}`)) + "." + enc(b) + "."
}

func TestLogoutToken(t *testing.T) {
	op := newLogoutOP(t, "/end_session")
	c := open(t, op.config(), nil)
	ctx := context.Background()

	post := func(tok string) (connectors.LogoutEvent, error) {
		return c.HandleLogout(ctx, logoutPOST(url.Values{"logout_token": {tok}}), logoutURL)
	}

	t.Run("valid", func(t *testing.T) {
		claims := op.logoutClaims()
		ev, err := post(op.signLogout(t, claims, signOpts{}))
		if err != nil {
			t.Fatalf("HandleLogout() error = %v", err)
		}
		want := connectors.LogoutEvent{Ended: true, Subject: "u1", SessionID: "s1", ReplayID: claims["jti"].(string), ReplayUntil: time.Unix(claims["exp"].(int64), 0)}
		if ev.Returned || ev.Reply != nil || ev.Ended != want.Ended || ev.Subject != want.Subject || ev.SessionID != want.SessionID || ev.ReplayID != want.ReplayID || !ev.ReplayUntil.Equal(want.ReplayUntil) {
			t.Errorf("HandleLogout() = %+v, want %+v", ev, want)
		}
	})

	accepted := []struct {
		name      string
		mut       func(map[string]any)
		opts      signOpts
		sub, sid  string
		wantEnded bool
	}{
		{name: "sub only", mut: func(m map[string]any) { delete(m, "sid") }, sub: "u1"},
		{name: "sid only", mut: func(m map[string]any) { delete(m, "sub") }, sid: "s1"},
		{name: "no typ", opts: signOpts{typ: "-"}, sub: "u1", sid: "s1"},
		{name: "typ JWT", opts: signOpts{typ: "JWT"}, sub: "u1", sid: "s1"},
		{name: "typ application/logout+jwt", opts: signOpts{typ: "application/logout+jwt"}, sub: "u1", sid: "s1"},
		{name: "aud list with the client", mut: func(m map[string]any) { m["aud"] = []string{"other", op.ClientID()} }, sub: "u1", sid: "s1"},
		{name: "event object with members", mut: func(m map[string]any) {
			m["events"] = map[string]any{backChannelLogoutEvent: map[string]any{"x": 1}, "https://other.example/event": "x"}
		}, sub: "u1", sid: "s1"},
	}
	for _, tt := range accepted {
		t.Run("accepted/"+tt.name, func(t *testing.T) {
			claims := op.logoutClaims()
			if tt.mut != nil {
				tt.mut(claims)
			}
			ev, err := post(op.signLogout(t, claims, tt.opts))
			if err != nil {
				t.Fatalf("HandleLogout() error = %v", err)
			}
			if !ev.Ended || ev.Subject != tt.sub || ev.SessionID != tt.sid || ev.ReplayID != claims["jti"] {
				t.Errorf("HandleLogout() = %+v, want Ended with sub %q sid %q jti %v", ev, tt.sub, tt.sid, claims["jti"])
			}
		})
	}

	now := time.Now()
	refused := []struct {
		name string
		mut  func(map[string]any)
		opts signOpts
		raw  func(t *testing.T) string // instead of signing claims
		want string
	}{
		{name: "nonce present", mut: func(m map[string]any) { m["nonce"] = "n-1" }, want: CodeInvalidToken},
		{name: "nonce null", mut: func(m map[string]any) { m["nonce"] = nil }, want: CodeInvalidToken},
		{name: "events missing", mut: func(m map[string]any) { delete(m, "events") }, want: CodeInvalidToken},
		{name: "events wrong member", mut: func(m map[string]any) {
			m["events"] = map[string]any{"http://schemas.openid.net/event/frontchannel-logout": map[string]any{}}
		}, want: CodeInvalidToken},
		{name: "event value not an object", mut: func(m map[string]any) { m["events"] = map[string]any{backChannelLogoutEvent: "yes"} }, want: CodeInvalidToken},
		{name: "event value null", mut: func(m map[string]any) { m["events"] = map[string]any{backChannelLogoutEvent: nil} }, want: CodeInvalidToken},
		{name: "event value array", mut: func(m map[string]any) { m["events"] = map[string]any{backChannelLogoutEvent: []any{}} }, want: CodeInvalidToken},
		{name: "events an array", mut: func(m map[string]any) { m["events"] = []any{backChannelLogoutEvent} }, want: CodeInvalidToken},
		{name: "events a string", mut: func(m map[string]any) { m["events"] = backChannelLogoutEvent }, want: CodeInvalidToken},
		{name: "wrong audience", mut: func(m map[string]any) { m["aud"] = "another-client" }, want: CodeInvalidToken},
		{name: "no audience", mut: func(m map[string]any) { delete(m, "aud") }, want: CodeInvalidToken},
		{name: "wrong issuer", mut: func(m map[string]any) { m["iss"] = "https://evil.example" }, want: CodeInvalidToken},
		{name: "no issuer", mut: func(m map[string]any) { delete(m, "iss") }, want: CodeInvalidToken},
		{name: "expired", mut: func(m map[string]any) {
			m["iat"] = now.Add(-time.Hour).Unix()
			m["exp"] = now.Add(-time.Minute).Unix()
		}, want: CodeTokenExpired},
		{name: "exp missing", mut: func(m map[string]any) { delete(m, "exp") }, want: CodeTokenExpired},
		{name: "exp too far ahead", mut: func(m map[string]any) { m["exp"] = now.Add(48 * time.Hour).Unix() }, want: CodeInvalidToken},
		{name: "iat missing", mut: func(m map[string]any) { delete(m, "iat") }, want: CodeInvalidToken},
		{name: "iat in the future", mut: func(m map[string]any) { m["iat"] = now.Add(time.Hour).Unix() }, want: CodeInvalidToken},
		{name: "jti missing", mut: func(m map[string]any) { delete(m, "jti") }, want: CodeInvalidToken},
		{name: "jti empty", mut: func(m map[string]any) { m["jti"] = "" }, want: CodeInvalidToken},
		{name: "jti not a string", mut: func(m map[string]any) { m["jti"] = 42 }, want: CodeInvalidToken},
		{name: "neither sub nor sid", mut: func(m map[string]any) { delete(m, "sub"); delete(m, "sid") }, want: CodeInvalidToken},
		{name: "sid not a string", mut: func(m map[string]any) { delete(m, "sub"); m["sid"] = 7 }, want: CodeInvalidToken},
		{name: "foreign key under the published kid", opts: signOpts{foreign: true}, want: CodeInvalidToken},
		{name: "foreign key under an unknown kid", opts: signOpts{foreign: true, kid: "unknown-kid"}, want: CodeInvalidToken},
		{name: "typ at+jwt", opts: signOpts{typ: "at+jwt"}, want: CodeInvalidToken},
		{name: "typ secevent+jwt", opts: signOpts{typ: "secevent+jwt"}, want: CodeInvalidToken},
		{name: "typ not a string", opts: signOpts{typ: 1}, want: CodeInvalidToken},
		{name: "alg none", raw: func(t *testing.T) string { return noneToken(t, op.logoutClaims()) }, want: CodeInvalidToken},
		{name: "HS256 keyed with the public key", raw: func(t *testing.T) string {
			pub, err := x509.MarshalPKIXPublicKey(op.key.Public())
			if err != nil {
				t.Fatal(err)
			}
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pub},
				(&jose.SignerOptions{}).WithType("logout+jwt").WithHeader(jose.HeaderKey("kid"), op.kid))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.Signed(signer).Claims(op.logoutClaims()).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, want: CodeInvalidToken},
		{name: "malformed", raw: func(*testing.T) string { return "not.a.jwt" }, want: CodeInvalidToken},
		{name: "two segments", raw: func(*testing.T) string { return "eyJhbGciOiJFUzI1NiJ9.e30" }, want: CodeInvalidToken},
		{name: "signature tampered", raw: func(t *testing.T) string {
			tok := op.signLogout(t, op.logoutClaims(), signOpts{})
			parts := strings.Split(tok, ".")
			other := strings.Split(op.signLogout(t, op.logoutClaims(), signOpts{}), ".")
			return parts[0] + "." + parts[1] + "." + other[2]
		}, want: CodeInvalidToken},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			var tok string
			if tt.raw != nil {
				tok = tt.raw(t)
			} else {
				claims := op.logoutClaims()
				if tt.mut != nil {
					tt.mut(claims)
				}
				tok = op.signLogout(t, claims, tt.opts)
			}
			ev, err := post(tok)
			if err == nil {
				t.Fatalf("HandleLogout() = %+v, want error %s", ev, tt.want)
			}
			wantCode(t, err, tt.want)
			if ev.Ended || ev.Returned {
				t.Errorf("HandleLogout() = %+v with its error, want the zero event", ev)
			}
		})
	}
}

// An ID token is signed by the same keys, for the same audience, by the
// same issuer: it must not pass for a logout token.
func TestLogoutTokenRefusesIDTokens(t *testing.T) {
	op := newLogoutOP(t, "/end_session")
	setSID(op, "s1")
	c := open(t, op.config(), nil)
	ctx := context.Background()
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	signIn := string(id.LogoutData)
	// A refresh's ID token, as the upstream returns it.
	tok, err := c.oauth.TokenSource(c.tokenContext(ctx), &oauth2.Token{RefreshToken: dataOf(t, id).RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh at the upstream: %v", err)
	}
	refreshed, _ := tok.Extra("id_token").(string) // no nonce
	if refreshed == "" {
		t.Fatal("the upstream's refresh returned no ID token")
	}
	for name, tok := range map[string]string{"sign-in ID token (nonce)": signIn, "refresh ID token (no nonce, no events)": refreshed} {
		t.Run(name, func(t *testing.T) {
			ev, err := c.HandleLogout(ctx, logoutPOST(url.Values{"logout_token": {tok}}), logoutURL)
			if err == nil {
				t.Fatalf("HandleLogout(ID token) = %+v, want an error", ev)
			}
			wantCode(t, err, CodeInvalidToken)
		})
	}
	// The same claims as a logout token, with events and without nonce,
	// signed by the upstream, are accepted: the refusals above are for
	// what makes an ID token one.
	claims := op.logoutClaims()
	if _, err := c.HandleLogout(ctx, logoutPOST(url.Values{"logout_token": {op.signLogout(t, claims, signOpts{typ: "JWT"})}}), logoutURL); err != nil {
		t.Errorf("HandleLogout(logout token) error = %v", err)
	}
}

func TestHandleLogoutRequests(t *testing.T) {
	op := newLogoutOP(t, "/end_session")
	c := open(t, op.config(), nil)
	ctx := context.Background()
	valid := op.signLogout(t, op.logoutClaims(), signOpts{})

	t.Run("browser back with state", func(t *testing.T) {
		ev, err := c.HandleLogout(ctx, httptest.NewRequest(http.MethodGet, logoutURL+"?state=st-1", nil), logoutURL)
		if err != nil {
			t.Fatalf("HandleLogout() error = %v", err)
		}
		if (ev != connectors.LogoutEvent{Returned: true, State: "st-1", Success: true}) {
			t.Errorf("HandleLogout() = %+v, want Returned with state st-1", ev)
		}
	})
	t.Run("form post back with state", func(t *testing.T) {
		ev, err := c.HandleLogout(ctx, logoutPOST(url.Values{"state": {"st-2"}}), logoutURL)
		if err != nil {
			t.Fatalf("HandleLogout() error = %v", err)
		}
		if (ev != connectors.LogoutEvent{Returned: true, State: "st-2", Success: true}) {
			t.Errorf("HandleLogout() = %+v, want Returned with state st-2", ev)
		}
	})
	t.Run("form already parsed by the caller", func(t *testing.T) {
		r := logoutPOST(url.Values{"logout_token": {valid}})
		if err := r.ParseForm(); err != nil {
			t.Fatal(err)
		}
		ev, err := c.HandleLogout(ctx, r, logoutURL)
		if err != nil || !ev.Ended {
			t.Errorf("HandleLogout() = %+v, %v; want Ended", ev, err)
		}
	})
	t.Run("content type with charset", func(t *testing.T) {
		r := logoutPOST(url.Values{"logout_token": {valid}})
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
		ev, err := c.HandleLogout(ctx, r, logoutURL)
		if err != nil || !ev.Ended {
			t.Errorf("HandleLogout() = %+v, %v; want Ended", ev, err)
		}
	})

	big := url.Values{"logout_token": {valid}, "padding": {strings.Repeat("x", maxLogoutBody)}}
	refused := []struct {
		name string
		req  func() *http.Request
	}{
		{"GET without state", func() *http.Request { return httptest.NewRequest(http.MethodGet, logoutURL, nil) }},
		{"GET with empty state", func() *http.Request { return httptest.NewRequest(http.MethodGet, logoutURL+"?state=", nil) }},
		{"GET with two states", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, logoutURL+"?state=a&state=b", nil)
		}},
		{"GET with logout_token", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, logoutURL+"?state=a&logout_token="+url.QueryEscape(valid), nil)
		}},
		{"POST with logout_token in the query", func() *http.Request {
			r := logoutPOST(url.Values{"state": {"a"}})
			r.URL.RawQuery = "logout_token=" + url.QueryEscape(valid)
			return r
		}},
		{"PUT", func() *http.Request {
			r := logoutPOST(url.Values{"logout_token": {valid}})
			r.Method = http.MethodPut
			return r
		}},
		{"JSON content type", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, logoutURL, strings.NewReader(`{"logout_token":"`+valid+`"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}},
		{"no content type", func() *http.Request {
			r := logoutPOST(url.Values{"logout_token": {valid}})
			r.Header.Del("Content-Type")
			return r
		}},
		{"multipart", func() *http.Request {
			r := logoutPOST(url.Values{"logout_token": {valid}})
			r.Header.Set("Content-Type", "multipart/form-data; boundary=x")
			return r
		}},
		{"oversized body", func() *http.Request { return logoutPOST(big) }},
		{"two logout tokens", func() *http.Request { return logoutPOST(url.Values{"logout_token": {valid, valid}}) }},
		{"empty logout token", func() *http.Request { return logoutPOST(url.Values{"logout_token": {""}}) }},
		{"POST without logout_token or state", func() *http.Request { return logoutPOST(url.Values{"foo": {"bar"}}) }},
		{"malformed form", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, logoutURL, strings.NewReader("logout_token=%zz"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			ev, err := c.HandleLogout(ctx, tt.req(), logoutURL)
			if err == nil {
				t.Fatalf("HandleLogout() = %+v, want an error", ev)
			}
			wantCode(t, err, CodeInvalidLogout)
		})
	}
}

func TestLogoutTokenKeysUnavailable(t *testing.T) {
	op := newLogoutOP(t, "/end_session")
	c := open(t, op.config(), nil)
	tok := op.signLogout(t, op.logoutClaims(), signOpts{})
	op.front.Close() // the JWKS cannot be fetched
	_, err := c.HandleLogout(context.Background(), logoutPOST(url.Values{"logout_token": {tok}}), logoutURL)
	wantCode(t, err, CodeUnavailable)
	if !errors.Is(err, connectors.ErrUnavailable) {
		t.Errorf("error = %v, want errors.Is ErrUnavailable", err)
	}
}

// A connector whose Extension derives the subject (azuread) cannot map a
// logout token's sub to its upstream subject: it refuses logout tokens.
func TestLogoutTokenRefusedWithSubjectExtension(t *testing.T) {
	op := newLogoutOP(t, "/end_session")
	cfg := op.config()
	c, err := Open(context.Background(), "up", cfg, connectors.Options{HTTPClient: &http.Client{}, CallbackURL: callbackURL}, Extension{
		Subject: func(m map[string]any) (string, error) { return "x/" + m["sub"].(string), nil },
	})
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	_, err = c.HandleLogout(context.Background(), logoutPOST(url.Values{"logout_token": {op.signLogout(t, op.logoutClaims(), signOpts{})}}), logoutURL)
	wantCode(t, err, CodeInvalidLogout)
	// The browser's return and RP-initiated logout still work.
	if ev, err := c.HandleLogout(context.Background(), httptest.NewRequest(http.MethodGet, logoutURL+"?state=s", nil), logoutURL); err != nil || !ev.Returned {
		t.Errorf("HandleLogout(return) = %+v, %v; want Returned", ev, err)
	}
}

// A sign-in without an upstream refresh token (cap_session) keeps its ID
// token next to the limit, and the broker's refreshes keep both.
func TestLogoutWithoutRefreshToken(t *testing.T) {
	op := newLogoutOP(t, "/end_session")
	op.SetStrictOfflineAccess(true)
	cfg := op.config()
	cfg.Prompt = ptr("login")
	c := open(t, cfg, nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	d := dataOf(t, id)
	if d.RefreshToken != "" || d.Until == 0 || len(id.LogoutData) == 0 {
		t.Fatalf("ConnectorData = %s, LogoutData %d bytes; want a cap, no refresh token, and the ID token for logout", id.ConnectorData, len(id.LogoutData))
	}
	if id.RefreshUntil.IsZero() {
		t.Errorf("RefreshUntil is zero, want the cap")
	}
	r, err := c.Refresh(context.Background(), connectors.Scopes{OfflineAccess: true}, connectors.Identity{Subject: id.Subject, ConnectorData: id.ConnectorData})
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	if dataOf(t, r).Until != d.Until {
		t.Errorf("Refresh() changed the cap: %s", r.ConnectorData)
	}
	if _, ok, err := c.LogoutRequest(context.Background(), id, logoutURL, "st"); !ok || err != nil {
		t.Errorf("LogoutRequest() = %v, %v; want a request", ok, err)
	}
}

// TestCheckedVerifyAnswersOnlyForTheVerifiedToken: the key set behind
// checkedVerify vouches for the one token whose signature was verified,
// never for another (a swapped or re-signed token).
func TestCheckedVerifyAnswersOnlyForTheVerifiedToken(t *testing.T) {
	k := checkedToken{raw: "a.b.c", payload: []byte(`{"sub":"x"}`)}
	if p, err := k.VerifySignature(context.Background(), "a.b.c"); err != nil || string(p) != `{"sub":"x"}` {
		t.Fatalf("VerifySignature(the token) = %q, %v; want its payload", p, err)
	}
	for _, other := range []string{"a.b.d", "", "a.b.c "} {
		if p, err := k.VerifySignature(context.Background(), other); err == nil {
			t.Errorf("VerifySignature(%q) = %q, nil; want an error", other, p)
		}
	}
}
