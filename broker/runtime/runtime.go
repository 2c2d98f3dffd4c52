// Package runtime is one configuration compiled for serving: the clients
// with their policy resolved, the connectors opened with their mappings,
// the trusted workload issuers, and the identity-link groups. A Runtime is
// immutable once built; the broker swaps a new one in atomically on reload,
// and every request works on the one it loaded first.
package runtime

import (
	"context"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/workload"
	"github.com/fedbroker/fedbroker/mapping"
)

// Runtime is one compiled configuration.
type Runtime struct {
	// Tokens are the configured lifetimes.
	Tokens config.Tokens

	clients    map[string]*Client
	connectors map[string]*Connector
	order      []string // connector ids in config order
	workloads  map[string]*Workload
	// linkGroups maps a connector id to the indexes of the links groups it
	// belongs to; absent when the connector links with nothing.
	linkGroups map[string][]int
}

// Client returns the client registered as id.
func (rt *Runtime) Client(id string) (*Client, bool) {
	cl, ok := rt.clients[id]
	return cl, ok
}

// Connector returns the connector configured as id.
func (rt *Runtime) Connector(id string) (*Connector, bool) {
	c, ok := rt.connectors[id]
	return c, ok
}

// Connectors lists every connector in config order.
func (rt *Runtime) Connectors() []*Connector {
	out := make([]*Connector, len(rt.order))
	for i, id := range rt.order {
		out[i] = rt.connectors[id]
	}
	return out
}

// ConnectorsFor lists, in config order, the connectors cl may use.
func (rt *Runtime) ConnectorsFor(cl *Client) []*Connector {
	var out []*Connector
	for _, id := range rt.order {
		if cl.AllowsConnector(id) {
			out = append(out, rt.connectors[id])
		}
	}
	return out
}

// Workload returns the trusted workload issuer configured as id.
func (rt *Runtime) Workload(id string) (*Workload, bool) {
	w, ok := rt.workloads[id]
	return w, ok
}

// RouteByHint picks the connector whose domain matches the login_hint's
// email domain, among those cl may use; nil when none does.
func (rt *Runtime) RouteByHint(cl *Client, hint string) *Connector {
	at := strings.LastIndexByte(hint, '@')
	if at < 0 {
		return nil
	}
	domain := strings.ToLower(hint[at+1:])
	for _, c := range rt.ConnectorsFor(cl) {
		if slices.Contains(c.Domains, domain) {
			return c
		}
	}
	return nil
}

// Links reports whether identities from connector id take part in
// identity linking at all.
func (rt *Runtime) Links(id string) bool { return len(rt.linkGroups[id]) > 0 }

// Linkable reports whether identities from connectors a and b may share one
// subject through a link key.
func (rt *Runtime) Linkable(a, b string) bool {
	for _, ga := range rt.linkGroups[a] {
		if slices.Contains(rt.linkGroups[b], ga) {
			return true
		}
	}
	return false
}

// Close releases what the opened connectors hold. A runtime swapped out by
// a reload is closed once it is no longer served.
func (rt *Runtime) Close() {
	for _, c := range rt.connectors {
		if cl, ok := c.opened().(io.Closer); ok {
			_ = cl.Close()
		}
	}
}

// Workload is one trusted workload issuer with its mapping.
type Workload struct {
	ID string
	// Issuer is the exact `iss` of the tokens it vouches for.
	Issuer  string
	Mapping *mapping.Mapping

	verifier *workload.Verifier
	lazy     *opener[*workload.Verifier]
}

// Open returns the issuer's token verifier, opening it now when the
// issuer's discovery could not be reached at load time (retried as for
// connectors; until then the error wraps connectors.ErrUnavailable).
func (w *Workload) Open(ctx context.Context) (*workload.Verifier, error) {
	if w.lazy != nil {
		return w.lazy.get(ctx)
	}
	return w.verifier, nil
}

// Client is one downstream application with its policy resolved.
type Client struct {
	config.Client
	// Alg is the ID and access token signing algorithm, resolved when the
	// configuration is compiled, never per token.
	Alg string
	// IDTokenTTL and AccessTokenTTL are the client's lifetimes, defaults
	// applied.
	IDTokenTTL, AccessTokenTTL time.Duration
	// Keys verifies the client's assertions (private_key_jwt clients only).
	Keys oidc.KeySet

	redirects  map[string]bool
	logouts    map[string]bool
	grants     map[string]bool
	scopes     map[string]bool
	connectors map[string]bool // empty: all
}

