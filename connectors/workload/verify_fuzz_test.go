package workload

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/connectors"
)

// The fuzz target's issuer, clock and key are fixed, so that valid seeds
// made by one fuzzing process stay valid in every other (Ed25519
// signatures are deterministic; the httptest URL is not, so it serves only
// the keys and the issuer is a name).
const fuzzIssuer = "https://workload.test"

var (
	fuzzNow     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fuzzKey     = ed25519.NewKeyFromSeed([]byte("fedbroker-fuzz-workload-issuer!!"))
	fuzzForeign = ed25519.NewKeyFromSeed([]byte("fedbroker-fuzz-someone-else-key!"))
)

func fuzzClaims(edit func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss": fuzzIssuer, "aud": "https://sso.acme.com", "sub": "repo:acme/app:ref:refs/heads/main",
		"jti": "fuzz-1", "iat": fuzzNow.Unix(), "nbf": fuzzNow.Unix(), "exp": fuzzNow.Add(5 * time.Minute).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// FuzzWorkloadToken sends arbitrary tokens, and mutations of valid ones,
// through a workload verifier whose keys come from an httptest JWKS. It
// never panics, refuses with one of the package's error kinds (which the
// token endpoint maps to its fixed descriptions), and accepts only the
// exact tokens this test signed with the issuer's key and good claims.
func FuzzWorkloadToken(f *testing.F) {
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: fuzzKey.Public(), KeyID: "ed-1", Algorithm: "EdDSA", Use: "sig"}}})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	f.Cleanup(srv.Close)
	cfg := Config{Issuer: fuzzIssuer, Audiences: []string{"https://sso.acme.com", "deploy-api"}, JWKSURL: srv.URL + "/keys",
		Algorithms: []string{"EdDSA", "ES256", "RS256"}, OneTimeJTI: true, MaxLifetime: time.Hour}
	if errs := cfg.Validate(); len(errs) > 0 {
		f.Fatalf("Validate() = %v", errs)
	}
	v, err := cfg.Open(context.Background(), "fuzz", connectors.Options{HTTPClient: srv.Client(), Now: func() time.Time { return fuzzNow }})
	if err != nil {
		f.Fatal(err)
	}

	signed := func(edit func(map[string]any), extra map[string]any) string {
		return sign(f, fuzzKey, jose.EdDSA, "ed-1", fuzzClaims(edit), extra)
	}
	valid := map[string]bool{
		signed(nil, nil): true,
		signed(func(c map[string]any) { c["aud"] = []string{"https://other.example", "deploy-api"} }, nil): true,
		signed(func(c map[string]any) { delete(c, "iat"); delete(c, "nbf") }, nil):                         true,
		signed(func(c map[string]any) { c["exp"] = fuzzNow.Add(time.Hour).Unix() }, nil):                   true,
		// Without a kid every published key is tried.
		sign(f, fuzzKey, jose.EdDSA, "", fuzzClaims(nil), nil): true,
	}
	ctx := context.Background()
	for tok := range valid {
		if _, err := v.VerifyToken(ctx, tok); err != nil {
			f.Fatalf("valid seed %q: VerifyToken = %v", tok, err)
		}
		f.Add(tok)
		p := strings.Split(tok, ".")
		f.Add(tok[:len(tok)-7])                                                                   // truncated
		f.Add(p[0] + "." + p[1])                                                                  // two segments
		f.Add(tok + "." + p[2])                                                                   // four segments
		f.Add(p[0] + "." + p[1] + ".")                                                            // no signature
		f.Add(tok + "\n")                                                                         // trailing LF
		f.Add(p[0] + "." + p[1][:5] + "\r\n" + p[1][5:] + "." + p[2])                             // CRLF inside
		f.Add(tok[:len(tok)-1] + string(tok[len(tok)-1]^1))                                       // unused bits
		f.Add(`{"protected":"` + p[0] + `","payload":"` + p[1] + `","signature":"` + p[2] + `"}`) // JSON serialization
	}
	b64 := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(fuzzClaims(nil))
	f.Add(b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(payload) + ".")
	f.Add(b64([]byte(`{"alg":"none","kid":"ed-1"}`)) + "." + b64(payload) + ".")
	f.Add(sign(f, []byte(fuzzKey.Public().(ed25519.PublicKey)), jose.HS256, "ed-1", fuzzClaims(nil), nil)) // HMAC keyed with the public key
	f.Add(sign(f, body, jose.HS256, "ed-1", fuzzClaims(nil), nil))                                         // HMAC keyed with the JWKS
	f.Add(sign(f, fuzzForeign, jose.EdDSA, "ed-1", fuzzClaims(nil), nil))                                  // a foreign key under our kid
	f.Add(sign(f, fuzzForeign, jose.EdDSA, "made-up", fuzzClaims(nil), nil))                               // an unknown kid
	f.Add(sign(f, fuzzKey, jose.EdDSA, "", fuzzClaims(nil), nil))                                          // no kid
	f.Add(signed(nil, map[string]any{"zip": "DEF"}))
	f.Add(signed(nil, map[string]any{"crit": []string{"b64"}, "b64": true}))
	f.Add(signed(func(c map[string]any) { c["iss"] = "https://evil.example" }, nil))
	f.Add(signed(func(c map[string]any) { c["aud"] = []string{"https://a.example", "https://b.example"} }, nil))
	f.Add(signed(func(c map[string]any) { delete(c, "exp") }, nil))
	f.Add(signed(func(c map[string]any) { c["exp"] = fuzzNow.Add(-time.Second).Unix() }, nil))
	f.Add(signed(func(c map[string]any) { c["exp"] = fuzzNow.AddDate(5, 0, 0).Unix(); delete(c, "iat") }, nil))
	f.Add(signed(func(c map[string]any) { c["exp"] = 1e300 }, nil))
	f.Add(signed(func(c map[string]any) { c["exp"] = -1e300 }, nil))
	f.Add(signed(func(c map[string]any) { c["iat"] = fuzzNow.AddDate(1, 0, 0).Unix() }, nil))
	f.Add(signed(func(c map[string]any) { c["nbf"] = fuzzNow.Add(time.Hour).Unix() }, nil))
	f.Add(signed(func(c map[string]any) { delete(c, "sub") }, nil))
	f.Add(signed(func(c map[string]any) { c["sub"] = 42 }, nil))
	f.Add(signed(func(c map[string]any) { delete(c, "jti") }, nil))
	f.Add(signed(func(c map[string]any) { c["iss"] = []string{fuzzIssuer} }, nil))
	f.Add(strings.Repeat("A", 17<<10))
	f.Add(strings.Repeat("eyJhbGciOiJFZERTQSJ9.", 700) + "x")
	f.Add("")
	f.Add("..")
	f.Add("not.a.jwt")
	f.Add("\x00\xff.\xfe.\n")

	kinds := []error{ErrUntrusted, ErrAudience, ErrLifetime, ErrMissingJTI, ErrMissingClaim}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.VerifyToken(ctx, token)
		if err != nil {
			if !slices.ContainsFunc(kinds, func(k error) bool { return errors.Is(err, k) }) {
				t.Fatalf("VerifyToken = %v, want one of the package's error kinds", err)
			}
			return
		}
		if !valid[token] {
			t.Fatalf("VerifyToken accepted a token the test did not make: %q", token)
		}
		if id.Subject == "" || id.Claims["iss"] != fuzzIssuer {
			t.Fatalf("VerifyToken = %+v, want the workload's identity", id)
		}
	})
}
