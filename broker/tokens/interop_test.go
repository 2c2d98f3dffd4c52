package tokens_test

import (
	"context"
	"crypto"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/verify"
)

// TestTokensVerifyElsewhere: access and ID tokens signed with each
// algorithm verify with go-jose (ParseSigned, Verify against the JWKS),
// go-oidc's IDTokenVerifier (ID tokens) and this repository's verify/
// (access tokens), served from an httptest issuer, and carry the mapped
// claims intact.
func TestTokensVerifyElsewhere(t *testing.T) {
	f := runtimetest.New(t, "", func(c *config.Config) {
		c.Signing.Algorithm = "ES256"
		c.Signing.Algorithms = []string{"RS256", "EdDSA"}
	})
	var issuer string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": issuer, "jwks_uri": issuer + "/keys",
			"id_token_signing_alg_values_supported": []string{"ES256", "RS256", "EdDSA"}})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		body, _ := f.Keys.JWKS()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuer = srv.URL
	a := tokens.New(tokens.Deps{Issuer: issuer, Keys: f.Keys, Store: f.Store, Now: f.Clock.Now})

	body, _ := f.Keys.JWKS()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	var pubs []crypto.PublicKey
	for _, k := range set.Keys {
		pubs = append(pubs, k.Key)
	}
	ctx := context.Background()
	v, err := verify.New(ctx, issuer, "api.acme.com", verify.WithHTTPClient(srv.Client()), verify.WithClock(f.Clock.Now),
		verify.WithAlgorithms(jose.ES256, jose.RS256, jose.EdDSA))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)

	mapped := map[string]any{"email": "alice@acme.com", "groups": []any{"eng", "r&d"}, "dept": "R&D <core>",
		"nested": map[string]any{"list": []any{1.0, true, nil}, "s": "Zoë \u2028"}, "empty": []any{}}
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			cl := *f.Client(t, "svc")
			cl.Alg = alg
			g := grant("svc")
			g.Scopes = []string{"openid", "email", "groups"}
			g.IDTokenClaims, g.AccessTokenClaims = mapped, mapped
			resp, err := a.Issue(&cl, g, f.Clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			for name, tok := range map[string]string{"access": resp.AccessToken, "id": resp.IDToken} {
				jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
				if err != nil {
					t.Fatalf("%s token: go-jose ParseSigned: %v", name, err)
				}
				h := jws.Signatures[0].Header
				keys := set.Key(h.KeyID)
				if len(keys) != 1 || h.Algorithm != alg {
					t.Fatalf("%s token: header %+v names no published %s key", name, h, alg)
				}
				payload, err := jws.Verify(keys[0].Key)
				if err != nil {
					t.Fatalf("%s token: go-jose Verify: %v", name, err)
				}
				var claims map[string]any
				if err := json.Unmarshal(payload, &claims); err != nil {
					t.Fatal(err)
				}
				for k, want := range mapped {
					if diff := cmp.Diff(want, claims[k]); diff != "" {
						t.Errorf("%s token claim %s (-want +got):\n%s", name, k, diff)
					}
				}
			}

			idv := oidc.NewVerifier(issuer, &oidc.StaticKeySet{PublicKeys: pubs}, &oidc.Config{ClientID: "svc",
				SupportedSigningAlgs: []string{alg}, Now: f.Clock.Now})
			idt, err := idv.Verify(ctx, resp.IDToken)
			if err != nil {
				t.Fatalf("go-oidc IDTokenVerifier: %v", err)
			}
			if idt.Subject != g.Subject {
				t.Errorf("go-oidc: sub = %q, want %q", idt.Subject, g.Subject)
			}
			if err := idt.VerifyAccessToken(resp.AccessToken); err != nil {
				t.Errorf("go-oidc: at_hash: %v", err)
			}

			c, err := v.Verify(ctx, resp.AccessToken)
			if err != nil {
				t.Fatalf("verify.Verify: %v", err)
			}
			if c.Subject != g.Subject || c.ClientID != "svc" || !c.HasGroup("r&d") || c.Raw["dept"] != "R&D <core>" {
				t.Errorf("verify.Verify = %+v", c)
			}
		})
	}
}
