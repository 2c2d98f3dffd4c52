package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/connectors/workload"
	"github.com/fedbroker/fedbroker/connectors/workload/workloadtest"
	"github.com/fedbroker/fedbroker/mapping"
)

// platformRules is what one platform checks in a token from an external
// issuer, written down from its published documentation as data, apart
// from the broker's own table (config.Platforms).
type platformRules struct {
	source string
	// algs are the JWS algorithms the platform accepts.
	algs []string
	// audString: aud must be one JSON string, not an array.
	audString bool
	// audForm, when set, is the form aud must have.
	audForm *regexp.Regexp
	// claims are the claims the platform reads, with their JSON types.
	claims map[string]string
	// maxSub bounds sub in bytes (0: none published).
	maxSub int
	// maxLifetime: exp - iat must be below it (0: none published).
	maxLifetime time.Duration
	// kid: the header must name the key.
	kid bool
	// minRSA is the smallest RSA key accepted in the JWKS.
	minRSA int
	// idTokens: the platform is given the broker's ID tokens too.
	idTokens bool
}

var platformRequirements = map[string]platformRules{
	// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html
	// (RS256/384/512, ES256/384/512; integer timestamps) and
	// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc.html
	// (aud matched against the provider's client ID list, https issuer).
	"aws": {
		source: "AWS STS AssumeRoleWithWebIdentity",
		algs:   []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}, audString: true,
		claims: map[string]string{"iss": "string", "sub": "string", "aud": "string", "exp": "number", "iat": "number"},
		kid:    true, minRSA: 2048, idTokens: true,
	},
	// https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token
	// (kid and alg RS256/ES256 required; exp less than 48h after iat; aud
	// the provider's resource name by default) and
	// https://cloud.google.com/iam/docs/workload-identity-federation#mapping
	// (google.subject at most 127 bytes).
	"gcp": {
		source: "Google Cloud STS token exchange",
		algs:   []string{"RS256", "ES256"}, audString: true,
		audForm: regexp.MustCompile(`^(https:)?//iam\.googleapis\.com/projects/\d+/locations/global/workloadIdentityPools/[^/]+/providers/[^/]+$`),
		claims:  map[string]string{"iss": "string", "sub": "string", "aud": "string", "exp": "number", "iat": "number"},
		maxSub:  127, maxLifetime: 48 * time.Hour, kid: true, minRSA: 2048,
	},
	// https://learn.microsoft.com/en-us/entra/workload-id/workload-identity-federation-considerations
	// (RS256 only) and
	// https://learn.microsoft.com/en-us/graph/api/resources/federatedidentitycredential
	// (one audience, issuer and subject matched exactly, 600 characters).
	"azure": {
		source: "Microsoft Entra federated identity credential",
		algs:   []string{"RS256"}, audString: true,
		claims: map[string]string{"iss": "string", "sub": "string", "aud": "string", "exp": "number", "iat": "number", "nbf": ""},
		maxSub: 600, kid: true, minRSA: 2048, idTokens: true,
	},
	// https://developer.hashicorp.com/vault/api-docs/auth/jwt (bound_audiences
	// matches any of aud, user_claim sub, groups_claim a list of strings,
	// jwt_supported_algs).
	"vault": {
		source: "Vault JWT auth",
		algs:   []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"},
		claims: map[string]string{"iss": "string", "sub": "string", "exp": "number", "iat": "number"},
		minRSA: 2048, idTokens: true,
	},
	// https://kubernetes.io/docs/reference/access-authn-authz/authentication/#using-authentication-configuration
	// (RS/ES/PS 256-512; iss equal to issuer.url; one of
	// issuer.audiences in aud; username from a string claim).
	"kubernetes": {
		source: "kube-apiserver JWT authenticator",
		algs:   []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"},
		claims: map[string]string{"iss": "string", "sub": "string", "exp": "number", "iat": "number"},
		kid:    true, minRSA: 2048, idTokens: true,
	},
}

const profileGCPAudience = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/hybrid/providers/fedbroker"

// profileAudiences are the profiled clients' audiences (azure: its
// default, api://AzureADTokenExchange).
var profileAudiences = map[string][]string{
	"aws": {"sts.amazonaws.com"}, "gcp": {profileGCPAudience}, "vault": {"vault", "other-api"}, "kubernetes": {"kubernetes"},
}

