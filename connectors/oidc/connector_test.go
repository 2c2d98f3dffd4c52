package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/jwks"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

func TestLoginURL(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	u, st, err := c.LoginURL(context.Background(), connectors.Scopes{}, callbackURL, "xyz")
	if err != nil {
		t.Fatalf("LoginURL() error = %v", err)
	}
	lu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := lu.Query()
	var cs connState
	if err := json.Unmarshal(st, &cs); err != nil {
		t.Fatalf("connState %q: %v", st, err)
	}
	for k, want := range map[string]string{
		"state": "xyz", "redirect_uri": callbackURL, "response_type": "code",
		"code_challenge_method": "S256", "nonce": cs.Nonce, "client_id": idp.ClientID(),
		"scope": "openid profile email offline_access",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("LoginURL %s = %q, want %q", k, got, want)
		}
	}
	if q.Get("code_challenge") == "" || strings.Contains(u, cs.Verifier) {
		t.Errorf("LoginURL = %q: want a code_challenge and no verifier", u)
	}
	_, st2, _ := c.LoginURL(context.Background(), connectors.Scopes{}, callbackURL, "xyz")
	if string(st) == string(st2) {
		t.Errorf("two LoginURL calls returned the same connState %s", st)
	}
}

func TestFlow(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	idp.SetUser(testidp.User{
		Subject:        "u1",
		Claims:         map[string]any{"email": "ada@example.com", "email_verified": true, "name": "Ada"},
		UserinfoClaims: map[string]any{"department": "eng", "sub": "u1"},
	})
	cfg := baseConfig(idp)
	cfg.UserInfo = true
	c := open(t, cfg, nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if id.Subject != "u1" {
		t.Errorf("Subject = %q, want u1", id.Subject)
	}
	for k, want := range map[string]any{"email": "ada@example.com", "name": "Ada", "department": "eng", "iss": idp.URL(), "aud": idp.ClientID()} {
		if got := id.Claims[k]; !cmp.Equal(got, want) {
			t.Errorf("Claims[%q] = %v, want %v", k, got, want)
		}
	}
	var data connectorData
	if err := json.Unmarshal(id.ConnectorData, &data); err != nil || data.RefreshToken == "" {
		t.Errorf("ConnectorData = %s (%v), want a refresh token", id.ConnectorData, err)
	}
}

func TestFlowRS256(t *testing.T) {
	idp := newIdP(t, testidp.Options{Algorithm: jose.RS256})
	if _, err := login(t, open(t, baseConfig(idp), nil)); err != nil {
		t.Fatalf("login with RS256 error = %v", err)
	}
}

func TestOfflineAccessOff(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	cfg := baseConfig(idp)
	off := false
	cfg.OfflineAccess = &off
	id, err := login(t, open(t, cfg, nil))
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if id.ConnectorData != nil {
		t.Errorf("ConnectorData = %s, want none with offline_access off", id.ConnectorData)
	}
}

func TestCallbackFailures(t *testing.T) {
	tests := []struct {
		name   string
		cfg    func(*Config)
		idp    func(*testidp.IdP)
		want   string
		wantIs error
	}{
		{name: "access denied", idp: func(p *testidp.IdP) { p.SetAuthorizeError("access_denied") }, want: CodeAccessDenied},
		{name: "other authorize error", idp: func(p *testidp.IdP) { p.SetAuthorizeError("invalid_scope") }, want: CodeUpstreamError},
		{name: "wrong nonce", idp: func(p *testidp.IdP) { p.SetTamper(testidp.Tamper{WrongNonce: true}) }, want: CodeInvalidToken},
		{name: "expired", idp: func(p *testidp.IdP) { p.SetTamper(testidp.Tamper{Expired: true}) }, want: CodeTokenExpired},
		{name: "foreign key under known kid", idp: func(p *testidp.IdP) { p.SetTamper(testidp.Tamper{ForeignKey: true}) }, want: CodeInvalidToken},
		{name: "unknown kid", idp: func(p *testidp.IdP) { p.SetTamper(testidp.Tamper{UnknownKid: true}) }, want: CodeInvalidToken},
		{name: "wrong audience", idp: func(p *testidp.IdP) { p.SetTamper(testidp.Tamper{WrongAud: true}) }, want: CodeInvalidToken},
		{name: "wrong iss in token", idp: func(p *testidp.IdP) {
			p.SetTamper(testidp.Tamper{ExtraClaims: map[string]any{"iss": "https://evil.example"}})
		}, want: CodeInvalidToken},
		{name: "algorithm not allowed", cfg: func(c *Config) { c.AllowedAlgorithms = []string{"RS256"} }, want: CodeInvalidToken},
		{name: "email not verified", idp: func(p *testidp.IdP) {
			p.SetTamper(testidp.Tamper{ExtraClaims: map[string]any{"email_verified": false}})
		}, want: CodeEmailNotVerified},
		{name: "email_verified missing", idp: func(p *testidp.IdP) {
			p.SetTamper(testidp.Tamper{ExtraClaims: map[string]any{"email_verified": nil}})
		}, want: CodeEmailNotVerified},
		{name: "token endpoint 503", idp: func(p *testidp.IdP) { p.SetTokenError(503, "temporarily_unavailable") }, want: CodeUnavailable, wantIs: connectors.ErrUnavailable},
		{name: "token endpoint invalid_client", idp: func(p *testidp.IdP) { p.SetTokenError(401, "invalid_client") }, want: CodeUpstreamError},
		{name: "wrong client secret", cfg: func(c *Config) { c.ClientSecret = "wrong" }, want: CodeUpstreamError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t, testidp.Options{})
			cfg := baseConfig(idp)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c := open(t, cfg, nil)
			if tt.idp != nil {
				tt.idp(idp)
			}
			id, err := login(t, c)
			if err == nil {
				t.Fatalf("login = %+v, want error %s", id, tt.want)
			}
			wantCode(t, err, tt.want)
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("login error = %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
}

func TestEmailVerifiedSkip(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	idp.SetTamper(testidp.Tamper{ExtraClaims: map[string]any{"email_verified": false}})
	cfg := baseConfig(idp)
	cfg.InsecureSkipEmailVerified = true
	if _, err := login(t, open(t, cfg, nil)); err != nil {
		t.Fatalf("login with insecure_skip_email_verified error = %v", err)
	}
}

func TestSlowUpstream(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	cfg := baseConfig(idp)
	cfg.Timeout = 200 * time.Millisecond
	c := open(t, cfg, nil)
	ctx := context.Background()
	u, st, err := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "s")
	if err != nil {
		t.Fatal(err)
	}
	r, err := testidp.CallbackRequest(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	idp.SetDelay(2 * time.Second)
	start := time.Now()
	_, err = c.HandleCallback(ctx, connectors.Scopes{}, st, r)
	wantCode(t, err, CodeUnavailable)
	if !errors.Is(err, connectors.ErrUnavailable) {
		t.Errorf("error = %v, want errors.Is ErrUnavailable", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("HandleCallback took %s, want about the 200ms timeout", d)
	}
}

func TestUpstreamDown(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	ctx := context.Background()
	u, st, _ := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "s")
	r, err := testidp.CallbackRequest(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	idp.Close()
	_, err = c.HandleCallback(ctx, connectors.Scopes{}, st, r)
	wantCode(t, err, CodeUnavailable)
}

func TestConnStateAndCallbackGarbage(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	ctx := context.Background()
	_, good, _ := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "s")
	tests := []struct {
		name  string
		state []byte
		query string
		want  string
	}{
		{"empty state", nil, "code=abc&state=s", CodeInvalidState},
		{"garbage state", []byte("\x00not json"), "code=abc&state=s", CodeInvalidState},
		{"empty object", []byte("{}"), "code=abc&state=s", CodeInvalidState},
		{"no code", good, "state=s", CodeInvalidResponse},
		{"unknown code", good, "code=forged&state=s", CodeInvalidResponse},
		{"error with odd code", good, "error=%3Cscript%3E&state=s", CodeUpstreamError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, callbackURL+"?"+tt.query, nil)
			_, err := c.HandleCallback(ctx, connectors.Scopes{}, tt.state, r)
			ue := wantCode(t, err, tt.want)
			if strings.Contains(ue.Message, "<") {
				t.Errorf("Message %q echoes upstream input", ue.Message)
			}
		})
	}
}

func TestCodeReplay(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	ctx := context.Background()
	u, st, _ := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "s")
	r, err := testidp.CallbackRequest(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleCallback(ctx, connectors.Scopes{}, st, r); err != nil {
		t.Fatalf("first HandleCallback error = %v", err)
	}
	_, err = c.HandleCallback(ctx, connectors.Scopes{}, st, r)
	wantCode(t, err, CodeInvalidResponse)
}

func TestStateFromAnotherLogin(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	ctx := context.Background()
	u, _, _ := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "s")
	_, other, _ := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "s")
	r, err := testidp.CallbackRequest(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	// Another login's verifier fails PKCE at the upstream.
	_, err = c.HandleCallback(ctx, connectors.Scopes{}, other, r)
	wantCode(t, err, CodeInvalidResponse)
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	idp.SetIssuer("https://impostor.example")
	cfg := baseConfig(idp)
	_, err := cfg.Open(context.Background(), "up", connectors.Options{HTTPClient: &http.Client{}, CallbackURL: callbackURL})
	if err == nil || !strings.Contains(err.Error(), "impostor") {
		t.Fatalf("Open() error = %v, want an issuer mismatch", err)
	}
}

