package verify

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// logoutClaims returns valid Logout Token claims at the issuer's clock,
// each time with a new jti.
func (is *testIssuer) logoutClaims() map[string]any {
	now := is.clock.now()
	return map[string]any{
		"iss":    is.url(),
		"aud":    testAudience,
		"iat":    now.Unix(),
		"exp":    now.Add(2 * time.Minute).Unix(),
		"jti":    rand.Text(),
		"sub":    "user-123",
		"sid":    "sid-1",
		"events": map[string]any{BackchannelLogoutEvent: map[string]any{}},
	}
}

func TestVerifyLogoutTokenAccepts(t *testing.T) {
	is, k, v, clock := setup(t)
	tests := []struct {
		name   string
		typ    string
		mutate func(map[string]any)
		sub    string
		sid    string
	}{
		{name: "sub and sid", typ: "logout+jwt", sub: "user-123", sid: "sid-1"},
		{name: "typ media type", typ: "application/logout+jwt", sub: "user-123", sid: "sid-1"},
		{name: "no typ", typ: "", sub: "user-123", sid: "sid-1"},
		{name: "sub only", typ: "logout+jwt", mutate: func(c map[string]any) { delete(c, "sid") }, sub: "user-123"},
		{name: "sid only", typ: "logout+jwt", mutate: func(c map[string]any) { delete(c, "sub") }, sid: "sid-1"},
		{name: "aud list", typ: "logout+jwt", mutate: func(c map[string]any) { c["aud"] = []string{"other", testAudience} }, sub: "user-123", sid: "sid-1"},
		{name: "another event too", typ: "logout+jwt", mutate: func(c map[string]any) {
			c["events"] = map[string]any{BackchannelLogoutEvent: map[string]any{}, "https://example.com/other": map[string]any{"x": 1}}
		}, sub: "user-123", sid: "sid-1"},
		{name: "expired within leeway", typ: "logout+jwt", mutate: func(c map[string]any) {
			c["exp"] = clock.now().Add(-DefaultLeeway + time.Second).Unix()
		}, sub: "user-123", sid: "sid-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := is.logoutClaims()
			if tt.mutate != nil {
				tt.mutate(c)
			}
			got, err := v.VerifyLogoutToken(t.Context(), sign(t, k, tt.typ, c))
			if err != nil {
				t.Fatalf("VerifyLogoutToken() error = %v, want nil", err)
			}
			if got.Issuer != is.url() || got.Subject != tt.sub || got.SessionID != tt.sid || got.JTI != c["jti"] ||
				!got.IssuedAt.Equal(clock.now()) || got.Raw["events"] == nil {
				t.Errorf("VerifyLogoutToken() = %+v, want iss %s, sub %q, sid %q, jti %v", got, is.url(), tt.sub, tt.sid, c["jti"])
			}
		})
	}
}

