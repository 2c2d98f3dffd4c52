package broker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fedbroker/fedbroker/broker/config"
)

// TestPerClientSigningAlgorithm: a client that accepts only RS256 (Azure
// federated credentials, say) gets RS256 tokens; others keep ES256.
func TestPerClientSigningAlgorithm(t *testing.T) {
	h := newHarness(t, nil, nil, func(cfg *config.Config) {
		cfg.Signing.Algorithms = []string{"RS256"}
		for i := range cfg.Clients {
			if cfg.Clients[i].ID == "svc" {
				cfg.Clients[i].IDTokenSignedResponseAlg = "RS256"
			}
		}
	})
	params := url.Values{"client_id": {"svc"}, "redirect_uri": {svcRedirect}, "response_type": {"code"}, "scope": {"openid email"}, "state": {"x"}}
	code, _ := h.login(h.newBrowser(), params, "alice", alicePassword)
	tr := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {svcRedirect}}, "svc", svcSecret)
	if tr.status != 200 {
		t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	if alg := jwtHeader(t, tr.IDToken)["alg"]; alg != "RS256" {
		t.Fatalf("svc id_token alg = %v, want RS256", alg)
	}
	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, h.issuer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Verifier(&oidc.Config{ClientID: "svc", Now: h.clock.Now}).Verify(ctx, tr.IDToken); err != nil {
		t.Fatalf("go-oidc (RS256 default) Verify = %v", err)
	}
	p2 := newPKCE()
	code2, _ := h.login(h.newBrowser(), authParams(p2), "alice", alicePassword)
	if tr2 := h.redeem(code2, p2); jwtHeader(t, tr2.IDToken)["alg"] != "ES256" {
		t.Errorf("app id_token alg = %v, want ES256", jwtHeader(t, tr2.IDToken)["alg"])
	}
	var d map[string]any
	resp, err := http.Get(h.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	algs, _ := json.Marshal(d["id_token_signing_alg_values_supported"])
	if string(algs) != `["ES256","RS256"]` {
		t.Errorf("id_token_signing_alg_values_supported = %s", algs)
	}
}

// TestForwardedHeadersIgnored: X-Forwarded-* never changes the issuer or
// any endpoint URL.
func TestForwardedHeadersIgnored(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	req, _ := http.NewRequest(http.MethodGet, h.issuer+"/.well-known/openid-configuration", nil)
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("Forwarded", "host=evil.example;proto=https")
	req.Host = "evil.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&d)
	for _, k := range []string{"issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"} {
		if s, _ := d[k].(string); len(s) < len(h.issuer) || s[:len(h.issuer)] != h.issuer {
			t.Errorf("%s = %q, want it under %s", k, s, h.issuer)
		}
	}
}

// TestUnknownConnectorPage: a login URL for a connector that does not exist
// says so, whatever the request.
func TestUnknownConnectorPage(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	r := h.newBrowser().get(h.issuer + "/login/nope")
	if r.status != http.StatusNotFound || !strings.Contains(r.body, "Unknown sign-in method") {
		t.Fatalf("GET /login/nope = %d, want a 404 page naming the unknown sign-in method; body %s", r.status, r.body)
	}
}
