package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const testAudience = "orders-api"

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func (k testKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// testIssuer is an OpenID provider on httptest that serves discovery and a
// JWKS with Cache-Control max-age, and signs real tokens with go-jose.
type testIssuer struct {
	srv   *httptest.Server
	clock *fakeClock

	mu              sync.Mutex
	published       []testKey
	extraJWKS       []json.RawMessage // raw entries appended to the JWKS
	maxAge          int
	down            bool
	discoveryIssuer string // when set, served instead of the real issuer
	jwksURI         string // when set, served instead of the real jwks_uri; "-" omits it
	jwksHits        int
}

func newTestIssuer(t testing.TB, clock *fakeClock) *testIssuer {
	t.Helper()
	is := &testIssuer{clock: clock, maxAge: 300}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		down, iss, jwksURI := is.down, is.discoveryIssuer, is.jwksURI
		is.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if iss == "" {
			iss = is.srv.URL
		}
		doc := map[string]any{"issuer": iss, "jwks_uri": is.srv.URL + "/keys"}
		switch jwksURI {
		case "":
		case "-":
			delete(doc, "jwks_uri")
		default:
			doc["jwks_uri"] = jwksURI
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		defer is.mu.Unlock()
		is.jwksHits++
		if is.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		keys := append([]json.RawMessage(nil), is.extraJWKS...)
		for _, k := range is.published {
			b, err := json.Marshal(k.public())
			if err != nil {
				panic(err)
			}
			keys = append(keys, b)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", is.maxAge))
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *testIssuer) url() string { return is.srv.URL }

// newKey generates a key; publish makes it appear in the JWKS.
func newKey(t testing.TB, alg jose.SignatureAlgorithm) testKey {
	t.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256, jose.PS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("newKey: unsupported alg %s", alg)
	}
	if err != nil {
		t.Fatalf("newKey(%s): %v", alg, err)
	}
	return testKey{kid: fmt.Sprintf("%s-%s", alg, rand.Text()[:8]), alg: alg, priv: priv}
}

func (is *testIssuer) publish(keys ...testKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.published = append(is.published, keys...)
}

func (is *testIssuer) unpublish(kid string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	for i, k := range is.published {
		if k.kid == kid {
			is.published = append(is.published[:i], is.published[i+1:]...)
			return
		}
	}
}

func (is *testIssuer) setDown(down bool) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.down = down
}

func (is *testIssuer) hits() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.jwksHits
}

// claims returns valid access token claims at the issuer's clock.
func (is *testIssuer) claims() map[string]any {
	now := is.clock.now()
	return map[string]any{
		"iss":       is.url(),
		"sub":       "user-123",
		"aud":       []string{testAudience, "billing-api"},
		"exp":       now.Add(5 * time.Minute).Unix(),
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"client_id": "web-app",
		"scope":     "openid orders:read orders:write",
		"jti":       "jti-1",
		"groups":    []string{"eng", "oncall"},
		"roles":     []string{"admin"},
	}
}

// sign signs claims with k, with the given typ header ("" for none).
func sign(t testing.TB, k testKey, typ string, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	return signWith(t, jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, opts, claims)
}

func signWith(t testing.TB, key jose.SigningKey, opts *jose.SignerOptions, claims any) string {
	t.Helper()
	signer, err := jose.NewSigner(key, opts)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	var payload []byte
	if b, ok := claims.([]byte); ok {
		payload = b
	} else if payload, err = json.Marshal(claims); err != nil {
		t.Fatalf("marshal claims: %v", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("CompactSerialize: %v", err)
	}
	return s
}

// setup starts an issuer with one published ES256 key and a Verifier for it.
func setup(t testing.TB, opts ...Option) (*testIssuer, testKey, *Verifier, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	is := newTestIssuer(t, clock)
	k := newKey(t, jose.ES256)
	is.publish(k)
	opts = append([]Option{WithClock(clock.now)}, opts...)
	v, err := New(t.Context(), is.url(), testAudience, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return is, k, v, clock
}

// waitFor polls cond until it holds or ten seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newTLSDiscovery serves only a discovery document over TLS.
func newTLSDiscovery(t testing.TB, issuer func() string, jwksURI string) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": issuer(), "jwks_uri": jwksURI})
	}))
	t.Cleanup(srv.Close)
	return srv
}