func TestVerifyLogoutTokenRefuses(t *testing.T) {
	is, k, v, clock := setup(t)
	now := clock.now()
	unpublished := newKey(t, jose.ES256)
	attacker := newKey(t, jose.ES256)
	valid := func(mut func(map[string]any)) map[string]any {
		c := is.logoutClaims()
		if mut != nil {
			mut(c)
		}
		return c
	}
	idToken := is.claims()
	idToken["aud"] = testAudience
	idToken["nonce"] = "n-0S6_WzA2Mj"
	idToken["sid"] = "sid-1"
	good := sign(t, k, "logout+jwt", valid(nil))
	parts := strings.Split(good, ".")

	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"ID token presented", sign(t, k, "JWT", idToken), ErrWrongType},
		{"ID token without typ", sign(t, k, "", idToken), ErrNotLogoutToken},
		{"access token presented", sign(t, k, "at+jwt", is.claims()), ErrWrongType},
		{"nonce present", sign(t, k, "logout+jwt", valid(func(c map[string]any) { c["nonce"] = "abc" })), ErrNotLogoutToken},
		{"missing events", sign(t, k, "logout+jwt", valid(func(c map[string]any) { delete(c, "events") })), ErrNotLogoutToken},
		{"events without the logout event", sign(t, k, "logout+jwt", valid(func(c map[string]any) {
			c["events"] = map[string]any{"https://example.com/other": map[string]any{}}
		})), ErrNotLogoutToken},
		{"logout event not an object", sign(t, k, "logout+jwt", valid(func(c map[string]any) {
			c["events"] = map[string]any{BackchannelLogoutEvent: true}
		})), ErrNotLogoutToken},
		{"events not an object", sign(t, k, "logout+jwt", valid(func(c map[string]any) { c["events"] = []string{BackchannelLogoutEvent} })), ErrNotLogoutToken},
		{"wrong aud", sign(t, k, "logout+jwt", valid(func(c map[string]any) { c["aud"] = "another-client" })), ErrWrongAudience},
		{"wrong aud list", sign(t, k, "logout+jwt", valid(func(c map[string]any) { c["aud"] = []string{"a", "b"} })), ErrWrongAudience},
		{"no aud", sign(t, k, "logout+jwt", valid(func(c map[string]any) { delete(c, "aud") })), ErrWrongAudience},
		{"wrong issuer", sign(t, k, "logout+jwt", valid(func(c map[string]any) { c["iss"] = "https://evil.example" })), ErrWrongIssuer},
		{"expired", sign(t, k, "logout+jwt", valid(func(c map[string]any) { c["exp"] = now.Add(-DefaultLeeway - time.Second).Unix() })), ErrExpired},
		{"iat in the future", sign(t, k, "logout+jwt", valid(func(c map[string]any) { c["iat"] = now.Add(DefaultLeeway + time.Minute).Unix() })), ErrNotYetValid},
		{"missing iat", sign(t, k, "logout+jwt", valid(func(c map[string]any) { delete(c, "iat") })), ErrMalformed},
		{"missing exp", sign(t, k, "logout+jwt", valid(func(c map[string]any) { delete(c, "exp") })), ErrMalformed},
		{"missing jti", sign(t, k, "logout+jwt", valid(func(c map[string]any) { delete(c, "jti") })), ErrMalformed},
		{"missing iss", sign(t, k, "logout+jwt", valid(func(c map[string]any) { delete(c, "iss") })), ErrMalformed},
		{"missing sub and sid", sign(t, k, "logout+jwt", valid(func(c map[string]any) { delete(c, "sub"); delete(c, "sid") })), ErrMalformed},
		{"empty sub and sid", sign(t, k, "logout+jwt", valid(func(c map[string]any) { c["sub"] = ""; c["sid"] = "" })), ErrMalformed},
		{"sid not a string", sign(t, k, "logout+jwt", valid(func(c map[string]any) { c["sid"] = 7 })), ErrMalformed},
		{"exp as string", sign(t, k, "logout+jwt", valid(func(c map[string]any) { c["exp"] = "soon" })), ErrMalformed},
		{"typ other", sign(t, k, "secevent+jwt", valid(nil)), ErrWrongType},
		{"alg none", b64(t, map[string]any{"alg": "none", "typ": "logout+jwt", "kid": k.kid}) + "." + parts[1] + ".", ErrInvalidSignature},
		{"HS256", signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
			(&jose.SignerOptions{}).WithType("logout+jwt").WithHeader(jose.HeaderKey("kid"), k.kid), valid(nil)), ErrInvalidSignature},
		{"wrong key with published kid", sign(t, testKey{kid: k.kid, alg: jose.ES256, priv: attacker.priv}, "logout+jwt", valid(nil)), ErrInvalidSignature},
		{"embedded jwk of attacker", signWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: attacker.priv},
			(&jose.SignerOptions{EmbedJWK: true}).WithType("logout+jwt"), valid(nil)), ErrInvalidSignature},
		{"unknown key", sign(t, unpublished, "logout+jwt", valid(nil)), ErrUnknownKey},
		{"tampered payload", parts[0] + "." + b64(t, valid(func(c map[string]any) { c["sub"] = "admin" })) + "." + parts[2], ErrInvalidSignature},
		{"empty", "", ErrMalformed},
		{"not a JWS", "a.b", ErrMalformed},
		{"oversized", strings.Repeat("a", MaxTokenSize) + ".b.c", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.VerifyLogoutToken(t.Context(), tt.token)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyLogoutToken() error = %v, want %v", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("VerifyLogoutToken() claims = %+v, want nil", got)
			}
		})
	}
	// A logout token is no access token either.
	if _, err := v.Verify(t.Context(), good); !errors.Is(err, ErrWrongType) {
		t.Errorf("Verify(logout token) error = %v, want ErrWrongType", err)
	}
}

