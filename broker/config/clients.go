package config

import (
	"net/url"
	"slices"
	"strings"
	"time"
)

func validateClients(c *Config, ps *problems) {
	connectorIDs := make(map[string]bool)
	for _, cc := range c.Connectors {
		connectorIDs[cc.ID] = true
	}
	algs := append([]string{c.Signing.Algorithm}, c.Signing.Algorithms...)
	ids := make(map[string]int)
	for i, cl := range c.Clients {
		p := index("clients", i)
		switch {
		case cl.ID == "":
			ps.Add(p+".id", "required")
		case strings.TrimSpace(cl.ID) != cl.ID || strings.ContainsAny(cl.ID, ":\r\n\t"):
			ps.Add(p+".id", "must not contain spaces, control characters or colons")
		default:
			if first, dup := ids[cl.ID]; dup {
				ps.Add(p+".id", "duplicate of clients[%d].id", first)
			} else {
				ids[cl.ID] = i
			}
		}
		keyJWT := cl.TokenEndpointAuthMethod == AuthPrivateKeyJWT
		switch cl.TokenEndpointAuthMethod {
		case "", AuthClientSecretBasic, AuthClientSecretPost:
		case AuthPrivateKeyJWT:
			switch {
			case cl.Public:
				ps.Add(p+".token_endpoint_auth_method", "a public client does not authenticate: remove it or public")
			case cl.JWKS == "" && cl.JWKSURI == "":
				ps.Add(p+".jwks", "private_key_jwt needs the client's public keys: jwks or jwks_uri")
			}
		default:
			ps.Add(p+".token_endpoint_auth_method", "unknown method %q (want %s, %s or %s)", cl.TokenEndpointAuthMethod, AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT)
		}
		switch {
		case cl.Public && cl.SecretHash != "":
			ps.Add(p+".secret_hash", "a public client has no secret: remove secret_hash or public")
		case !cl.Public && cl.SecretHash == "" && keyJWT:
		case !cl.Public && cl.SecretHash == "":
			ps.Add(p+".secret_hash", "required for a confidential client (from `fedbroker hash-secret`), or set public: true")
		case cl.SecretHash != "":
			if err := ParseSecretHash(cl.SecretHash); err != nil {
				ps.Add(p+".secret_hash", "%s", strings.TrimPrefix(err.Error(), "config: secret hash: "))
			}
		}
		for j, g := range cl.GrantTypes {
			gp := index(p+".grant_types", j)
			switch {
			case !slices.Contains(grantTypes, g):
				ps.Add(gp, "unknown grant type %q (want %s)", g, strings.Join(grantTypes, ", "))
			case g == GrantClientCredentials && cl.Public:
				ps.Add(gp, "a public client cannot use client_credentials")
			case slices.Index(cl.GrantTypes, g) != j:
				ps.Add(gp, "listed twice")
			}
		}
		if cl.DelegateAnyAudience {
			switch {
			case cl.Public:
				ps.Add(p+".delegate_any_audience", "a public client cannot use token exchange")
			case !slices.Contains(cl.GrantTypes, GrantTokenExchange):
				ps.Add(p+".delegate_any_audience", "has no effect without the %s grant", GrantTokenExchange)
			}
		}
		if slices.Contains(cl.GrantTypes, GrantAuthorizationCode) && len(cl.RedirectURIs) == 0 {
			ps.Add(p+".redirect_uris", "required for the authorization_code grant")
		}
		for j, u := range cl.RedirectURIs {
			if msg := checkRedirectURI(u, cl.Public); msg != "" {
				ps.Add(index(p+".redirect_uris", j), "%s", msg)
			}
		}
		for j, u := range cl.PostLogoutRedirectURIs {
			if msg := checkRedirectURI(u, cl.Public); msg != "" {
				ps.Add(index(p+".post_logout_redirect_uris", j), "%s", msg)
			}
		}
		for j, a := range cl.Audiences {
			if strings.TrimSpace(a) == "" {
				ps.Add(index(p+".audiences", j), "must not be empty")
			}
		}
		for j, s := range cl.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
				ps.Add(index(p+".scopes", j), "not a scope token: %q", s)
			}
		}
		for j, id := range cl.Connectors {
			if !connectorIDs[id] {
				ps.Add(index(p+".connectors", j), "no connector %q", id)
			}
		}
		if a := cl.IDTokenSignedResponseAlg; a != "" && !slices.Contains(algs, a) {
			ps.Add(p+".id_token_signed_response_alg", "%q is not configured (signing.algorithm or signing.algorithms: %s)", a, strings.Join(algs, ", "))
		}
		for _, d := range []struct {
			path string
			v    time.Duration
		}{{p + ".access_token_lifetime", cl.AccessTokenLifetime}, {p + ".id_token_lifetime", cl.IDTokenLifetime}} {
			switch {
			case d.v < 0:
				ps.Add(d.path, "must not be negative")
			case d.v > MaxTokenLifetime:
				ps.Add(d.path, "must be at most %s, not %s", MaxTokenLifetime, d.v)
			}
		}
	}
}

// checkRedirectURI returns what is wrong with a redirect URI, or "".
// Allowed: https with a host; http only to a loopback host (RFC 8252
// §7.3); and for public clients a private-use URI scheme containing a dot
// (RFC 8252 §7.1), such as com.example.app:/callback.
func checkRedirectURI(raw string, public bool) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "not a URL: " + err.Error()
	}
	if u.Scheme == "" {
		return "must be an absolute URI"
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "must not have a fragment"
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return "https URI needs a host"
		}
	case "http":
		if u.Host == "" || !IsLoopback(u.Hostname()) {
			return "http is only allowed for localhost and loopback addresses; use https"
		}
	default:
		if !public {
			return "only https (or http to a loopback host) for a confidential client"
		}
		if !schemeRe.MatchString(u.Scheme) || !strings.Contains(u.Scheme, ".") {
			return "a private-use scheme must be a reversed domain name such as com.example.app"
		}
	}
	if u.User != nil {
		return "must not contain user information"
	}
	if strings.Contains(u.Host, "*") {
		return "wildcards are not allowed"
	}
	return ""
}
