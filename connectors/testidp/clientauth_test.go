package testidp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// postToken posts form to p's token endpoint and returns the status and
// the OAuth error code.
func postToken(t *testing.T, p *IdP, form url.Values, basic bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(p.ClientID(), p.ClientSecret())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error
}

// TestClientAssertion: a registered key's assertion is accepted once; a
// bad one (claims, lifetime, signature, replay) is invalid_client. The
// grant itself (a bogus refresh token) is checked only after the client,
// so invalid_grant means the client was authenticated.
func TestClientAssertion(t *testing.T) {
	p := New(Options{})
	t.Cleanup(p.Close)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.SetClientAuth(ClientAuth{Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1"}}}})
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	otherSigner, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: other}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	now := time.Now()
	good := func() jwt.Claims {
		return jwt.Claims{Issuer: p.ClientID(), Subject: p.ClientID(), Audience: jwt.Audience{p.TokenURL()},
			ID: randString(8), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}
	}
	sign := func(s jose.Signer, c jwt.Claims) string {
		raw, err := jwt.Signed(s).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	form := func(assertion string) url.Values {
		return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"bogus"},
			"client_assertion_type": {AssertionType}, "client_assertion": {assertion}}
	}
	replayed := sign(signer, good())
	if st, code := postToken(t, p, form(replayed), false); code != "invalid_grant" {
		t.Fatalf("good assertion: status %d error %q, want invalid_grant", st, code)
	}
	for _, tt := range []struct {
		name      string
		assertion string
		edit      func(url.Values)
		basic     bool
	}{
		{"replayed jti", replayed, nil, false},
		{"foreign key", sign(otherSigner, good()), nil, false},
		{"wrong iss", sign(signer, func() jwt.Claims { c := good(); c.Issuer = "x"; return c }()), nil, false},
		{"wrong sub", sign(signer, func() jwt.Claims { c := good(); c.Subject = "x"; return c }()), nil, false},
		{"wrong aud", sign(signer, func() jwt.Claims { c := good(); c.Audience = jwt.Audience{p.URL() + "/other"}; return c }()), nil, false},
		{"expired", sign(signer, func() jwt.Claims { c := good(); c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)); return c }()), nil, false},
		{"no exp", sign(signer, func() jwt.Claims { c := good(); c.Expiry = nil; return c }()), nil, false},
		{"exp far ahead", sign(signer, func() jwt.Claims { c := good(); c.Expiry = jwt.NewNumericDate(now.Add(time.Hour)); return c }()), nil, false},
		{"no jti", sign(signer, func() jwt.Claims { c := good(); c.ID = ""; return c }()), nil, false},
		{"wrong type", sign(signer, good()), func(v url.Values) { v.Set("client_assertion_type", "jwt") }, false},
		{"with a secret", sign(signer, good()), nil, true},
		{"other client_id", sign(signer, good()), func(v url.Values) { v.Set("client_id", "other") }, false},
		{"not a JWT", "abc.def.ghi", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := form(tt.assertion)
			if tt.edit != nil {
				tt.edit(f)
			}
			if st, code := postToken(t, p, f, tt.basic); st != http.StatusUnauthorized || code != "invalid_client" {
				t.Errorf("status %d error %q, want 401 invalid_client", st, code)
			}
		})
	}
	if n := len(p.Assertions()); n != 1 {
		t.Errorf("Assertions() = %d, want 1", n)
	}
}

// TestPublicClient: a public client authenticates with nothing but
// client_id, PKCE still binds the code, and a secret is refused.
func TestPublicClient(t *testing.T) {
	p, oc := start(t)
	p.SetClientAuth(ClientAuth{Public: true})
	ctx := context.Background()
	v0 := oauth2.GenerateVerifier()
	if _, err := oc.Exchange(ctx, code(t, oc, v0), oauth2.VerifierOption(v0)); err == nil {
		t.Error("confidential exchange at a public client succeeded")
	}
	pub := *oc
	pub.ClientSecret = ""
	pub.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	v := oauth2.GenerateVerifier()
	if _, err := pub.Exchange(ctx, code(t, &pub, v), oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Error("public exchange with a wrong code_verifier succeeded")
	}
	tok, err := pub.Exchange(ctx, code(t, &pub, v), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatalf("public exchange: %v", err)
	}
	if _, err := pub.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Errorf("public refresh: %v", err)
	}
	if st, code := postToken(t, p, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, false); code != "invalid_client" {
		t.Errorf("no client_id: status %d error %q, want invalid_client", st, code)
	}
}