func TestVerifyLogoutTokenReplay(t *testing.T) {
	is, k, v, clock := setup(t)
	c := is.logoutClaims()
	tok := sign(t, k, "logout+jwt", c)
	if _, err := v.VerifyLogoutToken(t.Context(), tok); err != nil {
		t.Fatalf("first VerifyLogoutToken() = %v", err)
	}
	if _, err := v.VerifyLogoutToken(t.Context(), tok); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replayed VerifyLogoutToken() = %v, want ErrReplayed", err)
	}
	// Another token with the same jti is a replay too.
	c["sid"] = "sid-2"
	if _, err := v.VerifyLogoutToken(t.Context(), sign(t, k, "logout+jwt", c)); !errors.Is(err, ErrReplayed) {
		t.Errorf("same jti, other token: %v, want ErrReplayed", err)
	}
	// A new jti passes.
	if _, err := v.VerifyLogoutToken(t.Context(), sign(t, k, "logout+jwt", is.logoutClaims())); err != nil {
		t.Errorf("new jti: %v", err)
	}
	// A token refused for another reason is not remembered.
	bad := is.logoutClaims()
	bad["exp"] = clock.now().Add(-time.Hour).Unix()
	if _, err := v.VerifyLogoutToken(t.Context(), sign(t, k, "logout+jwt", bad)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	bad["exp"] = clock.now().Add(time.Minute).Unix()
	if _, err := v.VerifyLogoutToken(t.Context(), sign(t, k, "logout+jwt", bad)); err != nil {
		t.Errorf("jti of a refused token refused later: %v", err)
	}
	// Logout token ids and DPoP proof ids do not collide.
	if v.replay.Seen("logout+jwt "+bad["jti"].(string), time.Now().Add(time.Minute)) != true {
		t.Errorf("the accepted jti is not in the replay cache")
	}
}

func TestBackchannelLogoutHandler(t *testing.T) {
	is, k, v, _ := setup(t)
	var ended []*LogoutClaims
	fail := false
	h := v.BackchannelLogoutHandler(func(ctx context.Context, c *LogoutClaims) error {
		if fail {
			return errors.New("session store down")
		}
		ended = append(ended, c)
		return nil
	})
	post := func(form url.Values, contentType string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/backchannel-logout", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", cc)
		}
		return w
	}
	const form = "application/x-www-form-urlencoded"

	w := post(url.Values{"logout_token": {sign(t, k, "logout+jwt", is.logoutClaims())}}, form)
	if w.Code != http.StatusOK || len(ended) != 1 || ended[0].SessionID != "sid-1" || ended[0].Subject != "user-123" {
		t.Fatalf("valid logout: %d, ended %+v; want 200 and the session ended", w.Code, ended)
	}

	for name, tc := range map[string]struct {
		form url.Values
		ct   string
	}{
		"invalid token":      {url.Values{"logout_token": {"a.b.c"}}, form},
		"no token":           {url.Values{"x": {"y"}}, form},
		"two tokens":         {url.Values{"logout_token": {sign(t, k, "logout+jwt", is.logoutClaims()), sign(t, k, "logout+jwt", is.logoutClaims())}}, form},
		"JSON body":          {url.Values{"logout_token": {sign(t, k, "logout+jwt", is.logoutClaims())}}, "application/json"},
		"ID token presented": {url.Values{"logout_token": {sign(t, k, "JWT", is.claims())}}, form},
	} {
		w := post(tc.form, tc.ct)
		var body map[string]string
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", name, w.Code, w.Body)
		}
	}
	if len(ended) != 1 {
		t.Errorf("refused requests ended sessions: %+v", ended)
	}

	fail = true
	if w := post(url.Values{"logout_token": {sign(t, k, "logout+jwt", is.logoutClaims())}}, form); w.Code != http.StatusInternalServerError {
		t.Errorf("failing end: %d, want 500 (the broker retries)", w.Code)
	}

	r := httptest.NewRequest(http.MethodGet, "/backchannel-logout", nil)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", w.Code)
	}
}
