package broker

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/dpop"
	"github.com/fedbroker/fedbroker/jwa"
	"github.com/fedbroker/fedbroker/templates"
)

// defaultAdminAddr is where `fedbroker serve` starts the admin API when it
// is enabled without admin.addr (cmd/fedbroker/serve.go).
const defaultAdminAddr = "127.0.0.1:5557"

// handleRoot serves the page at the issuer URL: what this is for a person
// who lands there, the discovery and JWKS URLs for developers, and, when
// the admin API is enabled, where it listens. The admin listener's
// address is shown only when it is a loopback address; its token never.
func (s *Server) handleRoot(cfg *config.Config) echo.HandlerFunc {
	data := templates.RootData{
		Page:         s.pages.Page("Sign-in service"),
		Name:         strings.TrimPrefix(strings.TrimPrefix(s.issuer, "https://"), "http://"),
		IssuerURL:    s.issuer,
		DiscoveryURL: s.issuer + "/.well-known/openid-configuration",
		JWKSURL:      s.issuer + "/keys",
	}
	a := cfg.Admin
	mtls := a.TLS != nil && a.TLS.ClientCAFile != ""
	if a.Token != "" || mtls {
		data.AdminEnabled = true
		addr := a.Addr
		if addr == "" {
			addr = defaultAdminAddr
		}
		scheme := "http"
		if a.TLS != nil {
			scheme = "https"
		}
		if host, _, err := net.SplitHostPort(addr); err == nil && config.IsLoopback(host) {
			data.AdminURL = scheme + "://" + addr
		}
	}
	return func(c echo.Context) error {
		return s.pages.Render(c.Response(), http.StatusOK, "root.html", data)
	}
}

// discovery is the OpenID Provider Metadata (OpenID Connect Discovery §3,
// RFC 8414). It advertises exactly what the broker supports.
type discovery struct {
	Issuer                             string   `json:"issuer"`
	AuthorizationEndpoint              string   `json:"authorization_endpoint"`
	TokenEndpoint                      string   `json:"token_endpoint"`
	JWKSURI                            string   `json:"jwks_uri"`
	UserinfoEndpoint                   string   `json:"userinfo_endpoint"`
	RevocationEndpoint                 string   `json:"revocation_endpoint"`
	IntrospectionEndpoint              string   `json:"introspection_endpoint"`
	EndSessionEndpoint                 string   `json:"end_session_endpoint"`
	BackchannelLogoutSupported         bool     `json:"backchannel_logout_supported"`
	BackchannelLogoutSessionSupported  bool     `json:"backchannel_logout_session_supported"`
	FrontchannelLogoutSupported        bool     `json:"frontchannel_logout_supported"`
	FrontchannelLogoutSessionSupported bool     `json:"frontchannel_logout_session_supported"`
	ResponseTypes                      []string `json:"response_types_supported"`
	ResponseModes                      []string `json:"response_modes_supported"`
	GrantTypes                         []string `json:"grant_types_supported"`
	SubjectTypes                       []string `json:"subject_types_supported"`
	IDTokenAlgs                        []string `json:"id_token_signing_alg_values_supported"`
	ScopesSupported                    []string `json:"scopes_supported"`
	TokenAuthMethods                   []string `json:"token_endpoint_auth_methods_supported"`
	TokenAuthSigningAlgs               []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	RevocationAuthMethods              []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionAuthMethods           []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethods               []string `json:"code_challenge_methods_supported"`
	ClaimsSupported                    []string `json:"claims_supported"`
	PromptValues                       []string `json:"prompt_values_supported"`
	AuthorizationResponseISSSupported  bool     `json:"authorization_response_iss_parameter_supported"`
	RequestParameterSupported          bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported       bool     `json:"request_uri_parameter_supported"`
	ClaimsParameterSupported           bool     `json:"claims_parameter_supported"`
	DeviceAuthorizationEndpoint        string   `json:"device_authorization_endpoint"`
	DPoPSigningAlgs                    []string `json:"dpop_signing_alg_values_supported"`

	// Pushed authorization requests (RFC 9126 §5).
	PushedAuthorizationRequestEndpoint string `json:"pushed_authorization_request_endpoint"`
	RequirePushedAuthorizationRequests bool   `json:"require_pushed_authorization_requests"`
}

