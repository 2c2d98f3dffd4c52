package oidc

import (
	"fmt"
	"net/url"
	"strings"
)

// tenantPlaceholder is the part of a multi-tenant discovery issuer (Entra
// ID's organizations and common endpoints) that stands for the tenant.
const tenantPlaceholder = "{tenantid}"

// issuerMismatch is the error of an authorization response whose iss is
// missing or wrong (RFC 9207): it may come from another identity provider
// than the one the sign-in was sent to (a mix-up attack).
func issuerMismatch(cause error) error {
	return userError(CodeIssuerMismatch, "The answer did not come from the identity provider this sign-in was sent to. Please start again.", cause)
}

// checkResponseIssuer applies RFC 9207 to the callback's query before
// anything else of it is believed: when the upstream advertises
// authorization_response_iss_parameter_supported, iss must be present;
// when present, advertised or not, it must be the upstream's issuer
// (compared as strings, RFC 9207 §2.4). It returns the iss sent ("" when
// none).
func (c *Connector) checkResponseIssuer(q url.Values) (string, error) {
	vals, sent := q["iss"]
	switch {
	case !sent && c.issRequired:
		return "", issuerMismatch(fmt.Errorf("oidc: %s: callback has no iss, though the upstream advertises authorization_response_iss_parameter_supported", c.id))
	case !sent:
		return "", nil
	case len(vals) != 1:
		return "", issuerMismatch(fmt.Errorf("oidc: %s: callback has %d iss parameters", c.id, len(vals)))
	case !c.issuerMatches(vals[0]):
		return "", issuerMismatch(fmt.Errorf("oidc: %s: callback iss %q, want %q", c.id, vals[0], c.responseIssuer()))
	}
	return vals[0], nil
}

// responseIssuer is the issuer the upstream's discovery document publishes.
func (c *Connector) responseIssuer() string {
	if c.ext.DiscoveryIssuer != "" {
		return c.ext.DiscoveryIssuer
	}
	return c.cfg.Issuer
}

// issuerMatches reports whether iss is the upstream's issuer. Behind a
// multi-tenant discovery issuer, any one tenant fits the template; the
// callback then checks that the ID token names the same issuer.
func (c *Connector) issuerMatches(iss string) bool {
	want := c.responseIssuer()
	prefix, suffix, tmpl := strings.Cut(want, tenantPlaceholder)
	if !tmpl {
		return iss == want
	}
	if len(iss) <= len(prefix)+len(suffix) || !strings.HasPrefix(iss, prefix) || !strings.HasSuffix(iss, suffix) {
		return false
	}
	tenant := iss[len(prefix) : len(iss)-len(suffix)]
	return !strings.ContainsAny(tenant, "/{}?#")
}

// checkTokenIssuer requires the ID token of a callback whose iss was sent
// to name that same issuer.
func (c *Connector) checkTokenIssuer(sent string, claims map[string]any) error {
	if sent == "" {
		return nil
	}
	if got, _ := claims["iss"].(string); got != sent {
		return issuerMismatch(fmt.Errorf("oidc: %s: callback iss %q, ID token iss %q", c.id, sent, got))
	}
	return nil
}