func TestDiscoveryUnreachable(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	cfg := baseConfig(idp)
	idp.Close()
	if _, err := cfg.Open(context.Background(), "up", connectors.Options{HTTPClient: &http.Client{}}); err == nil {
		t.Fatal("Open() against a closed upstream succeeded")
	}
}

func TestKeyRotation(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	clk := &clock{}
	c := open(t, baseConfig(idp), clk)
	if _, err := login(t, c); err != nil {
		t.Fatalf("login error = %v", err)
	}
	idp.RotateKey()
	clk.Advance(2 * DefaultKeyRefreshInterval)
	before := idp.KeyFetches()
	for i := range 3 {
		if _, err := login(t, c); err != nil {
			t.Fatalf("login %d after rotation error = %v", i, err)
		}
	}
	if got := idp.KeyFetches() - before; got != 1 {
		t.Errorf("JWKS fetches after rotation = %d, want 1", got)
	}
}

func TestUnknownKidRateLimited(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	clk := &clock{}
	c := open(t, baseConfig(idp), clk)
	if _, err := login(t, c); err != nil {
		t.Fatalf("login error = %v", err)
	}
	idp.SetTamper(testidp.Tamper{UnknownKid: true})
	before := idp.KeyFetches()
	for range 4 {
		_, err := login(t, c)
		wantCode(t, err, CodeInvalidToken)
	}
	if got := idp.KeyFetches() - before; got != 0 {
		t.Errorf("JWKS fetches within the refresh interval = %d, want 0", got)
	}
	clk.Advance(2 * DefaultKeyRefreshInterval)
	for range 4 {
		_, err := login(t, c)
		wantCode(t, err, CodeInvalidToken)
	}
	if got := idp.KeyFetches() - before; got != 1 {
		t.Errorf("JWKS fetches after the interval = %d, want 1", got)
	}
}

