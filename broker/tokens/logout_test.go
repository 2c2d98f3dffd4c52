package tokens_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// verifyJWKS checks tok against the broker's published JWKS with go-jose,
// as an application would, and returns its typ header and claims.
func verifyJWKS(t *testing.T, f *runtimetest.Fixture, tok string) (string, map[string]any) {
	t.Helper()
	body, _ := f.Keys.JWKS()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA, jose.PS256, jose.ES384})
	if err != nil {
		t.Fatalf("ParseSignedCompact: %v", err)
	}
	h := jws.Signatures[0].Protected
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in the JWKS", h.KeyID, len(keys))
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("Verify against the JWKS: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	return typ, claims
}

func TestLogoutToken(t *testing.T) {
	a, f := newAuthority(t)
	cl := f.Client(t, "svc")
	now := f.Clock.Now()
	tok, err := a.LogoutToken(cl, "sub-alice", "sid-1", now)
	if err != nil {
		t.Fatal(err)
	}
	typ, c := verifyJWKS(t, f, tok)
	if typ != "logout+jwt" {
		t.Errorf("typ = %q, want logout+jwt", typ)
	}
	want := map[string]any{
		"iss": runtimetest.Issuer,
		"aud": "svc",
		"sub": "sub-alice",
		"sid": "sid-1",
		"iat": float64(now.Unix()),
		"exp": float64(now.Add(2 * time.Minute).Unix()),
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v (%T), want %v", k, c[k], c[k], v)
		}
	}
	if jti, _ := c["jti"].(string); len(jti) < 16 {
		t.Errorf("jti = %v, want a random identifier", c["jti"])
	}
	events, ok := c["events"].(map[string]any)
	if !ok || len(events) != 1 {
		t.Fatalf("events = %#v, want one member", c["events"])
	}
	if ev, ok := events["http://schemas.openid.net/event/backchannel-logout"].(map[string]any); !ok || len(ev) != 0 {
		t.Errorf("events = %#v, want the back-channel logout event with {}", events)
	}
	if _, ok := c["nonce"]; ok {
		t.Errorf("a logout token carries nonce: %v", c)
	}
	if len(c) != 8 {
		t.Errorf("claims = %v, want exactly iss aud sub sid iat exp jti events", c)
	}
	// Signed with the client's algorithm.
	jws, _ := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(cl.Alg)})
	if jws == nil || jws.Signatures[0].Protected.Algorithm != cl.Alg {
		t.Errorf("logout token not signed with the client's algorithm %s", cl.Alg)
	}

	// Every token has its own jti.
	again, err := a.LogoutToken(cl, "sub-alice", "sid-1", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, c2 := verifyJWKS(t, f, again); c2["jti"] == c["jti"] {
		t.Errorf("two logout tokens share jti %v", c["jti"])
	}

	// It is neither an access token nor an ID token hint.
	if _, err := a.CheckAccessToken(context.Background(), tok); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("CheckAccessToken(logout token) = %v, want ErrInvalid", err)
	}
	if _, err := a.CheckIDTokenHint(tok); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("CheckIDTokenHint(logout token) = %v, want ErrInvalid", err)
	}

	// Without a session id: sub only, unless the client requires sid.
	tok, err = a.LogoutToken(cl, "sub-alice", "", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, c := verifyJWKS(t, f, tok); c["sub"] != "sub-alice" || c["sid"] != nil {
		t.Errorf("claims without a session = %v, want sub and no sid", c)
	}
	if _, err := a.LogoutToken(cl, "", "", now); err == nil {
		t.Error("LogoutToken without subject and sid succeeded")
	}
}

func TestLogoutTokenSessionRequired(t *testing.T) {
	f := runtimetest.New(t, "", func(c *config.Config) {
		for i := range c.Clients {
			if c.Clients[i].ID == "svc" {
				c.Clients[i].BackchannelLogoutURI = "https://svc.example.com/logout"
				c.Clients[i].BackchannelLogoutSessionRequired = true
			}
		}
	})
	a := tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: f.Keys, Store: f.Store, Now: f.Clock.Now})
	cl := f.Client(t, "svc")
	tok, err := a.LogoutToken(cl, "sub-alice", "sid-9", f.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, c := verifyJWKS(t, f, tok); c["sid"] != "sid-9" {
		t.Errorf("sid = %v, want sid-9", c["sid"])
	}
	if _, err := a.LogoutToken(cl, "sub-alice", "", f.Clock.Now()); err == nil {
		t.Error("LogoutToken without sid for a client that requires it succeeded")
	}
}

func TestRevokeSession(t *testing.T) {
	a, f := newAuthority(t)
	ctx := context.Background()
	svc := f.Client(t, "svc")
	now := f.Clock.Now()
	g1 := grant("svc")
	g1.SessionID = "sid-ended"
	g2 := grant("svc")
	g2.SessionID = "sid-live"
	g3 := grant("svc")
	g3.SessionID = ""
	ended, _, err := a.AccessToken(svc, g1, svc.Audiences, now)
	if err != nil {
		t.Fatal(err)
	}
	live, _, _ := a.AccessToken(svc, g2, svc.Audiences, now)
	noSession, _, _ := a.AccessToken(svc, g3, svc.Audiences, now)
	for _, tok := range []string{ended, live, noSession} {
		if _, err := a.CheckAccessToken(ctx, tok); err != nil {
			t.Fatalf("CheckAccessToken before the revocation: %v", err)
		}
	}
	if revoked, err := a.SessionRevoked(ctx, "sid-ended"); err != nil || revoked {
		t.Fatalf("SessionRevoked before = %v, %v", revoked, err)
	}
	if err := a.RevokeSession(ctx, "sid-ended", now.Add(config.MaxTokenLifetime+time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeSession(ctx, "sid-ended", now.Add(time.Hour)); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if err := a.RevokeSession(ctx, "", now.Add(time.Hour)); err != nil {
		t.Fatalf("revoking no session: %v", err)
	}
	if _, err := a.CheckAccessToken(ctx, ended); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("CheckAccessToken(token of the ended session) = %v, want ErrInvalid", err)
	}
	if got, err := a.Introspect(ctx, svc, ended); err != nil || got["active"] != false {
		t.Errorf("Introspect(token of the ended session) = %v, %v; want inactive", got, err)
	}
	if _, err := a.Userinfo(ctx, ended); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("Userinfo(token of the ended session) = %v, want ErrInvalid", err)
	}
	if _, err := a.CheckAccessToken(ctx, live); err != nil {
		t.Errorf("CheckAccessToken(another session's token) = %v, want nil", err)
	}
	if _, err := a.CheckAccessToken(ctx, noSession); err != nil {
		t.Errorf("CheckAccessToken(token without a session) = %v, want nil", err)
	}
	if revoked, err := a.SessionRevoked(ctx, "sid-ended"); err != nil || !revoked {
		t.Errorf("SessionRevoked after = %v, %v; want true", revoked, err)
	}
	if revoked, err := a.SessionRevoked(ctx, "sid-live"); err != nil || revoked {
		t.Errorf("SessionRevoked(another) = %v, %v; want false", revoked, err)
	}
}
