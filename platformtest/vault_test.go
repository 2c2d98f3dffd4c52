package platformtest

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	capjwt "github.com/hashicorp/cap/jwt"
	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/broker/config"
)

// Vault's JWT auth method (vault-plugin-auth-jwt) validates a login JWT
// with github.com/hashicorp/cap/jwt: a key set from the configured
// oidc_discovery_url (with oidc_discovery_ca_pem), and an Expected built
// from the mount's config and the role. The role's bound_claims,
// user_claim and groups_claim are then read from the validated claims.
// https://developer.hashicorp.com/vault/api-docs/auth/jwt

// vaultConfig is `vault write auth/jwt/config`.
type vaultConfig struct {
	discoveryURL, discoveryCAPEM string
	boundIssuer                  string
	// supportedAlgs is jwt_supported_algs; empty: Vault's default, RS256.
	supportedAlgs []capjwt.Alg
}

// vaultRole is `vault write auth/jwt/role/NAME role_type=jwt ...`.
type vaultRole struct {
	boundAudiences []string
	boundSubject   string
	// boundClaims: each claim must equal one of the listed strings
	// (bound_claims_type=string).
	boundClaims map[string][]string
	userClaim   string
	groupsClaim string
}

// vaultLogin is what `vault write auth/jwt/login role=NAME jwt=...` checks:
// it returns the entity alias name (user_claim) and the group aliases
// (groups_claim).
func vaultLogin(ctx context.Context, cfg vaultConfig, role vaultRole, token string) (string, []string, error) {
	ks, err := capjwt.NewOIDCDiscoveryKeySet(ctx, cfg.discoveryURL, cfg.discoveryCAPEM)
	if err != nil {
		return "", nil, fmt.Errorf("key set: %w", err)
	}
	v, err := capjwt.NewValidator(ks)
	if err != nil {
		return "", nil, err
	}
	claims, err := v.Validate(ctx, token, capjwt.Expected{
		Issuer:            cfg.boundIssuer,
		Subject:           role.boundSubject,
		Audiences:         role.boundAudiences,
		SigningAlgorithms: cfg.supportedAlgs,
	})
	if err != nil {
		return "", nil, err
	}
	for name, allowed := range role.boundClaims {
		got, ok := claims[name].(string)
		if !ok || !slices.Contains(allowed, got) {
			return "", nil, fmt.Errorf("claim %q does not match any associated bound claim values", name)
		}
	}
	user, ok := claims[role.userClaim].(string)
	if !ok || user == "" {
		return "", nil, fmt.Errorf("claim %q not found in token", role.userClaim)
	}
	var groups []string
	if role.groupsClaim != "" {
		switch g := claims[role.groupsClaim].(type) {
		case []any:
			for _, x := range g {
				s, ok := x.(string)
				if !ok {
					return "", nil, fmt.Errorf("group claim %q is not a list of strings", role.groupsClaim)
				}
				groups = append(groups, s)
			}
		case string:
			groups = []string{g}
		default:
			return "", nil, fmt.Errorf("%q claim not found in token", role.groupsClaim)
		}
	}
	return user, groups, nil
}

const vaultSecret = "vault-ci-secret-0123456789abcdef"

func vaultBroker(t *testing.T) *brokerServer {
	t.Helper()
	pw, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := config.HashSecret(vaultSecret)
	if err != nil {
		t.Fatal(err)
	}
	return startBroker(t, &offsetClock{}, func(issuer string) string {
		return fmt.Sprintf(`
issuer: %s
storage: {type: memory}
signing: {algorithm: ES256, algorithms: [RS256]}
connectors:
  - id: local
    type: local
    config:
      users:
        - username: alice
          password_hash: %q
          email: alice@acme.com
          groups: [eng, vault-admins]
clients:
  - id: vault-ci
    profile: vault
    secret_hash: %q
    grant_types: [client_credentials]
    audiences: [vault]
  - id: vault-cli
    profile: vault
    public: true
    redirect_uris: [http://localhost:8250/oidc/callback]
  - id: plain
    secret_hash: %q
    grant_types: [client_credentials]
    audiences: [vault]
`, issuer, pw, secret, secret)
	})
}