var profileSecret = strings.Repeat("profile-", 5)

// profileHarness is a broker signing with ES256 (and keeping RS256 keys)
// with one client per platform, named after it, allowed the
// client_credentials, token exchange (workload "wl") and code grants.
func profileHarness(t *testing.T) (*harness, *workloadtest.Issuer) {
	t.Helper()
	is := workloadtest.New()
	t.Cleanup(is.Close)
	hash, err := config.HashSecret(profileSecret)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, nil, nil, func(cfg *config.Config) {
		cfg.Signing.Algorithm, cfg.Signing.Algorithms = "ES256", []string{"RS256"}
		cfg.Mappings["wl"] = mapping.Spec{
			Subject: `"wl:" + claims.sub`,
			Claims:  map[string]mapping.ClaimSpec{"groups": {Expr: "claims.groups"}},
		}
		cfg.Workloads = append(cfg.Workloads, config.Workload{ID: "wl", Mapping: "wl", Config: encodeNode(t, workload.Config{
			Issuer: is.URL(), Audiences: []string{"https://sso.acme.com"}, Algorithms: []string{"RS256"},
		})})
		for _, p := range config.ProfileNames() {
			cfg.Clients = append(cfg.Clients, config.Client{
				ID: p, SecretHash: hash, Profile: p,
				RedirectURIs: []string{"https://" + p + ".example.com/cb"},
				Audiences:    profileAudiences[p],
				GrantTypes:   []string{config.GrantAuthorizationCode, config.GrantClientCredentials, config.GrantTokenExchange},
				Workloads:    []string{"wl"},
			})
		}
		cfg.SetDefaults()
		if ps := cfg.Validate(); len(ps) > 0 {
			t.Fatalf("profiled configuration refused: %v", ps)
		}
	})
	return h, is
}

// TestProfileTableWithinPublished: the broker's table never lets a client
// sign with an algorithm its platform's published rules refuse.
func TestProfileTableWithinPublished(t *testing.T) {
	for _, p := range config.ProfileNames() {
		rules, ok := platformRequirements[p]
		if !ok {
			t.Errorf("profile %s has no published requirements in this test", p)
			continue
		}
		for _, a := range config.Platforms[p].Algorithms {
			if !slices.Contains(rules.algs, a) {
				t.Errorf("profile %s allows %s; %s takes %v", p, a, rules.source, rules.algs)
			}
		}
		if mx := config.Platforms[p].MaxSubjectBytes; rules.maxSub > 0 && (mx == 0 || mx > rules.maxSub) {
			t.Errorf("profile %s bounds sub at %d bytes; %s at %d", p, mx, rules.source, rules.maxSub)
		}
	}
}