func TestRefresh(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	ctx := context.Background()
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	idp.SetUser(testidp.User{Subject: "u1", Claims: map[string]any{"email": "ada@example.com", "email_verified": true, "name": "Ada Lovelace"}})
	nid, err := c.Refresh(ctx, connectors.Scopes{OfflineAccess: true}, id)
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	if nid.Subject != "u1" || nid.Claims["name"] != "Ada Lovelace" {
		t.Errorf("Refresh() = %q %v, want u1 with the new name", nid.Subject, nid.Claims["name"])
	}
	if string(nid.ConnectorData) == string(id.ConnectorData) {
		t.Errorf("Refresh() kept ConnectorData %s, want the rotated refresh token", nid.ConnectorData)
	}
	// The old refresh token was rotated away upstream.
	_, err = c.Refresh(ctx, connectors.Scopes{}, id)
	wantCode(t, err, CodeRefreshDenied)

	idp.DisableUser("u1")
	_, err = c.Refresh(ctx, connectors.Scopes{}, nid)
	wantCode(t, err, CodeRefreshDenied)
}

func TestRefreshWithoutToken(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	in := connectors.Identity{Subject: "u1", Claims: map[string]any{"a": "b"}}
	got, err := c.Refresh(context.Background(), connectors.Scopes{}, in)
	if err != nil || !cmp.Equal(got, in) {
		t.Errorf("Refresh(no data) = %+v, %v; want the identity unchanged", got, err)
	}
	in.ConnectorData = []byte("garbage")
	_, err = c.Refresh(context.Background(), connectors.Scopes{}, in)
	wantCode(t, err, CodeInvalidState)
}