// TestVaultAcceptsProfiledTokens logs in to Vault's JWT auth method, as
// configured by docs/platforms.md, with the broker's tokens.
func TestVaultAcceptsProfiledTokens(t *testing.T) {
	b := vaultBroker(t)
	ctx := context.Background()
	cfg := vaultConfig{discoveryURL: b.issuer, discoveryCAPEM: b.caPEM(), boundIssuer: b.issuer}

	// A machine: client_credentials of a vault-profiled client, whose
	// token is signed with RS256, jwt_supported_algs' default.
	ci := b.token(t, url.Values{"grant_type": {"client_credentials"}}, "vault-ci", vaultSecret)
	if ci.status != 200 {
		t.Fatalf("client_credentials = %d %s: %s", ci.status, ci.Error, ci.Description)
	}
	if alg := headerOf(t, ci.AccessToken)["alg"]; alg != "RS256" {
		t.Errorf("vault-profiled token alg = %v, want RS256", alg)
	}
	machine := vaultRole{boundAudiences: []string{"vault"}, boundSubject: "vault-ci", boundClaims: map[string][]string{"client_id": {"vault-ci"}}, userClaim: "sub"}
	user, _, err := vaultLogin(ctx, cfg, machine, ci.AccessToken)
	if err != nil || user != "vault-ci" {
		t.Fatalf("Vault login with the client_credentials token: %q, %v", user, err)
	}

	// A person: the ID token of a sign-in (`vault login -method=oidc`
	// uses the same role fields), groups mapped to Vault group aliases.
	id := b.signIn(t, "vault-cli", "http://localhost:8250/oidc/callback", "alice", "alice-password")
	person := vaultRole{boundAudiences: []string{"vault-cli"}, boundClaims: map[string][]string{"email": {"alice@acme.com"}}, userClaim: "email", groupsClaim: "groups"}
	user, groups, err := vaultLogin(ctx, cfg, person, id.IDToken)
	if err != nil || user != "alice@acme.com" || !slices.Equal(groups, []string{"eng", "vault-admins"}) {
		t.Fatalf("Vault login with the ID token: %q %v, %v", user, groups, err)
	}

	refusals := []struct {
		name  string
		cfg   vaultConfig
		role  vaultRole
		token string
		want  string
	}{
		{"another audience", cfg, vaultRole{boundAudiences: []string{"other"}, userClaim: "sub"}, ci.AccessToken, "audience"},
		{"another subject", cfg, vaultRole{boundAudiences: []string{"vault"}, boundSubject: "someone", userClaim: "sub"}, ci.AccessToken, "subject"},
		{"bound claim", cfg, vaultRole{boundAudiences: []string{"vault-cli"}, boundClaims: map[string][]string{"email": {"bob@acme.com"}}, userClaim: "email"}, id.IDToken, "bound claim"},
		{"another issuer", vaultConfig{discoveryURL: b.issuer, discoveryCAPEM: b.caPEM(), boundIssuer: "https://sso.example.com"}, machine, ci.AccessToken, "issuer"},
		{"tampered", cfg, machine, withClaims(t, ci.AccessToken, map[string]any{"sub": "root"}), "signature"},
		{"untrusted TLS", vaultConfig{discoveryURL: b.issuer}, machine, ci.AccessToken, "key set"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			if _, _, err := vaultLogin(ctx, r.cfg, r.role, r.token); err == nil || !strings.Contains(err.Error(), r.want) {
				t.Errorf("login = %v, want an error about %s", err, r.want)
			}
		})
	}
}

// TestVaultRefusesUnprofiledAlgorithm: the same client without the
// profile signs with the broker's default, ES256, which a Vault mount
// with the default jwt_supported_algs refuses; listing ES256 there
// accepts it.
func TestVaultRefusesUnprofiledAlgorithm(t *testing.T) {
	b := vaultBroker(t)
	ctx := context.Background()
	tr := b.token(t, url.Values{"grant_type": {"client_credentials"}}, "plain", vaultSecret)
	if tr.status != 200 {
		t.Fatalf("client_credentials = %d %s: %s", tr.status, tr.Error, tr.Description)
	}
	role := vaultRole{boundAudiences: []string{"vault"}, userClaim: "sub"}
	cfg := vaultConfig{discoveryURL: b.issuer, discoveryCAPEM: b.caPEM(), boundIssuer: b.issuer}
	if _, _, err := vaultLogin(ctx, cfg, role, tr.AccessToken); err == nil || !strings.Contains(err.Error(), "unexpected algorithm") {
		t.Errorf("default jwt_supported_algs took an ES256 token: %v", err)
	}
	cfg.supportedAlgs = []capjwt.Alg{capjwt.RS256, capjwt.ES256}
	if user, _, err := vaultLogin(ctx, cfg, role, tr.AccessToken); err != nil || user != "plain" {
		t.Errorf("jwt_supported_algs=RS256,ES256: %q, %v", user, err)
	}
}