func TestProfilesIssuePlatformTokens(t *testing.T) {
	h, is := profileHarness(t)
	now := time.Now()
	for _, p := range config.ProfileNames() {
		rules := platformRequirements[p]
		wantAud := profileAudiences[p]
		if p == "azure" {
			wantAud = []string{config.AzureTokenExchangeAudience}
		}
		t.Run(p+"/client_credentials", func(t *testing.T) {
			tr := h.token(url.Values{"grant_type": {"client_credentials"}}, p, profileSecret)
			if tr.status != 200 {
				t.Fatalf("client_credentials = %d %s: %s", tr.status, tr.Error, tr.Description)
			}
			checkPlatformToken(t, h, rules, tr.AccessToken, wantAud, p)
		})
		t.Run(p+"/token_exchange", func(t *testing.T) {
			sub, err := is.Sign(jose.RS256, map[string]any{
				"iss": is.URL(), "aud": "https://sso.acme.com", "sub": "build-42", "groups": []string{"deployers"},
				"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
			})
			if err != nil {
				t.Fatal(err)
			}
			tr := h.exchange(p, profileSecret, url.Values{"subject_token": {sub}, "subject_token_type": {oauth.TokenTypeJWT}, "scope": {"groups"}})
			if tr.status != 200 {
				t.Fatalf("exchange = %d %s: %s", tr.status, tr.Error, tr.Description)
			}
			claims := checkPlatformToken(t, h, rules, tr.AccessToken, wantAud, "wl:build-42")
			if p == "vault" {
				// groups_claim: a list of strings.
				var groups []string
				if err := json.Unmarshal(claims["groups"], &groups); err != nil || !slices.Equal(groups, []string{"deployers"}) {
					t.Errorf("groups = %s (%v), want [\"deployers\"]", claims["groups"], err)
				}
			}
		})
		if !rules.idTokens {
			continue
		}
		t.Run(p+"/id_token", func(t *testing.T) {
			pk := newPKCE()
			redirect := "https://" + p + ".example.com/cb"
			params := authParams(pk)
			params.Set("client_id", p)
			params.Set("redirect_uri", redirect)
			params.Set("scope", "openid email")
			code, _ := h.login(h.newBrowser(), params, "alice", alicePassword)
			tr := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {pk.verifier}}, p, profileSecret)
			if tr.status != 200 || tr.IDToken == "" {
				t.Fatalf("code redemption = %d %s: %s", tr.status, tr.Error, tr.Description)
			}
			claims := checkPlatformToken(t, h, rules, tr.IDToken, []string{p}, "")
			var sub string
			if err := json.Unmarshal(claims["sub"], &sub); err != nil || sub == "" {
				t.Errorf("ID token sub = %s", claims["sub"])
			}
			// The access token of the same sign-in is for the platform too.
			checkPlatformToken(t, h, rules, tr.AccessToken, wantAud, sub)
		})
	}
}

// checkPlatformToken holds tok to rules: header, claims and their JSON
// types, aud (exactly wantAud; a JSON string when the platform wants one),
// sub (wantSub unless empty), lifetime, iss equal to the discovery's
// issuer, and its key in the JWKS at the discovery's jwks_uri, of a type
// and size the platform takes, verifying the signature. It returns the
// claims.
func checkPlatformToken(t *testing.T, h *harness, rules platformRules, tok string, wantAud []string, wantSub string) map[string]json.RawMessage {
	t.Helper()
	hdr := jwtHeader(t, tok)
	alg, _ := hdr["alg"].(string)
	if !slices.Contains(rules.algs, alg) {
		t.Fatalf("%s: alg %q, want one of %v", rules.source, alg, rules.algs)
	}
	kid, _ := hdr["kid"].(string)
	if rules.kid && kid == "" {
		t.Errorf("%s: no kid in header %v", rules.source, hdr)
	}
	parts := strings.Split(tok, ".")
	raw, err := b64(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	for name, typ := range rules.claims {
		v, ok := claims[name]
		switch {
		case typ == "": // optional, any type
		case !ok:
			t.Errorf("%s: claim %s missing", rules.source, name)
		case jsonType(v) != typ:
			t.Errorf("%s: claim %s is a JSON %s (%s), want a %s", rules.source, name, jsonType(v), v, typ)
		}
	}
	var aud []string
	switch jsonType(claims["aud"]) {
	case "string":
		var s string
		_ = json.Unmarshal(claims["aud"], &s)
		aud = []string{s}
	case "array":
		if rules.audString {
			t.Errorf("%s: aud is an array %s, want one string", rules.source, claims["aud"])
		}
		_ = json.Unmarshal(claims["aud"], &aud)
	default:
		t.Errorf("%s: aud = %s", rules.source, claims["aud"])
	}
	if !slices.Equal(aud, wantAud) {
		t.Errorf("%s: aud = %v, want %v", rules.source, aud, wantAud)
	}
	for _, a := range aud {
		if rules.audForm != nil && !rules.audForm.MatchString(a) {
			t.Errorf("%s: aud %q is not of the form %s", rules.source, a, rules.audForm)
		}
	}
	var iss, sub string
	var exp, iat int64
	_ = json.Unmarshal(claims["iss"], &iss)
	_ = json.Unmarshal(claims["sub"], &sub)
	_ = json.Unmarshal(claims["exp"], &exp)
	_ = json.Unmarshal(claims["iat"], &iat)
	if wantSub != "" && sub != wantSub {
		t.Errorf("%s: sub = %q, want %q", rules.source, sub, wantSub)
	}
	if rules.maxSub > 0 && len(sub) > rules.maxSub {
		t.Errorf("%s: sub of %d bytes, at most %d", rules.source, len(sub), rules.maxSub)
	}
	if life := time.Duration(exp-iat) * time.Second; life <= 0 || rules.maxLifetime > 0 && life >= rules.maxLifetime {
		t.Errorf("%s: lifetime %s, want positive and below %s", rules.source, life, rules.maxLifetime)
	}

	var disc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	getJSON(t, h.issuer+"/.well-known/openid-configuration", &disc)
	if iss != h.issuer || disc.Issuer != iss {
		t.Errorf("%s: iss %q, discovery issuer %q, want both %q", rules.source, iss, disc.Issuer, h.issuer)
	}
	if !slices.Contains(disc.Algs, alg) {
		t.Errorf("%s: discovery's id_token_signing_alg_values_supported %v lacks %s", rules.source, disc.Algs, alg)
	}
	var set jose.JSONWebKeySet
	getJSON(t, disc.JWKSURI, &set)
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("%s: %d keys with kid %q at %s", rules.source, len(keys), kid, disc.JWKSURI)
	}
	checkKeyType(t, rules, alg, keys[0])
	for _, k := range set.Keys {
		if pub, ok := k.Key.(*rsa.PublicKey); ok && pub.N.BitLen() < rules.minRSA {
			t.Errorf("%s: RSA key %s of %d bits in the JWKS", rules.source, k.KeyID, pub.N.BitLen())
		}
	}
	sig, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sig.Verify(keys[0]); err != nil {
		t.Errorf("%s: signature does not verify with the published key: %v", rules.source, err)
	}
	return claims
}