// AllowsConnector reports whether the client may sign people in through
// connector id.
func (c *Client) AllowsConnector(id string) bool {
	return len(c.connectors) == 0 || c.connectors[id]
}

// AllowsGrant reports whether the client may use grant type g.
func (c *Client) AllowsGrant(g string) bool { return c.grants[g] }

// AllowsScope reports whether the client may ask for scope s.
func (c *Client) AllowsScope(s string) bool { return c.scopes[s] }

// AllowsLogoutRedirect reports whether uri is a registered
// post_logout_redirect_uri of the client (exact match).
func (c *Client) AllowsLogoutRedirect(uri string) bool { return c.logouts[uri] }

// MatchRedirect reports whether uri is registered for the client. The match
// is exact, except that for a public client a registered loopback http
// redirect (127.0.0.1, [::1], localhost) matches any port (RFC 8252 §7.3:
// a native app listens on whatever port it gets). A confidential client's
// loopback redirect matches exactly, port included. A uri whose port is
// not a TCP port (empty, 0, above 65535) never matches.
func (c *Client) MatchRedirect(uri string) bool {
	u, err := url.Parse(uri)
	if err != nil || !config.ValidURLPort(u) {
		return false
	}
	if c.redirects[uri] {
		return true
	}
	if !c.Public || u.Scheme != "http" || !config.IsLoopback(u.Hostname()) || u.User != nil || u.Fragment != "" || u.RawFragment != "" || strings.Contains(uri, "#") {
		return false
	}
	for r := range c.redirects {
		ru, err := url.Parse(r)
		if err != nil || ru.Scheme != "http" || !config.IsLoopback(ru.Hostname()) {
			continue
		}
		if ru.Hostname() == u.Hostname() && ru.EscapedPath() == u.EscapedPath() && ru.RawQuery == u.RawQuery {
			return true
		}
	}
	return false
}

// Connector is one upstream connector with its compiled mapping.
type Connector struct {
	ID, Type, Name string
	Mapping        *mapping.Mapping
	// Domains are the email domains routed to it by login_hint, lower case.
	Domains []string
	// UpstreamLogout is upstream_logout: a sign-out at the broker ends
	// the upstream session too, where the connector can.
	UpstreamLogout bool

	impl connectors.Connector          // opened at compile time
	lazy *opener[connectors.Connector] // when the upstream was unreachable then
}

// Open returns the opened connector. A connector whose upstream could not
// be reached when the configuration was loaded is opened now, retried at
// most every RetryUnreachable while the upstream stays away; until then
// the error wraps connectors.ErrUnavailable. Every connector type is
// handled this way.
func (c *Connector) Open(ctx context.Context) (connectors.Connector, error) {
	if c.lazy != nil {
		return c.lazy.get(ctx)
	}
	return c.impl, nil
}

// opened returns the connector if it is open, without trying to open it.
func (c *Connector) opened() connectors.Connector {
	if c.lazy != nil {
		impl, _ := c.lazy.opened()
		return impl
	}
	return c.impl
}

// AMR is the authentication method reference of a sign-in through impl
// (RFC 8176): "pwd" for a password checked here, "fed" for a federated
// sign-in.
func AMR(impl connectors.Connector) []string {
	if _, ok := impl.(connectors.PasswordConnector); ok {
		return []string{"pwd"}
	}
	return []string{"fed"}
}

// CallbackURL is where the upstream of connector id sends the browser
// back to.
func CallbackURL(issuer, id string) string {
	return strings.TrimSuffix(issuer, "/") + "/callback/" + url.PathEscape(id)
}

// Link outcomes of LinkedSubject.
const (
	LinkSame     = "same"     // the link gives the mapped subject
	LinkOwn      = "own"      // this identity made the link
	LinkOther    = "other"    // a linkable connector's identity made it
	LinkConflict = "conflict" // held by an identity this one may not share a subject with
)

// LinkedSubject decides, for an identity of connector connID with upstream
// subject upstreamSub whose mapping gave subject mapped, what the stored
// link of its link key means: the subject to issue and which case it is
// (Link* constants; "" subject for LinkConflict). The sign-in
// (authflow) and the workbench's dry run decide through it.
func (rt *Runtime) LinkedSubject(connID, upstreamSub, mapped string, link storage.Link) (subject, outcome string) {
	switch {
	case link.Subject == mapped:
		return mapped, LinkSame
	case link.ConnectorID == connID && link.UpstreamSubject == upstreamSub:
		return link.Subject, LinkOwn
	case link.ConnectorID != connID && rt.Linkable(link.ConnectorID, connID):
		return link.Subject, LinkOther
	}
	return "", LinkConflict
}
