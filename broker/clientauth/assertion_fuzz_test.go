package clientauth_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
)

// fuzzNow is the fuzz target's fixed clock, so that the valid seeds made
// by one fuzzing process stay valid in every other.
var fuzzNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fuzzKey is the client's Ed25519 key, fixed for the same reason (Ed25519
// signatures are deterministic, ECDSA ones are not).
var fuzzKey = ed25519.NewKeyFromSeed([]byte("fedbroker-fuzz-client-assertion!"))

func fuzzSign(tb testing.TB, key any, alg jose.SignatureAlgorithm, kid string, claims map[string]any, extra map[string]any) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	for k, v := range extra {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func fuzzClaims(edit func(map[string]any)) map[string]any {
	c := map[string]any{"iss": "robot", "sub": "robot", "aud": runtimetest.Issuer + "/token", "jti": "fuzz-jti-1",
		"iat": fuzzNow.Unix(), "exp": fuzzNow.Add(2 * time.Minute).Unix()}
	if edit != nil {
		edit(c)
	}
	return c
}

// FuzzClientAssertion sends arbitrary client assertions, and mutations of
// valid ones, through the Authenticator. It never panics, every refusal is
// an invalid_client OAuth error, and it authenticates only the exact
// assertions this test signed with the client's key and good claims.
func FuzzClientAssertion(f *testing.F) {
	jwksJSON, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: fuzzKey.Public(), KeyID: "k1", Algorithm: "EdDSA", Use: "sig"}}})
	if err != nil {
		f.Fatal(err)
	}
	fx := runtimetest.New(f, "", func(c *config.Config) {
		c.Clients = append(c.Clients, config.Client{ID: "robot", Name: "Robot", TokenEndpointAuthMethod: "private_key_jwt", JWKS: string(jwksJSON), GrantTypes: []string{"client_credentials"}})
	})
	// Every jti is fresh, so that a replay refusal cannot hide an
	// assertion that should not authenticate at all.
	a := clientauth.New(clientauth.Deps{Issuer: runtimetest.Issuer, Replay: forgetful{}, Now: func() time.Time { return fuzzNow }})

	sign := func(edit func(map[string]any), extra map[string]any) string {
		return fuzzSign(f, fuzzKey, jose.EdDSA, "k1", fuzzClaims(edit), extra)
	}
	valid := map[string]bool{
		sign(nil, nil): true,
		sign(func(c map[string]any) { c["aud"] = []string{runtimetest.Issuer}; c["jti"] = "fuzz-jti-2" }, nil): true,
		sign(func(c map[string]any) { delete(c, "iat"); c["jti"] = "fuzz-jti-3" }, nil):                        true,
	}
	ctx := context.Background()
	for v := range valid {
		if cl, err := a.Authenticate(ctx, fx.Runtime, assertionForm(v)); err != nil || cl.ID != "robot" {
			f.Fatalf("valid seed %q: Authenticate = %v", v, err)
		}
		f.Add(v, "")
		f.Add(v, "robot")
		f.Add(v, "svc")
		parts := strings.Split(v, ".")
		f.Add(v[:len(v)-10], "")                                                                      // truncated signature
		f.Add(parts[0]+"."+parts[1], "")                                                              // two segments
		f.Add(v+"."+parts[2], "")                                                                     // four segments
		f.Add(parts[0]+"."+parts[1]+".", "")                                                          // empty signature
		f.Add(parts[0]+".."+parts[2], "")                                                             // empty payload
		f.Add(v+"\n", "")                                                                             // trailing LF
		f.Add(parts[0]+"."+parts[1][:6]+"\r\n"+parts[1][6:]+"."+parts[2], "")                         // CRLF inside
		f.Add(v[:len(v)-1]+string(v[len(v)-1]^1), "")                                                 // low bit of the signature's last character
		f.Add(`{"protected":"`+parts[0]+`","payload":"`+parts[1]+`","signature":"`+parts[2]+`"}`, "") // JSON serialization
	}
	b64 := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(fuzzClaims(nil))
	f.Add(b64([]byte(`{"alg":"none","typ":"JWT"}`))+"."+b64(payload)+".", "")
	f.Add(b64([]byte(`{"alg":"none","kid":"k1"}`))+"."+b64(payload)+".", "robot")
	f.Add(fuzzSign(f, []byte(fuzzKey.Public().(ed25519.PublicKey)), jose.HS256, "k1", fuzzClaims(nil), nil), "") // HMAC keyed with the public key
	f.Add(fuzzSign(f, jwksJSON, jose.HS256, "k1", fuzzClaims(nil), nil), "")                                     // HMAC keyed with the JWKS
	f.Add(sign(nil, map[string]any{"zip": "DEF"}), "")
	f.Add(sign(nil, map[string]any{"crit": []string{"b64"}, "b64": true}), "")
	f.Add(sign(func(c map[string]any) { c["aud"] = []string{runtimetest.Issuer, "https://evil.example"} }, nil), "")
	f.Add(sign(func(c map[string]any) { c["iat"] = fuzzNow.AddDate(1, 0, 0).Unix() }, nil), "")
	f.Add(sign(func(c map[string]any) { c["exp"] = fuzzNow.AddDate(5, 0, 0).Unix(); delete(c, "iat") }, nil), "")
	f.Add(sign(func(c map[string]any) { c["exp"] = fuzzNow.Add(-time.Hour).Unix() }, nil), "")
	f.Add(sign(func(c map[string]any) { c["sub"] = "svc" }, nil), "")
	f.Add(sign(func(c map[string]any) { c["iss"], c["sub"] = "svc", "svc" }, nil), "")
	f.Add(sign(func(c map[string]any) { delete(c, "jti") }, nil), "")
	f.Add(fuzzSign(f, fuzzKey, jose.EdDSA, "unknown", fuzzClaims(nil), nil), "")
	f.Add(strings.Repeat("A", 17<<10), "")
	f.Add(strings.Repeat("eyJhbGciOiJFZERTQSJ9.", 900)+"x", "")
	f.Add("", "")
	f.Add("...", "")
	f.Add("not.a.jwt", "")
	f.Add("\x00\xff.\xfe.\n", "robot")

	f.Fuzz(func(t *testing.T, assertion, clientID string) {
		form := url.Values{"client_assertion_type": {oauth.AssertionTypeJWTBearer}, "client_assertion": {assertion}}
		if clientID != "" {
			form.Set("client_id", clientID)
		}
		cl, err := a.Authenticate(ctx, fx.Runtime, clientauth.Request{Form: form})
		if err != nil {
			var oe *oauth.Error
			if !errors.As(err, &oe) || oe.Code != oauth.ErrInvalidClient {
				t.Fatalf("Authenticate = %v (%T), want an invalid_client OAuth error", err, err)
			}
			return
		}
		if cl == nil || cl.ID != "robot" {
			t.Fatalf("Authenticate = %+v, want robot", cl)
		}
		if !valid[assertion] {
			t.Fatalf("Authenticate accepted an assertion the test did not make: %q", assertion)
		}
		if clientID != "" && clientID != "robot" {
			t.Fatalf("Authenticate accepted client_id %q with robot's assertion", clientID)
		}
	})
}

// forgetful is a ReplayCache that has seen nothing, ever.
type forgetful struct{}

func (forgetful) MarkSeen(context.Context, string, string, time.Time) (bool, error) { return true, nil }
