package workload

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/workload/workloadtest"
)

func githubClaims(iss string, now time.Time) map[string]any {
	return map[string]any{
		"iss": iss, "aud": "https://sso.acme.com", "sub": "repo:acme/app:ref:refs/heads/main",
		"repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main",
		"jti": "jti-" + now.Format(time.RFC3339Nano), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
}

func open(t *testing.T, cfg Config) *Verifier {
	t.Helper()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("Validate() = %v", errs)
	}
	v, err := cfg.Open(context.Background(), "github", connectors.Options{})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	return v
}

func TestVerifyToken(t *testing.T) {
	is := workloadtest.New()
	defer is.Close()
	now := time.Now()
	jwks, err := is.WriteJWKS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"discovery":   {Issuer: is.URL(), Audiences: []string{"https://sso.acme.com"}},
		"static jwks": {Issuer: is.URL(), Audiences: []string{"https://sso.acme.com"}, JWKSFile: jwks},
		"jwks url":    {Issuer: is.URL(), Audiences: []string{"https://sso.acme.com"}, JWKSURL: is.URL() + "/keys"},
	} {
		t.Run(name, func(t *testing.T) {
			v := open(t, cfg)
			tok, err := is.Sign(jose.RS256, githubClaims(is.URL(), now))
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.VerifyToken(context.Background(), tok)
			if err != nil {
				t.Fatalf("VerifyToken() = %v", err)
			}
			if id.Subject != "repo:acme/app:ref:refs/heads/main" || id.Claims["repository_owner"] != "acme" {
				t.Errorf("identity = %+v", id)
			}
		})
	}
}

func TestVerifyTokenRefusals(t *testing.T) {
	is := workloadtest.New()
	defer is.Close()
	other := workloadtest.New()
	defer other.Close()
	v := open(t, Config{Issuer: is.URL(), Audiences: []string{"https://sso.acme.com"}, Algorithms: []string{"RS256"}, OneTimeJTI: true, MaxLifetime: time.Hour})
	now := time.Now()
	sign := func(alg jose.SignatureAlgorithm, mut func(map[string]any)) string {
		c := githubClaims(is.URL(), now)
		if mut != nil {
			mut(c)
		}
		tok, err := is.Sign(alg, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	foreignKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged, _ := workloadtest.SignWith(jose.ES256, foreignKey, is.KeyID(jose.ES256), githubClaims(is.URL(), now))
	der, _ := x509.MarshalPKIXPublicKey(is.PublicKey(jose.RS256))
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hs, _ := workloadtest.SignWith(jose.HS256, pemKey, is.KeyID(jose.RS256), githubClaims(is.URL(), now))
	fromOther, _ := other.Sign(jose.RS256, githubClaims(is.URL(), now))
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	good := sign(jose.RS256, nil)
	payload := strings.Split(good, ".")[1]

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"wrong audience", sign(jose.RS256, func(c map[string]any) { c["aud"] = "https://other.example" }), ErrAudience},
		{"expired", sign(jose.RS256, func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix(); c["iat"] = now.Add(-time.Hour).Unix() }), ErrUntrusted},
		{"wrong issuer", sign(jose.RS256, func(c map[string]any) { c["iss"] = "https://evil.example" }), ErrUntrusted},
		{"alg none", hdr + "." + payload + ".", ErrUntrusted},
		{"HS256 keyed with the public key", hs, ErrUntrusted},
		{"algorithm not allowed (ES256)", sign(jose.ES256, nil), ErrUntrusted},
		{"signed by a foreign key under our kid", forged, ErrUntrusted},
		{"another issuer's key claiming our iss", fromOther, ErrUntrusted},
		{"no jti with one-time jti", sign(jose.RS256, func(c map[string]any) { delete(c, "jti") }), ErrMissingJTI},
		{"lifetime too long", sign(jose.RS256, func(c map[string]any) { c["exp"] = now.Add(48 * time.Hour).Unix() }), ErrLifetime},
		{"no subject", sign(jose.RS256, func(c map[string]any) { delete(c, "sub") }), ErrMissingClaim},
		{"no exp", sign(jose.RS256, func(c map[string]any) { delete(c, "exp") }), ErrUntrusted},
		{"expired a second ago", sign(jose.RS256, func(c map[string]any) { c["exp"] = now.Add(-time.Second).Unix() }), ErrUntrusted},
		{"not valid for another hour", sign(jose.RS256, func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), ErrUntrusted},
		{"aud as a list without ours", sign(jose.RS256, func(c map[string]any) { c["aud"] = []string{"https://a.example", "https://b.example"} }), ErrAudience},
		{"iss of another type", sign(jose.RS256, func(c map[string]any) { c["iss"] = 42 }), ErrUntrusted},
		{"garbage", "not.a.jwt", ErrUntrusted},
		{"oversized", strings.Repeat("a", 20<<10), ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.VerifyToken(context.Background(), tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyToken() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"empty", Config{}, []string{"issuer", "audiences"}},
		{"relative issuer", Config{Issuer: "/x", Audiences: []string{"a"}}, []string{"issuer"}},
		{"hmac algorithm", Config{Issuer: "https://x", Audiences: []string{"a"}, Algorithms: []string{"HS256", "none"}}, []string{"algorithms[0]", "algorithms[1]"}},
		{"both key sources", Config{Issuer: "https://x", Audiences: []string{"a"}, JWKSFile: "f", JWKSURL: "https://x/k"}, []string{"jwks_file"}},
		{"blank audience", Config{Issuer: "https://x", Audiences: []string{" "}}, []string{"audiences[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range tt.cfg.Validate() {
				got = append(got, e.Path)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("Validate() paths = %v, want %v", got, tt.want)
			}
		})
	}
}
