// Package oidc is a connector for any upstream OpenID Connect provider:
// discovery through go-oidc (the published issuer must equal the configured
// one), authorization code flow with PKCE S256, nonce and state, ID tokens
// checked for signature (algorithm allowlist), iss, aud, exp and nonce, the
// callback's iss checked as RFC 9207 says, the client authenticated at the
// token endpoint by secret, private_key_jwt or not at all (a public client;
// see clientauth.go), an optional userinfo merge, and
// upstream refresh so that a user disabled upstream can no longer refresh at
// the broker (prompt=consent with offline_access, OpenID Connect Core §11;
// a policy for sign-ins that bring no refresh token, see offline.go),
// and single logout: RP-initiated through the upstream's
// end_session_endpoint and back-channel logout tokens (see logout.go).
//
// The google and azuread connectors are built on it through Open and
// Extension.
package oidc

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/jwa"
	"github.com/fedbroker/fedbroker/problem"
)

// Defaults and bounds of the configuration.
const (
	DefaultTimeout            = 10 * time.Second
	DefaultKeyRefreshInterval = 10 * time.Second
	minTimeout                = 100 * time.Millisecond
	maxTimeout                = 2 * time.Minute
)

// DefaultScopes are requested when Config.Scopes is empty.
var DefaultScopes = []string{"openid", "profile", "email"}

// DefaultAlgorithms are accepted when Config.AllowedAlgorithms is empty.
var DefaultAlgorithms = []string{string(jose.RS256), string(jose.ES256)}

