package broker

import (
	"go.yaml.in/yaml/v3"

	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/connectors/workload"
	"github.com/fedbroker/fedbroker/connectors/workload/workloadtest"
	"github.com/fedbroker/fedbroker/mapping"
)

var ciSecret = strings.Repeat("ci-secret-", 4)

// workloadHarness is a broker trusting one workload issuer ("github"), with
// a confidential client "ci" allowed to exchange its tokens and "svc" not.
func workloadHarness(t testing.TB) (*harness, *workloadtest.Issuer) {
	t.Helper()
	is := workloadtest.New()
	t.Cleanup(is.Close)
	hash, err := config.HashSecret(ciSecret)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, nil, nil, func(cfg *config.Config) {
		cfg.Mappings["github-main"] = mapping.Spec{
			Require: []mapping.Rule{{Expr: `claims.repository_owner == "acme" && claims.ref == "refs/heads/main"`, Message: "only acme's main branch may deploy"}},
			Subject: `"github:" + claims.sub`,
			Claims:  map[string]mapping.ClaimSpec{"repository": {Expr: "claims.repository"}},
		}
		cfg.Workloads = append(cfg.Workloads, config.Workload{ID: "github", Mapping: "github-main", Config: encodeNode(t, workload.Config{
			Issuer: is.URL(), Audiences: []string{"https://sso.acme.com"}, Algorithms: []string{"RS256"}, OneTimeJTI: true,
		})})
		cfg.Clients = append(cfg.Clients, config.Client{
			ID: "ci", Name: "CI", SecretHash: hash,
			Audiences:  []string{"deploy-api", "metrics-api"},
			Scopes:     []string{"deploy", "read"},
			GrantTypes: []string{"client_credentials", config.GrantTokenExchange},
			Workloads:  []string{"github"},
		})
	})
	return h, is
}

func (h *harness) exchange(user, pass string, form url.Values) tokenResponse {
	h.t.Helper()
	form.Set("grant_type", config.GrantTokenExchange)
	return h.token(form, user, pass)
}

func TestTokenExchangeWorkload(t *testing.T) {
	h, is := workloadHarness(t)
	now := time.Now()
	claims := func(mut func(map[string]any)) map[string]any {
		c := map[string]any{
			"iss": is.URL(), "aud": "https://sso.acme.com", "sub": "repo:acme/app:ref:refs/heads/main",
			"repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main",
			"jti": oauth.RandomToken(8), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		}
		if mut != nil {
			mut(c)
		}
		return c
	}
	sign := func(c map[string]any) string {
		tok, err := is.Sign(jose.RS256, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign(claims(nil))
	tr := h.exchange("ci", ciSecret, url.Values{"subject_token": {good}, "subject_token_type": {oauth.TokenTypeJWT}, "audience": {"deploy-api"}, "scope": {"deploy"}})
	if tr.status != 200 {
		t.Fatalf("exchange = %d %s: %s", tr.status, tr.Error, tr.Description)
	}
	ctx := context.Background()
	v := oidc.NewVerifier(h.issuer, oidc.NewRemoteKeySet(ctx, h.issuer+"/keys"), &oidc.Config{ClientID: "deploy-api", SupportedSigningAlgs: []string{"ES256"}})
	at, err := v.Verify(ctx, tr.AccessToken)
	if err != nil {
		t.Fatalf("issued token does not verify for deploy-api: %v", err)
	}
	if at.Subject != "github:repo:acme/app:ref:refs/heads/main" {
		t.Errorf("sub = %q", at.Subject)
	}
	if _, err := oidc.NewVerifier(h.issuer, oidc.NewRemoteKeySet(ctx, h.issuer+"/keys"), &oidc.Config{ClientID: "metrics-api", SupportedSigningAlgs: []string{"ES256"}}).Verify(ctx, tr.AccessToken); err == nil {
		t.Error("token for deploy-api verified for metrics-api")
	}

	// Delegation: the access token exchanged again for another audience
	// carries act.
	del := h.exchange("ci", ciSecret, url.Values{"subject_token": {tr.AccessToken}, "subject_token_type": {oauth.TokenTypeAccessToken}, "audience": {"metrics-api"}})
	if del.status != 200 {
		t.Fatalf("delegation = %d %s: %s", del.status, del.Error, del.Description)
	}
	var payload map[string]any
	parts := strings.Split(del.AccessToken, ".")
	raw, _ := b64(parts[1])
	_ = json.Unmarshal(raw, &payload)
	if act, _ := payload["act"].(map[string]any); act["sub"] != "ci" || payload["sub"] != at.Subject {
		t.Errorf("delegated token act = %v sub = %v", payload["act"], payload["sub"])
	}

	tests := []struct {
		name       string
		user, pass string
		form       url.Values
		status     int
		code       string
	}{
		{"replayed jti", "ci", ciSecret, url.Values{"subject_token": {good}, "subject_token_type": {oauth.TokenTypeJWT}}, 400, "invalid_request"},
		{"untrusted issuer", "ci", ciSecret, url.Values{"subject_token": {sign(claims(func(c map[string]any) { c["iss"] = "https://evil.example" }))}, "subject_token_type": {oauth.TokenTypeJWT}}, 400, "invalid_request"},
		{"wrong audience", "ci", ciSecret, url.Values{"subject_token": {sign(claims(func(c map[string]any) { c["aud"] = "https://other" }))}, "subject_token_type": {oauth.TokenTypeJWT}}, 400, "invalid_request"},
		{"expired", "ci", ciSecret, url.Values{"subject_token": {sign(claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }))}, "subject_token_type": {oauth.TokenTypeJWT}}, 400, "invalid_request"},
		{"require false", "ci", ciSecret, url.Values{"subject_token": {sign(claims(func(c map[string]any) { c["ref"] = "refs/heads/feature" }))}, "subject_token_type": {oauth.TokenTypeJWT}}, 400, "invalid_request"},
		{"audience escalation", "ci", ciSecret, url.Values{"subject_token": {sign(claims(nil))}, "subject_token_type": {oauth.TokenTypeJWT}, "audience": {"billing-api"}}, 400, "invalid_target"},
		{"scope escalation", "ci", ciSecret, url.Values{"subject_token": {sign(claims(nil))}, "subject_token_type": {oauth.TokenTypeJWT}, "scope": {"admin"}}, 400, "invalid_scope"},
		{"client not allowed this issuer", "svc", svcSecret, url.Values{"subject_token": {sign(claims(nil))}, "subject_token_type": {oauth.TokenTypeJWT}}, 400, "unauthorized_client"},
		{"unauthenticated", "", "", url.Values{"client_id": {"ci"}, "subject_token": {sign(claims(nil))}, "subject_token_type": {oauth.TokenTypeJWT}}, 401, "invalid_client"},
		{"id token not allowed", "ci", ciSecret, url.Values{"subject_token": {sign(claims(nil))}, "subject_token_type": {oauth.TokenTypeJWT}, "requested_token_type": {oauth.TokenTypeIDToken}}, 400, "invalid_request"},
		{"alg none", "ci", ciSecret, url.Values{"subject_token": {noneToken(claims(nil))}, "subject_token_type": {oauth.TokenTypeJWT}}, 400, "invalid_request"},
		{"missing subject_token_type", "ci", ciSecret, url.Values{"subject_token": {sign(claims(nil))}}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantOAuthError(t, h.exchange(tt.user, tt.pass, tt.form), tt.status, tt.code)
		})
	}
	if !strings.Contains(h.audit.String(), "only acme's main branch may deploy") {
		t.Error("the mapping's rejection message is not in the audit log")
	}
}

