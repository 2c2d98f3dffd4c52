package testidp

import (
	"net/url"
	"strings"
)

// IssParameter controls the iss parameter of RFC 9207 on authorization
// responses (the redirects back from /authorize, with a code or an error).
// The zero value is the default: not advertised, not sent.
type IssParameter struct {
	// Advertise publishes authorization_response_iss_parameter_supported:
	// true in discovery (read by connectors when they open).
	Advertise bool
	// Send adds iss to every authorization response: the issuer, or Value
	// when it is not empty.
	Send  bool
	Value string
}

// SetIssParameter sets how authorization responses carry iss (RFC 9207).
func (p *IdP) SetIssParameter(ip IssParameter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issParam = ip
}

// SetStrictOfflineAccess makes /authorize behave as OpenID Connect Core
// §11 allows a strict provider to: the offline_access scope is dropped (so
// no refresh token is issued) unless prompt contains consent. Off by
// default: offline_access is honoured whatever the prompt.
func (p *IdP) SetStrictOfflineAccess(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.strictOffline = on
}

// SetScopesSupported replaces the scopes_supported of discovery (read by
// connectors when they open); nil restores the default list, which has
// offline_access.
func (p *IdP) SetScopesSupported(scopes []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.scopes = scopes
}

// LastAuthorize returns the query of the last /authorize request (nil
// before the first), to check what a relying party sent.
func (p *IdP) LastAuthorize() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastAuthorize == nil {
		return nil
	}
	out := make(url.Values, len(p.lastAuthorize))
	for k, v := range p.lastAuthorize {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// grantedScope is the scope /authorize grants for request q; p.mu is held.
func (p *IdP) grantedScope(q url.Values) string {
	scope := q.Get("scope")
	if q.Get("access_type") == "offline" {
		scope += " offline_access"
	}
	if p.strictOffline && !hasScope(q.Get("prompt"), "consent") {
		var kept []string
		for s := range strings.FieldsSeq(scope) {
			if s != "offline_access" {
				kept = append(kept, s)
			}
		}
		scope = strings.Join(kept, " ")
	}
	return scope
}

// withIss adds iss to authorization response v as p.issParam says; p.mu
// is held.
func (p *IdP) withIss(v url.Values) url.Values {
	if p.issParam.Send {
		iss := p.issuer
		if p.issParam.Value != "" {
			iss = p.issParam.Value
		}
		v.Set("iss", iss)
	}
	return v
}