func checkKeyType(t *testing.T, rules platformRules, alg string, k jose.JSONWebKey) {
	t.Helper()
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if !strings.HasPrefix(alg, "RS") && !strings.HasPrefix(alg, "PS") || pub.N.BitLen() < rules.minRSA {
			t.Errorf("%s: %s signed by an RSA key of %d bits", rules.source, alg, pub.N.BitLen())
		}
	case *ecdsa.PublicKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		if want == nil || pub.Curve != want {
			t.Errorf("%s: %s signed by an EC key on %s", rules.source, alg, pub.Curve.Params().Name)
		}
	default:
		if alg != "EdDSA" {
			t.Errorf("%s: %s signed by a %T", rules.source, alg, k.Key)
		}
	}
	if k.Algorithm != "" && k.Algorithm != alg {
		t.Errorf("%s: key %s is for %s, token signed %s", rules.source, k.KeyID, k.Algorithm, alg)
	}
}

func jsonType(v json.RawMessage) string {
	s := strings.TrimSpace(string(v))
	switch {
	case s == "":
		return "missing"
	case s[0] == '"':
		return "string"
	case s[0] == '[':
		return "array"
	case s[0] == '{':
		return "object"
	case s == "true" || s == "false":
		return "boolean"
	case s == "null":
		return "null"
	}
	return "number"
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d: %s", u, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// TestProfileSubjectBound refuses to mint a gcp token whose mapped subject
// is longer than google.subject takes, and mints the same for aws.
func TestProfileSubjectBound(t *testing.T) {
	h, is := profileHarness(t)
	now := time.Now()
	long := strings.Repeat("x", 130)
	sub, err := is.Sign(jose.RS256, map[string]any{"iss": is.URL(), "aud": "https://sso.acme.com", "sub": long, "groups": []string{"g"}, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	tr := h.exchange("gcp", profileSecret, url.Values{"subject_token": {sub}, "subject_token_type": {oauth.TokenTypeJWT}})
	wantOAuthError(t, tr, http.StatusBadRequest, "invalid_grant")
	if !strings.Contains(tr.Description, "at most 127") {
		t.Errorf("description %q does not give the bound", tr.Description)
	}
	sub2, err := is.Sign(jose.RS256, map[string]any{"iss": is.URL(), "aud": "https://sso.acme.com", "sub": long, "groups": []string{"g"}, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if tr := h.exchange("aws", profileSecret, url.Values{"subject_token": {sub2}, "subject_token_type": {oauth.TokenTypeJWT}}); tr.status != 200 {
		t.Errorf("aws exchange of a long subject = %d %s: %s", tr.status, tr.Error, tr.Description)
	}
}
