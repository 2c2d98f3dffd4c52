package config

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// The platforms a client's `profile:` names.
const (
	ProfileAWS        = "aws"
	ProfileGCP        = "gcp"
	ProfileAzure      = "azure"
	ProfileVault      = "vault"
	ProfileKubernetes = "kubernetes"
)

// AzureTokenExchangeAudience is the audience Microsoft Entra ID expects in
// a token presented to a federated identity credential unless the
// credential names another.
const AzureTokenExchangeAudience = "api://AzureADTokenExchange"

// Platform is what one platform requires of a token issued by an external
// OpenID Connect issuer and presented to it. Each value is taken from the
// platform's published documentation (linked in Platforms).
type Platform struct {
	// Name is the profile name (ProfileAWS, ...).
	Name string
	// Title names the platform in messages.
	Title string
	// Algorithms are the JWS algorithms the platform accepts that the
	// broker can sign with, the platform's preferred one (its default, or
	// the one its documentation and examples use) first.
	Algorithms []string
	// SingleAudience: the token must carry exactly one audience (the
	// broker then writes aud as a JSON string).
	SingleAudience bool
	// DefaultAudience is the client's audience when it lists none.
	DefaultAudience string
	// Audience, when set, says what is wrong with an audience value for
	// this platform, or "".
	Audience func(aud string) string
	// MaxSubjectBytes bounds sub (0: no published bound).
	MaxSubjectBytes int
	// MaxIssuerBytes bounds the issuer URL (0: no published bound).
	MaxIssuerBytes int
	// MaxLifetime: exp - iat must be below it (0: no published bound).
	MaxLifetime time.Duration
}

// gcpAudienceRe is a workload identity pool provider's full resource name,
// with or without the https: prefix.
var gcpAudienceRe = regexp.MustCompile(`^(https:)?//iam\.googleapis\.com/projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}$`)

// Platforms is the one table of platform requirements, by profile name.
var Platforms = map[string]Platform{
	ProfileAWS: {
		Name: ProfileAWS, Title: "AWS IAM (AssumeRoleWithWebIdentity)",
		// "Tokens must be signed using either RSA keys (RS256, RS384, or
		// RS512) or ECDSA keys (ES256, ES384, or ES512)."
		// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html
		Algorithms: []string{"RS256", "ES256"},
		// The IAM OIDC provider's client ID list is matched against aud;
		// one audience per token is what its condition keys
		// (<provider>:aud) compare.
		// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc.html
		SingleAudience: true,
		// The provider URL must begin with https:// (validateIssuer
		// already refuses http for any issuer but a loopback one).
		// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc.html
	},
	ProfileGCP: {
		Name: ProfileGCP, Title: "Google Cloud Workload Identity Federation",
		// "alg: ... Must be RS256 or ES256"; "kid" required; "exp: ...
		// Must be less than 48 hours after iat"; aud one of the provider's
		// allowed audiences, by default its full resource name.
		// https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token
		Algorithms:     []string{"RS256", "ES256"},
		SingleAudience: true,
		Audience: func(aud string) string {
			if gcpAudienceRe.MatchString(aud) {
				return ""
			}
			return "must be the provider's resource name //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER (or with https: in front)"
		},
		// google.subject is at most 127 bytes.
		// https://cloud.google.com/iam/docs/workload-identity-federation#mapping
		MaxSubjectBytes: 127,
		MaxLifetime:     48 * time.Hour,
		// The issuer URI must use https (as validateIssuer requires).
		// https://cloud.google.com/iam/docs/workload-identity-federation-with-other-providers
	},
	ProfileAzure: {
		Name: ProfileAzure, Title: "Microsoft Entra ID workload identity federation",
		// Only tokens signed with RS256 are accepted from external issuers.
		// https://learn.microsoft.com/en-us/entra/workload-id/workload-identity-federation-considerations
		Algorithms: []string{"RS256"},
		// audiences "can only accept a single value" (600 characters at
		// most), "should be set to api://AzureADTokenExchange"; issuer
		// and subject are matched exactly, 600 characters at most each.
		// https://learn.microsoft.com/en-us/graph/api/resources/federatedidentitycredential
		SingleAudience:  true,
		DefaultAudience: AzureTokenExchangeAudience,
		Audience: func(aud string) string {
			if len(aud) > 600 {
				return "must be at most 600 characters"
			}
			return ""
		},
		MaxSubjectBytes: 600,
		MaxIssuerBytes:  600,
	},
	ProfileVault: {
		Name: ProfileVault, Title: "HashiCorp Vault JWT auth",
		// jwt_supported_algs defaults to RS256; RS/PS/ES 256-512 and EdDSA
		// may be listed.
		// https://developer.hashicorp.com/vault/api-docs/auth/jwt#jwt_supported_algs
		Algorithms: []string{"RS256", "ES256", "EdDSA"},
		// bound_audiences: any one of the token's audiences must match.
		// https://developer.hashicorp.com/vault/api-docs/auth/jwt#bound_audiences
	},
	ProfileKubernetes: {
		Name: ProfileKubernetes, Title: "Kubernetes API server (structured authentication)",
		// The JWT authenticator accepts RS256, RS384, RS512, ES256, ES384,
		// ES512, PS256, PS384, PS512 (not EdDSA); the issuer URL must use
		// https; one of issuer.audiences must be in aud.
		// https://kubernetes.io/docs/reference/access-authn-authz/authentication/#using-authentication-configuration
		Algorithms: []string{"RS256", "ES256"},
	},
}

