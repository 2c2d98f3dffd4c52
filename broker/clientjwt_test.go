package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/connectors/workload/workloadtest"
)

// TestPrivateKeyJWT is RFC 7523 client authentication, as an attacker would
// probe it.
func TestPrivateKeyJWT(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "c1", Algorithm: "ES256", Use: "sig"}}})
	h := newHarness(t, nil, nil, func(cfg *config.Config) {
		cfg.Clients = append(cfg.Clients, config.Client{
			ID: "robot", Name: "Robot", TokenEndpointAuthMethod: "private_key_jwt", JWKS: string(jwks),
			Audiences: []string{"robot-api"}, Scopes: []string{"read"}, GrantTypes: []string{"client_credentials"},
		})
	})
	now := h.clock.Now()
	assertion := func(k any, mut func(map[string]any)) string {
		c := map[string]any{"iss": "robot", "sub": "robot", "aud": h.issuer + "/token", "jti": oauth.RandomToken(12), "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()}
		if mut != nil {
			mut(c)
		}
		tok, err := workloadtest.SignWith(jose.ES256, k, "c1", c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	form := func(a string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}, "client_assertion_type": {oauth.AssertionTypeJWTBearer}, "client_assertion": {a}}
	}
	good := assertion(key, nil)
	if tr := h.token(form(good), "", ""); tr.status != 200 || tr.AccessToken == "" {
		t.Fatalf("private_key_jwt client_credentials = %d %s: %s", tr.status, tr.Error, tr.Description)
	}
	tests := []struct {
		name string
		form url.Values
	}{
		{"replayed jti", form(good)},
		{"signed by another key", form(assertion(other, nil))},
		{"wrong audience", form(assertion(key, func(c map[string]any) { c["aud"] = "https://elsewhere.example/token" }))},
		{"expired", form(assertion(key, func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }))},
		{"lives too long", form(assertion(key, func(c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() }))},
		{"no jti", form(assertion(key, func(c map[string]any) { delete(c, "jti") }))},
		{"sub differs", form(assertion(key, func(c map[string]any) { c["sub"] = "app" }))},
		{"unknown client", form(assertion(key, func(c map[string]any) { c["iss"], c["sub"] = "ghost", "ghost" }))},
		{"client registered for secrets", form(assertion(key, func(c map[string]any) { c["iss"], c["sub"] = "svc", "svc" }))},
		{"alg none", form(noneToken(map[string]any{"iss": "robot", "sub": "robot", "aud": h.issuer, "jti": "x", "exp": now.Add(time.Minute).Unix()}))},
		{"wrong assertion type", func() url.Values { f := form(assertion(key, nil)); f.Set("client_assertion_type", "urn:x"); return f }()},
		{"assertion plus secret", func() url.Values { f := form(assertion(key, nil)); f.Set("client_secret", "x"); return f }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantOAuthError(t, h.token(tt.form, "", ""), 401, "invalid_client")
		})
	}
	t.Run("secret for a private_key_jwt client", func(t *testing.T) {
		wantOAuthError(t, h.token(url.Values{"grant_type": {"client_credentials"}}, "robot", "anything"), 401, "invalid_client")
	})
}
