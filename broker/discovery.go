package broker

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
)

// discovery is the OpenID Provider Metadata (OpenID Connect Discovery §3,
// RFC 8414). It advertises exactly what the broker supports.
type discovery struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	ResponseTypes                     []string `json:"response_types_supported"`
	ResponseModes                     []string `json:"response_modes_supported"`
	GrantTypes                        []string `json:"grant_types_supported"`
	SubjectTypes                      []string `json:"subject_types_supported"`
	IDTokenAlgs                       []string `json:"id_token_signing_alg_values_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	TokenAuthMethods                  []string `json:"token_endpoint_auth_methods_supported"`
	TokenAuthSigningAlgs              []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	RevocationAuthMethods             []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionAuthMethods          []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethods              []string `json:"code_challenge_methods_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
	PromptValues                      []string `json:"prompt_values_supported"`
	AuthorizationResponseISSSupported bool     `json:"authorization_response_iss_parameter_supported"`
	RequestParameterSupported         bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported      bool     `json:"request_uri_parameter_supported"`
	ClaimsParameterSupported          bool     `json:"claims_parameter_supported"`
}

func (s *Server) handleDiscovery(c echo.Context) error {
	d := discovery{
		Issuer:                   s.issuer,
		AuthorizationEndpoint:    s.issuer + "/authorize",
		TokenEndpoint:            s.issuer + "/token",
		JWKSURI:                  s.issuer + "/keys",
		UserinfoEndpoint:         s.issuer + "/userinfo",
		RevocationEndpoint:       s.issuer + "/revoke",
		IntrospectionEndpoint:    s.issuer + "/introspect",
		EndSessionEndpoint:       s.issuer + "/logout",
		ResponseTypes:            []string{"code"},
		ResponseModes:            []string{"query"},
		GrantTypes:               []string{"authorization_code", "refresh_token", "client_credentials", grantTokenExchange},
		SubjectTypes:             []string{"public"},
		IDTokenAlgs:              s.keys.Algorithms(),
		ScopesSupported:          []string{"openid", "profile", "email", "groups", "offline_access"},
		TokenAuthMethods:         []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
		TokenAuthSigningAlgs:     []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"},
		RevocationAuthMethods:    []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
		IntrospectionAuthMethods: []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		CodeChallengeMethods:     []string{"S256"},
		ClaimsSupported: []string{"iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "amr",
			"email", "email_verified", "name", "preferred_username", "groups", "roles"},
		PromptValues:                      []string{"none", "login"},
		AuthorizationResponseISSSupported: true,
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.JSON(http.StatusOK, d)
}

// handleJWKS publishes the public signing keys from memory: it keeps
// answering while storage is down.
func (s *Server) handleJWKS(c echo.Context) error {
	body, etag := s.keys.JWKS()
	h := c.Response().Header()
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d, must-revalidate", int(s.keys.MaxAge().Seconds())))
	if etag != "" {
		h.Set("ETag", etag)
		if match := c.Request().Header.Get("If-None-Match"); match == etag {
			return c.NoContent(http.StatusNotModified)
		}
	}
	return c.Blob(http.StatusOK, "application/jwk-set+json", body)
}