// ProfileNames returns the profile names, sorted.
func ProfileNames() []string {
	names := make([]string, 0, len(Platforms))
	for n := range Platforms {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// signingAlgs are the algorithms the broker keeps keys for, its default
// first.
func (s Signing) signingAlgs() []string {
	return append([]string{s.Algorithm}, s.Algorithms...)
}

// platformAlg is the algorithm a client of platform p signs with when it
// names none: the first of p's algorithms, in p's order of preference,
// that the broker keeps keys for; "" when none.
func platformAlg(p Platform, s Signing) string {
	configured := s.signingAlgs()
	for _, a := range p.Algorithms {
		if slices.Contains(configured, a) {
			return a
		}
	}
	return ""
}

// applyProfileDefaults fills in, for each client with a known profile,
// what the platform needs and the client left unset: its signing
// algorithm, its audience, and lifetimes capped at the platform's bound.
// It runs after the signing and tokens defaults, before the clients'.
func (c *Config) applyProfileDefaults() {
	for i := range c.Clients {
		cl := &c.Clients[i]
		p, ok := Platforms[cl.Profile]
		if !ok {
			continue
		}
		if cl.IDTokenSignedResponseAlg == "" {
			cl.IDTokenSignedResponseAlg = platformAlg(p, c.Signing)
		}
		if len(cl.Audiences) == 0 && p.DefaultAudience != "" {
			cl.Audiences = []string{p.DefaultAudience}
		}
		if p.MaxLifetime > 0 {
			// exp - iat must stay below the bound: a second less.
			limit := p.MaxLifetime - time.Second
			if cl.AccessTokenLifetime == 0 && c.Tokens.AccessToken > limit {
				cl.AccessTokenLifetime = limit
			}
			if cl.IDTokenLifetime == 0 && c.Tokens.IDToken > limit {
				cl.IDTokenLifetime = limit
			}
		}
	}
}

// validateProfiles checks each profiled client against its platform.
func validateProfiles(c *Config, ps *problems) {
	for i, cl := range c.Clients {
		if cl.Profile == "" {
			continue
		}
		path := index("clients", i)
		p, ok := Platforms[cl.Profile]
		if !ok {
			ps.Add(path+".profile", "unknown profile %q (want %s)", cl.Profile, strings.Join(ProfileNames(), ", "))
			continue
		}
		checkProfile(c, cl, p, path, ps)
	}
}

func checkProfile(c *Config, cl Client, p Platform, path string, ps *problems) {
	algs := strings.Join(p.Algorithms, " or ")
	switch a := cl.IDTokenSignedResponseAlg; {
	case a == "":
		ps.Add(path+".profile", "%s accepts %s: configure one under signing.algorithm or signing.algorithms", p.Title, algs)
	case !slices.Contains(p.Algorithms, a):
		ps.Add(path+".id_token_signed_response_alg", "%s accepts %s, not %s", p.Title, algs, a)
	}
	if p.SingleAudience && len(cl.Audiences) != 1 {
		ps.Add(path+".audiences", "%s takes tokens with exactly one audience: list one, not %d", p.Title, len(cl.Audiences))
	}
	if p.Audience != nil {
		for j, a := range cl.Audiences {
			if msg := p.Audience(a); msg != "" {
				ps.Add(index(path+".audiences", j), "%s: %s", p.Title, msg)
			}
		}
	}
	if p.MaxSubjectBytes > 0 && slices.Contains(cl.GrantTypes, GrantClientCredentials) && len(cl.ID) > p.MaxSubjectBytes {
		// client_credentials tokens have the client id as sub.
		ps.Add(path+".id", "is the sub of its client_credentials tokens: %s takes at most %d bytes, not %d", p.Title, p.MaxSubjectBytes, len(cl.ID))
	}
	if p.MaxIssuerBytes > 0 && len(c.Issuer) > p.MaxIssuerBytes {
		ps.Add(path+".profile", "%s takes an issuer of at most %d characters; issuer has %d", p.Title, p.MaxIssuerBytes, len(c.Issuer))
	}
	if p.MaxLifetime > 0 {
		for _, d := range []struct {
			key string
			v   time.Duration
		}{{"access_token_lifetime", cl.AccessTokenLifetime}, {"id_token_lifetime", cl.IDTokenLifetime}} {
			if d.v >= p.MaxLifetime {
				ps.Add(path+"."+d.key, "%s takes tokens living less than %s, not %s", p.Title, p.MaxLifetime, d.v)
			}
		}
	}
}

// SubjectProblem says why sub cannot be the subject of a token for a
// client with profile, or "" when it can (or the platform sets no bound).
func SubjectProblem(profile, sub string) string {
	p, ok := Platforms[profile]
	if !ok || p.MaxSubjectBytes == 0 || len(sub) <= p.MaxSubjectBytes {
		return ""
	}
	return fmt.Sprintf("the subject is %d bytes; %s takes at most %d", len(sub), p.Title, p.MaxSubjectBytes)
}