func TestRefreshSubjectChange(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatal(err)
	}
	id.Subject = "someone-else"
	_, err = c.Refresh(context.Background(), connectors.Scopes{}, id)
	wantCode(t, err, CodeInvalidToken)
}

func TestAzpWithSeveralAudiences(t *testing.T) {
	tests := []struct {
		name   string
		claims map[string]any
		ok     bool
	}{
		{"azp is the client", map[string]any{"aud": []any{"client", "api"}, "azp": "client"}, true},
		{"azp missing", map[string]any{"aud": []any{"client", "api"}}, false},
		{"azp another party", map[string]any{"aud": []any{"client", "api"}, "azp": "api"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t, testidp.Options{})
			c := open(t, baseConfig(idp), nil)
			idp.SetTamper(testidp.Tamper{ExtraClaims: tt.claims})
			_, err := login(t, c)
			if tt.ok {
				if err != nil {
					t.Fatalf("login error = %v", err)
				}
				return
			}
			wantCode(t, err, CodeInvalidToken)
		})
	}
}

func TestKeysRefetchedWhenStale(t *testing.T) {
	idp := newIdP(t, testidp.Options{TokenLifetime: 3 * time.Hour})
	clk := &clock{}
	c := open(t, baseConfig(idp), clk)
	if _, err := login(t, c); err != nil {
		t.Fatal(err)
	}
	before := idp.KeyFetches()
	if _, err := login(t, c); err != nil {
		t.Fatal(err)
	}
	clk.Advance(jwks.DefaultMaxAge + time.Minute)
	if _, err := login(t, c); err != nil {
		t.Fatal(err)
	}
	if got := idp.KeyFetches() - before; got != 1 {
		t.Errorf("JWKS fetches across one max age = %d, want 1", got)
	}
}

// TestLoginVerifiesTheSignatureOnce: a sign-in checks the upstream ID
// token's signature once; go-oidc's verifier, which checks the claims,
// must not verify it a second time (the ECDSA verification is most of a
// sign-in's CPU). The key set here fetches the keys again before every
// verification, so the IdP's key fetches count the verifications.
func TestLoginVerifiesTheSignatureOnce(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	c.keys = jwks.NewRemote(idp.URL()+"/keys", jwks.Options{Client: &http.Client{}, MinRefresh: time.Nanosecond, MaxAge: time.Nanosecond, Algorithms: c.algs})
	before := idp.KeyFetches()
	const logins = 3
	for range logins {
		time.Sleep(time.Millisecond) // past MaxAge and MinRefresh on any clock
		if _, err := login(t, c); err != nil {
			t.Fatalf("login: %v", err)
		}
	}
	if got := idp.KeyFetches() - before; got != logins {
		t.Errorf("%d sign-ins made %d signature verifications, want %d", logins, got, logins)
	}
}
