package clientauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/url"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
)

type fixture struct {
	*runtimetest.Fixture
	a   *clientauth.Authenticator
	key *ecdsa.PrivateKey
}

func newFixture(t *testing.T) fixture {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	f := runtimetest.New(t, "", func(c *config.Config) {
		c.Clients = append(c.Clients, config.Client{ID: "robot", Name: "Robot", TokenEndpointAuthMethod: "private_key_jwt", JWKS: string(jwks), GrantTypes: []string{"client_credentials"}})
	})
	return fixture{f, clientauth.New(clientauth.Deps{Issuer: runtimetest.Issuer, Replay: f.Store, Now: f.Clock.Now}), key}
}

func (f fixture) assertion(t *testing.T, claims map[string]any, key *ecdsa.PrivateKey) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f fixture) claims(edit func(map[string]any)) map[string]any {
	now := f.Clock.Now()
	c := map[string]any{"iss": "robot", "sub": "robot", "aud": runtimetest.Issuer + "/token", "jti": oauth.RandomToken(12), "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()}
	if edit != nil {
		edit(c)
	}
	return c
}

func code(err error) string {
	var oe *oauth.Error
	if errors.As(err, &oe) {
		return oe.Code
	}
	if err != nil {
		return "non-oauth: " + err.Error()
	}
	return ""
}

func TestSecrets(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  clientauth.Request
		want string // client id, or an OAuth error code
	}{
		{"basic", clientauth.Request{HasBasic: true, BasicUser: "svc", BasicPassword: runtimetest.SvcSecret}, "svc"},
		{"post", clientauth.Request{Form: url.Values{"client_id": {"svc"}, "client_secret": {runtimetest.SvcSecret}}}, "svc"},
		{"public", clientauth.Request{Form: url.Values{"client_id": {"app"}}}, "app"},
		{"wrong secret", clientauth.Request{HasBasic: true, BasicUser: "svc", BasicPassword: "nope"}, oauth.ErrInvalidClient},
		{"unknown client", clientauth.Request{HasBasic: true, BasicUser: "ghost", BasicPassword: "x"}, oauth.ErrInvalidClient},
		{"two methods", clientauth.Request{HasBasic: true, BasicUser: "svc", BasicPassword: runtimetest.SvcSecret, Form: url.Values{"client_secret": {runtimetest.SvcSecret}}}, oauth.ErrInvalidClient},
		{"confidential without secret", clientauth.Request{Form: url.Values{"client_id": {"svc"}}}, oauth.ErrInvalidClient},
		{"public with a secret", clientauth.Request{Form: url.Values{"client_id": {"app"}, "client_secret": {"x"}}}, oauth.ErrInvalidClient},
		{"basic and another client_id", clientauth.Request{HasBasic: true, BasicUser: "svc", BasicPassword: runtimetest.SvcSecret, Form: url.Values{"client_id": {"app"}}}, oauth.ErrInvalidClient},
		{"repeated client_id", clientauth.Request{Form: url.Values{"client_id": {"app", "svc"}}}, oauth.ErrInvalidRequest},
		{"malformed basic encoding", clientauth.Request{HasBasic: true, BasicUser: "svc%zz", BasicPassword: "x"}, oauth.ErrInvalidClient},
		{"huge secret", clientauth.Request{HasBasic: true, BasicUser: "svc", BasicPassword: string(make([]byte, 600))}, oauth.ErrInvalidClient},
		{"nothing", clientauth.Request{}, oauth.ErrInvalidClient},
		{"secret for a private_key_jwt client", clientauth.Request{HasBasic: true, BasicUser: "robot", BasicPassword: "x"}, oauth.ErrInvalidClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := f.a.Authenticate(ctx, f.Runtime, tc.req)
			got := code(err)
			if err == nil {
				got = cl.ID
			}
			if got != tc.want {
				t.Fatalf("Authenticate = %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	form := func(assertion string) clientauth.Request {
		return clientauth.Request{Form: url.Values{"client_assertion_type": {oauth.AssertionTypeJWTBearer}, "client_assertion": {assertion}}}
	}
	good := f.assertion(t, f.claims(nil), f.key)
	if cl, err := f.a.Authenticate(ctx, f.Runtime, form(good)); err != nil || cl.ID != "robot" {
		t.Fatalf("Authenticate(good assertion) = %v", err)
	}
	if _, err := f.a.Authenticate(ctx, f.Runtime, form(good)); code(err) != oauth.ErrInvalidClient {
		t.Fatalf("replayed assertion = %v, want invalid_client", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name      string
		assertion string
	}{
		{"forged signature", f.assertion(t, f.claims(nil), other)},
		{"expired", f.assertion(t, f.claims(func(c map[string]any) { c["exp"] = f.Clock.Now().Add(-time.Minute).Unix() }), f.key)},
		{"lives too long", f.assertion(t, f.claims(func(c map[string]any) { c["exp"] = f.Clock.Now().Add(time.Hour).Unix() }), f.key)},
		{"not yet valid", f.assertion(t, f.claims(func(c map[string]any) { c["nbf"] = f.Clock.Now().Add(time.Hour).Unix() }), f.key)},
		{"no jti", f.assertion(t, f.claims(func(c map[string]any) { delete(c, "jti") }), f.key)},
		{"wrong audience", f.assertion(t, f.claims(func(c map[string]any) { c["aud"] = "https://other.example/token" }), f.key)},
		{"sub is another client", f.assertion(t, f.claims(func(c map[string]any) { c["sub"] = "svc" }), f.key)},
		{"iss of a secret client", f.assertion(t, f.claims(func(c map[string]any) { c["iss"], c["sub"] = "svc", "svc" }), f.key)},
		{"garbage", "not.a.jwt"},
		{"oversized", string(make([]byte, 17<<10))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.a.Authenticate(ctx, f.Runtime, form(tc.assertion)); code(err) != oauth.ErrInvalidClient {
				t.Fatalf("Authenticate = %v, want invalid_client", err)
			}
		})
	}
	t.Run("HMAC with the public key as secret", func(t *testing.T) {
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("public-key-bytes-as-an-hmac-secret")}, nil)
		s, _ := jwt.Signed(signer).Claims(f.claims(nil)).Serialize()
		if _, err := f.a.Authenticate(ctx, f.Runtime, form(s)); code(err) != oauth.ErrInvalidClient {
			t.Fatalf("HS256 assertion = %v, want invalid_client", err)
		}
	})
	t.Run("wrong assertion type", func(t *testing.T) {
		req := form(f.assertion(t, f.claims(nil), f.key))
		req.Form.Set("client_assertion_type", "urn:other")
		if _, err := f.a.Authenticate(ctx, f.Runtime, req); code(err) != oauth.ErrInvalidClient {
			t.Fatalf("Authenticate = %v, want invalid_client", err)
		}
	})
}