func (s *Server) handleDiscovery(c echo.Context) error {
	authMethods := []string{oauth.AuthSecretBasic, oauth.AuthSecretPost, oauth.AuthPrivateKeyJWT}
	d := discovery{
		Issuer:                s.issuer,
		AuthorizationEndpoint: s.issuer + "/authorize",
		TokenEndpoint:         s.issuer + "/token",
		JWKSURI:               s.issuer + "/keys",
		UserinfoEndpoint:      s.issuer + "/userinfo",
		RevocationEndpoint:    s.issuer + "/revoke",
		IntrospectionEndpoint: s.issuer + "/introspect",
		EndSessionEndpoint:    s.issuer + "/logout",
		// OpenID Connect Back-Channel and Front-Channel Logout 1.0: the
		// logout token and the iframe URL carry sid.
		BackchannelLogoutSupported:         true,
		BackchannelLogoutSessionSupported:  true,
		FrontchannelLogoutSupported:        true,
		FrontchannelLogoutSessionSupported: true,
		ResponseTypes:                      []string{"code"},
		ResponseModes:                      []string{"query"},
		GrantTypes:                         []string{config.GrantAuthorizationCode, config.GrantRefreshToken, config.GrantClientCredentials, config.GrantTokenExchange},
		SubjectTypes:                       []string{"public"},
		IDTokenAlgs:                        s.keys.PublishedAlgorithms(), // the shared set's, the same on every replica
		ScopesSupported:                    []string{"openid", "profile", "email", "groups", "offline_access"},
		TokenAuthMethods:                   append(authMethods, oauth.AuthNone),
		TokenAuthSigningAlgs:               jwa.Names(),
		RevocationAuthMethods:              append(authMethods, oauth.AuthNone),
		IntrospectionAuthMethods:           authMethods,
		CodeChallengeMethods:               []string{oauth.PKCEMethodS256},
		ClaimsSupported: []string{"iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "amr",
			"email", "email_verified", "name", "preferred_username", "groups", "roles"},
		PromptValues:                      []string{"none", "login"},
		AuthorizationResponseISSSupported: true,
		DeviceAuthorizationEndpoint:       s.issuer + "/device/authorization",
		DPoPSigningAlgs:                   dpop.DefaultAlgorithms,
	}
	d.GrantTypes = append(d.GrantTypes, config.GrantDeviceCode)
	d.PushedAuthorizationRequestEndpoint = s.issuer + "/par"
	d.RequirePushedAuthorizationRequests = s.par.Settings().Require
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.JSON(http.StatusOK, d)
}

// handleJWKS publishes the public signing keys from memory: it keeps
// answering while storage is down.
func (s *Server) handleJWKS(c echo.Context) error {
	h := c.Response().Header()
	if err := s.keys.Readiness(); err != nil {
		// A replica that refuses to sign has no key set to publish; an
		// empty one would make verifiers drop the keys they cached.
		h.Set("Cache-Control", "no-store")
		return oauth.NewError(http.StatusServiceUnavailable, oauth.ErrTemporarilyUnavailable, "the signing keys are not usable on this replica")
	}
	body, etag := s.keys.JWKS()
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d, must-revalidate", int(s.keys.MaxAge().Seconds())))
	if etag != "" {
		h.Set("ETag", etag)
		if match := c.Request().Header.Get("If-None-Match"); match == etag {
			return c.NoContent(http.StatusNotModified)
		}
	}
	return c.Blob(http.StatusOK, "application/jwk-set+json", body)
}

// handleUserinfo serves the UserInfo endpoint (OpenID Connect Core §5.3).
// A token comes as a bearer token or, DPoP-bound, with a DPoP proof
// (RFC 9449 §7): see presentedToken and userinfoError.
func (s *Server) handleUserinfo(c echo.Context) error {
	token, jkt, ok, err := s.presentedToken(c, "/userinfo")
	if err != nil {
		return err
	}
	if !ok {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="fedbroker"`)
		c.Response().Header().Add("WWW-Authenticate", `DPoP algs="`+dpopAlgs+`"`)
		return c.NoContent(http.StatusUnauthorized)
	}
	out, err := s.tokens.UserinfoBound(c.Request().Context(), token, jkt)
	if err != nil {
		return userinfoError(c, err, jkt)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

// clientForm parses a small form body, authenticates its client and
// returns its `token`, for the revocation and introspection endpoints.
func (s *Server) clientForm(w http.ResponseWriter, r *http.Request, remoteIP string) (*runtime.Client, string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return nil, "", oauth.InvalidRequest("the body could not be parsed")
	}
	cl, err := s.clients.Authenticate(r.Context(), s.rt.Load(), clientauth.FromRequest(r, remoteIP))
	if err != nil {
		return nil, "", err
	}
	token := r.PostForm.Get("token")
	if token == "" {
		return nil, "", oauth.InvalidRequest("token is required")
	}
	return cl, token, nil
}

// handleIntrospect serves token introspection (RFC 7662) to authenticated
// confidential clients.
func (s *Server) handleIntrospect(c echo.Context) error {
	cl, token, err := s.clientForm(c.Response(), c.Request(), c.RealIP())
	if err != nil {
		return err
	}
	if cl.Public {
		return oauth.InvalidClient("introspection needs an authenticated confidential client")
	}
	out, err := s.tokens.Introspect(c.Request().Context(), cl, token)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

// handleRevoke serves token revocation (RFC 7009): 200 for any token,
// valid or not.
func (s *Server) handleRevoke(c echo.Context) error {
	cl, token, err := s.clientForm(c.Response(), c.Request(), c.RealIP())
	if err != nil {
		return err
	}
	if err := s.tokens.Revoke(c.Request().Context(), cl, token); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.NoContent(http.StatusOK)
}
