package workload

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/connectors"
)

// testIssuer is a workload issuer on httptest whose signing key the test
// holds, so it can sign tokens with any header: discovery, and a JWKS whose
// fetches it counts.
type testIssuer struct {
	srv     *httptest.Server
	key     *ecdsa.PrivateKey
	kid     string
	fetches atomic.Int32
}

func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &testIssuer{key: key, kid: "es-1"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/keys",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: is.kid, Algorithm: "ES256", Use: "sig"}}})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *testIssuer) URL() string { return is.srv.URL }

// sign signs claims (JSON-encoded as given) with key (any key go-jose
// takes, an HMAC secret included, for forgeries) under kid (none when
// empty), adding extra protected headers.
func sign(t testing.TB, key any, alg jose.SignatureAlgorithm, kid string, claims any, extra map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	for k, v := range extra {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// token signs claims with the issuer's key.
func (is *testIssuer) token(t testing.TB, claims map[string]any, extra map[string]any) string {
	return sign(t, is.key, jose.ES256, is.kid, claims, extra)
}

// claims are a good token's claims at now.
func (is *testIssuer) claims(now time.Time, edit func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss": is.URL(), "aud": "https://sso.acme.com", "sub": "system:serviceaccount:ci:deployer",
		"jti": "jti-1", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// openAt opens a verifier of is by discovery, on a fixed clock.
func (is *testIssuer) openAt(t testing.TB, now time.Time, maxLifetime time.Duration) *Verifier {
	t.Helper()
	cfg := Config{Issuer: is.URL(), Audiences: []string{"https://sso.acme.com"}, Algorithms: []string{"ES256"}, MaxLifetime: maxLifetime}
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("Validate() = %v", errs)
	}
	v, err := cfg.Open(context.Background(), "k8s", connectors.Options{HTTPClient: is.srv.Client(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	return v
}

// openOptions are connector options for is with clock now.
func openOptions(is *testIssuer, now func() time.Time) connectors.Options {
	return connectors.Options{HTTPClient: is.srv.Client(), Now: now}
}
