// Package workloadtest is a test workload issuer: an OpenID discovery
// document and JWKS on httptest, and real go-jose-signed JWTs such as GitHub
// Actions or a Kubernetes API server would give a workload.
package workloadtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer is a workload token issuer on a local HTTP server.
type Issuer struct {
	srv *httptest.Server

	mu   sync.Mutex
	keys map[jose.SignatureAlgorithm]signer
}

type signer struct {
	kid string
	key crypto.Signer
}

// New starts an issuer with one RS256 and one ES256 key.
func New() *Issuer {
	is := &Issuer{keys: make(map[jose.SignatureAlgorithm]signer)}
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is.keys[jose.RS256] = signer{kid: "rs-1", key: rk}
	is.keys[jose.ES256] = signer{kid: "es-1", key: ek}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.URL(),
			"jwks_uri":                              is.URL() + "/keys",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(is.JWKS())
	})
	is.srv = httptest.NewServer(mux)
	return is
}

// URL is the issuer URL (also its `iss`).
func (is *Issuer) URL() string { return is.srv.URL }

// Close stops the server.
func (is *Issuer) Close() { is.srv.Close() }

// JWKS returns the public keys.
func (is *Issuer) JWKS() []byte {
	is.mu.Lock()
	defer is.mu.Unlock()
	var set jose.JSONWebKeySet
	for alg, s := range is.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: s.key.Public(), KeyID: s.kid, Algorithm: string(alg), Use: "sig"})
	}
	b, _ := json.Marshal(set)
	return b
}

// WriteJWKS writes the public keys to dir/jwks.json and returns the path,
// for issuers configured with a static key file.
func (is *Issuer) WriteJWKS(dir string) (string, error) {
	p := filepath.Join(dir, "jwks.json")
	return p, os.WriteFile(p, is.JWKS(), 0o600)
}

// Sign signs claims with the issuer's key for alg (RS256 or ES256).
func (is *Issuer) Sign(alg jose.SignatureAlgorithm, claims map[string]any) (string, error) {
	is.mu.Lock()
	s := is.keys[alg]
	is.mu.Unlock()
	return SignWith(alg, s.key, s.kid, claims)
}

// SignWith signs claims with any key, for forged tokens.
func SignWith(alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	obj, err := sig.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// PublicKey returns the public key used for alg, for key-confusion tests.
func (is *Issuer) PublicKey(alg jose.SignatureAlgorithm) crypto.PublicKey {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[alg].key.Public()
}

// KeyID returns the kid used for alg.
func (is *Issuer) KeyID(alg jose.SignatureAlgorithm) string {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[alg].kid
}
