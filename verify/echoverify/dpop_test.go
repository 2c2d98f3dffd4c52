package echoverify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/dpop"
)

// proofKey signs DPoP proofs at the tests' fixed clock.
type proofKey struct {
	key *ecdsa.PrivateKey
	jkt string
}

func newProofKey(t *testing.T) proofKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := dpop.Thumbprint(jose.JSONWebKey{Key: k.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return proofKey{key: k, jkt: jkt}
}

func (p proofKey) proof(t *testing.T, method, url, token string) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"jti": rand.Text(), "htm": method, "htu": url, "iat": now.Unix(), "ath": dpop.ATH(token),
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.key},
		&jose.SignerOptions{EmbedJWK: true, ExtraHeaders: map[jose.HeaderKey]any{jose.HeaderType: dpop.Type}})
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(body)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMiddlewareDPoP(t *testing.T) {
	is := newIssuer(t)
	v := is.verifier(t)
	var sawSub string
	e := newEcho(t, v, &sawSub)
	std := v.Middleware("orders:read", "orders:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	holder, thief := newProofKey(t), newProofKey(t)
	token := is.token(t, "at+jwt", func(c map[string]any) { c["cnf"] = map[string]any{"jkt": holder.jkt} })
	// httptest.NewRequest targets http://example.com.
	const url = "http://example.com/orders"
	replayed := holder.proof(t, "GET", url, token)

	for _, tt := range []struct {
		name, auth, proof string
		status            int
		wantAuth, wantSub string
	}{
		{name: "valid", auth: "DPoP " + token, proof: holder.proof(t, "GET", url, token), status: 200, wantSub: "user-123"},
		{name: "first use", auth: "DPoP " + token, proof: replayed, status: 200, wantSub: "user-123"},
		{name: "replayed", auth: "DPoP " + token, proof: replayed, status: 401,
			wantAuth: `DPoP realm="orders-api", error="invalid_dpop_proof", error_description="the DPoP proof was already used", algs="ES256 ES384 RS256 PS256 EdDSA"`},
		{name: "bound token as bearer", auth: "Bearer " + token, status: 401,
			wantAuth: `DPoP realm="orders-api", error="invalid_token", error_description="the token is bound to a DPoP key: present it with a DPoP proof", algs="ES256 ES384 RS256 PS256 EdDSA"`},
		{name: "stolen token, thief's proof", auth: "DPoP " + token, proof: thief.proof(t, "GET", url, token), status: 401,
			wantAuth: `DPoP realm="orders-api", error="invalid_dpop_proof", error_description="the DPoP proof is not signed by the token's key", algs="ES256 ES384 RS256 PS256 EdDSA"`},
		{name: "proof for another URL", auth: "DPoP " + token, proof: holder.proof(t, "GET", "http://example.com/admin", token), status: 401,
			wantAuth: `DPoP realm="orders-api", error="invalid_dpop_proof", error_description="the DPoP proof is invalid", algs="ES256 ES384 RS256 PS256 EdDSA"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sawSub = ""
			r := httptest.NewRequest(http.MethodGet, "/orders", nil)
			r.Header.Set("Authorization", tt.auth)
			if tt.proof != "" {
				r.Header.Set(dpop.Header, tt.proof)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, r)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.wantAuth {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantAuth)
			}
			if sawSub != tt.wantSub {
				t.Errorf("handler saw subject %q, want %q", sawSub, tt.wantSub)
			}
			if tt.status == http.StatusOK || tt.name == "replayed" {
				return
			}
			// The same request answers the same through net/http.
			want := httptest.NewRecorder()
			std.ServeHTTP(want, r)
			if want.Code != rec.Code || want.Header().Get("WWW-Authenticate") != tt.wantAuth || want.Body.String() != rec.Body.String() {
				t.Errorf("net/http answers %d %q %s; echo %d %s", want.Code, want.Header().Get("WWW-Authenticate"), want.Body, rec.Code, rec.Body)
			}
		})
	}
}