// Config is the `config:` block of a connector of type "oidc".
type Config struct {
	// Issuer is the upstream issuer URL; discovery is fetched from
	// Issuer + "/.well-known/openid-configuration" and must publish exactly
	// this issuer. https is required except for loopback hosts.
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"client_id"`
	// ClientSecret authenticates the connector at the token endpoint
	// unless ClientAuth says otherwise.
	ClientSecret string `yaml:"client_secret"`
	// ClientAuth is how the connector authenticates at the token endpoint:
	// client_secret (default), private_key_jwt or none (see clientauth.go).
	ClientAuth ClientAuth `yaml:"client_auth"`
	// Scopes requested upstream (default openid profile email). "openid" is
	// added when missing.
	Scopes []string `yaml:"scopes"`
	// AllowedAlgorithms lists the JWS algorithms accepted on ID tokens
	// (default RS256 ES256). HMAC and "none" are rejected.
	AllowedAlgorithms []string `yaml:"allowed_algorithms"`
	// UserInfo merges the userinfo response into the claims; ID token
	// values win for sub, iss, aud, exp, iat, nonce, azp, auth_time and
	// sid.
	UserInfo bool `yaml:"userinfo"`
	// InsecureSkipEmailVerified accepts an email claim whose email_verified
	// is not true. Off by default: an unverified email is a login failure,
	// since a mapping might trust it.
	InsecureSkipEmailVerified bool `yaml:"insecure_skip_email_verified"`
	// OfflineAccess asks for the offline_access scope (when the upstream
	// lists it, or lists no scopes) and keeps the upstream refresh token so
	// that broker refreshes are checked upstream. Default true.
	OfflineAccess *bool `yaml:"offline_access"`
	// OfflineAccessMissing is what a sign-in that asked for upstream refresh
	// but got no refresh token allows the broker: OfflineMissingCap (the
	// default) or OfflineMissingRefuse. See offline.go.
	OfflineAccessMissing string `yaml:"offline_access_missing"`
	// UpstreamSessionLifetime, with OfflineMissingCap, is how long the
	// upstream session lasts, counted from its auth_time (or the sign-in);
	// default: until the upstream ID token's exp.
	UpstreamSessionLifetime time.Duration `yaml:"upstream_session_lifetime"`
	// Prompt is the prompt parameter sent upstream (OpenID Connect Core
	// §3.1.2.1): space-separated none, login, consent, select_account.
	// Unset: consent when offline_access is requested (§11), else none.
	// Set to "" to send no prompt at all.
	Prompt *string `yaml:"prompt"`
	// DomainHint is sent as domain_hint (Entra ID, AD FS: skip the home
	// realm discovery).
	DomainHint string `yaml:"domain_hint"`
	// ACRValues are sent as acr_values (requested, not checked: a mapping
	// may check claims.acr).
	ACRValues []string `yaml:"acr_values"`
	// AuthParams are further authorization request parameters. They may not
	// set a parameter the connector controls (reservedAuthParams).
	AuthParams map[string]string `yaml:"auth_params"`
	// Timeout bounds every upstream request (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// KeyRefreshInterval is the least time between two JWKS fetches caused
	// by an unknown key id (default 10s). A token signed with a key published
	// less than this after the last fetch is refused until the interval ends.
	KeyRefreshInterval time.Duration `yaml:"key_refresh_interval"`
}

// Compile-time check of the contract.
var _ connectors.Config = (*Config)(nil)

// Validate returns every problem in c, each with its path relative to the
// connector's config block.
func (c *Config) Validate() []problem.Problem {
	var errs []problem.Problem
	add := func(path, format string, args ...any) {
		errs = append(errs, problem.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if c.Issuer == "" {
		add("issuer", "is required")
	} else if err := checkURL(c.Issuer); err != nil {
		add("issuer", "%v", err)
	}
	if c.ClientID == "" {
		add("client_id", "is required")
	}
	for i, s := range c.Scopes {
		if s == "" || containsSpace(s) {
			add(fmt.Sprintf("scopes[%d]", i), "must be one non-empty scope without spaces")
		}
	}
	for i, a := range c.AllowedAlgorithms {
		if !jwa.IsAsymmetric(a) {
			add(fmt.Sprintf("allowed_algorithms[%d]", i), "must be one of %v, not %q", jwa.Names(), a)
		}
	}
	if c.Timeout != 0 && (c.Timeout < minTimeout || c.Timeout > maxTimeout) {
		add("timeout", "must be between %s and %s", minTimeout, maxTimeout)
	}
	if c.KeyRefreshInterval < 0 {
		add("key_refresh_interval", "must not be negative")
	}
	errs = append(errs, c.validateClientAuth()...)
	errs = append(errs, c.validateAuthParams()...)
	errs = append(errs, c.validateOffline()...)
	return errs
}

// Open discovers the upstream with opts.HTTPClient and returns a
// *Connector. It fails when the upstream cannot be reached or publishes
// another issuer.
func (c *Config) Open(ctx context.Context, id string, opts connectors.Options) (connectors.Connector, error) {
	conn, err := Open(ctx, id, *c, opts, Extension{})
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// withDefaults returns c with every unset field defaulted.
func (c Config) withDefaults() Config {
	if len(c.Scopes) == 0 {
		c.Scopes = DefaultScopes
	}
	if !slices.Contains(c.Scopes, "openid") {
		c.Scopes = append([]string{"openid"}, c.Scopes...)
	}
	if len(c.AllowedAlgorithms) == 0 {
		c.AllowedAlgorithms = DefaultAlgorithms
	}
	if c.OfflineAccess == nil {
		t := true
		c.OfflineAccess = &t
	}
	if c.OfflineAccessMissing == "" {
		c.OfflineAccessMissing = OfflineMissingCap
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.KeyRefreshInterval == 0 {
		c.KeyRefreshInterval = DefaultKeyRefreshInterval
	}
	return c
}

// checkURL accepts absolute https URLs, and http on loopback hosts.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("must be an absolute URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if connectors.IsLoopback(u.Hostname()) {
			return nil
		}
	}
	return fmt.Errorf("must be https (http only for localhost)")
}

func containsSpace(s string) bool {
	for _, r := range s {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return true
		}
	}
	return false
}