func noneToken(claims map[string]any) string {
	hdr := `{"alg":"none","typ":"JWT"}`
	body, _ := json.Marshal(claims)
	enc := func(b []byte) string { return strings.TrimRight(b64url(b), "=") }
	return enc([]byte(hdr)) + "." + enc(body) + "."
}

func TestClientCredentialsAndIntrospection(t *testing.T) {
	h, _ := workloadHarness(t)
	tr := h.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}, "audience": {"metrics-api"}}, "ci", ciSecret)
	if tr.status != 200 || tr.RefreshToken != "" || tr.IDToken != "" {
		t.Fatalf("client_credentials = %d %s, refresh %q id %q", tr.status, tr.Error, tr.RefreshToken, tr.IDToken)
	}
	wantOAuthError(t, h.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}, "ci", ciSecret), 400, "invalid_scope")
	wantOAuthError(t, h.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}}, "", ""), 400, "unauthorized_client")

	introspect := func(token, user, pass string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, h.issuer+"/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if st, out := introspect(tr.AccessToken, "ci", ciSecret); st != 200 || out["active"] != true || out["client_id"] != "ci" {
		t.Fatalf("introspect live token = %d %v", st, out)
	}
	for name, tok := range map[string]string{
		"forged":    tr.AccessToken[:len(tr.AccessToken)-4] + "AAAA",
		"malformed": "garbage",
		"foreign":   noneToken(map[string]any{"iss": h.issuer, "sub": "x", "exp": time.Now().Add(time.Hour).Unix()}),
		"refresh":   "fam.secret",
	} {
		if st, out := introspect(tok, "ci", ciSecret); st != 200 || out["active"] != false || len(out) != 1 {
			t.Errorf("introspect %s = %d %v, want {active:false}", name, st, out)
		}
	}
	if st, _ := introspect(tr.AccessToken, "", ""); st != 401 {
		t.Errorf("unauthenticated introspection = %d, want 401", st)
	}
	h.clock.Advance(10 * time.Minute)
	if _, out := introspect(tr.AccessToken, "ci", ciSecret); out["active"] != false {
		t.Errorf("expired token introspects as %v", out)
	}
}

// encodeNode encodes v as the YAML block a config file would hold.
func encodeNode(t testing.TB, v any) yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		t.Fatal(err)
	}
	return n
}
