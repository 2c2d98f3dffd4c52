package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/connectors/workload/workloadtest"
)

// workloadIssuer serves a JWKS (and an OpenID discovery document) on a
// loopback address and signs workload JWTs with a fresh ES256 key, for
// -flow exchange. The broker trusts it with a workloads entry whose issuer
// is http://<addr> and jwks_url http://<addr>/keys; the kid changes with
// every run, so a broker that cached an earlier run's keys fetches again.
type workloadIssuer struct {
	url string
	key *ecdsa.PrivateKey
	kid string
	srv *http.Server
}

func startWorkloadIssuer(addr string) (*workloadIssuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("workload key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: key.Public(), Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("workload key: %w", err)
	}
	jwk.KeyID = fmt.Sprintf("%x", tp[:8])
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-workload-addr: %w", err)
	}
	w := &workloadIssuer{url: "http://" + ln.Addr().String(), key: key, kid: jwk.KeyID}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	disco, _ := json.Marshal(map[string]any{
		"issuer": w.url, "jwks_uri": w.url + "/keys",
		"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
	})
	mux := http.NewServeMux()
	serve := func(body []byte) http.HandlerFunc {
		return func(rw http.ResponseWriter, _ *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			_, _ = rw.Write(body)
		}
	}
	mux.HandleFunc("GET /keys", serve(jwks))
	mux.HandleFunc("GET /.well-known/openid-configuration", serve(disco))
	w.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := w.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "fedbroker-load: workload issuer:", err)
		}
	}()
	return w, nil
}

// sign returns a workload JWT for aud, valid five minutes, with a unique
// jti (brokers may accept each jti once).
func (w *workloadIssuer) sign(aud string) (string, error) {
	now := time.Now()
	return workloadtest.SignWith(jose.ES256, w.key, w.kid, map[string]any{
		"iss": w.url, "aud": aud, "sub": "load:worker",
		"jti": randToken(12), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	})
}

func (w *workloadIssuer) close() { _ = w.srv.Close() }
