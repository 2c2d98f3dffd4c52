package saml

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/problem"
)

// maxIDPInitiatedScopes bounds idp_initiated.scopes, as /authorize bounds
// a client's scope parameter.
const maxIDPInitiatedScopes = 32

// IDPInitiated is where a sign-in the IdP started goes: an unsolicited
// response (no InResponseTo) has no pending auth request, so the broker
// finishes it as if ClientID had asked for Scopes at RedirectURI. The
// broker checks, at each such sign-in, that the client exists, may use
// this connector, has RedirectURI registered, may use the authorization
// code flow and the scopes, and is confidential (a public client's code
// without PKCE could be redeemed by whoever intercepts it).
type IDPInitiated struct {
	ClientID    string   `yaml:"client_id"`
	RedirectURI string   `yaml:"redirect_uri"`
	Scopes      []string `yaml:"scopes"` // default [openid]; must hold openid
}

// validate returns the problems of d under path.
func (d *IDPInitiated) validate(path string) []problem.Problem {
	var errs []problem.Problem
	add := func(sub, format string, args ...any) {
		errs = append(errs, problem.Problem{Path: path + "." + sub, Message: fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(d.ClientID) == "" {
		add("client_id", "is required: the client an IdP-initiated sign-in signs the person in to")
	}
	switch u, err := url.Parse(d.RedirectURI); {
	case d.RedirectURI == "":
		add("redirect_uri", "is required: one of the client's registered redirect_uris")
	case err != nil || !u.IsAbs() || u.Host == "":
		add("redirect_uri", "must be an absolute URL, one of the client's registered redirect_uris")
	case u.Fragment != "":
		add("redirect_uri", "must not have a fragment")
	case u.Scheme != "https" && !(u.Scheme == "http" && connectors.IsLoopback(u.Hostname())):
		add("redirect_uri", "must use https (http only to a loopback host)")
	}
	if len(d.Scopes) > maxIDPInitiatedScopes {
		add("scopes", "has %d values, at most %d", len(d.Scopes), maxIDPInitiatedScopes)
	}
	for i, s := range d.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			add(fmt.Sprintf("scopes[%d]", i), "%q is not a scope", s)
		}
	}
	if len(d.Scopes) > 0 && !slices.Contains(d.Scopes, "openid") {
		add("scopes", "must include openid")
	}
	return errs
}

// UnsolicitedTarget tells the broker where an IdP-initiated sign-in goes:
// the client, redirect URI and scopes of idp_initiated. ok is false when
// idp_initiated is not configured; HandlePOST then refuses every
// unsolicited response. The broker calls HandlePOST with empty connState
// for a response that names no pending auth request, then finishes the
// sign-in for this target.
func (c *Connector) UnsolicitedTarget() (clientID, redirectURI string, scopes []string, ok bool) {
	d := c.cfg.IDPInitiated
	if d == nil {
		return "", "", nil, false
	}
	scopes = slices.Clone(d.Scopes)
	if len(scopes) == 0 {
		scopes = []string{"openid"}
	}
	return d.ClientID, d.RedirectURI, scopes, true
}
