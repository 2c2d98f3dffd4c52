// Package azuread is a connector for Microsoft Entra ID (Azure AD) on the
// v2.0 endpoints. It is the oidc connector with Entra's rules: one tenant,
// or the multi-tenant endpoints (organizations, common) with a tenant
// allowlist and iss required to equal {login}/{tid}/v2.0; a stable subject
// from (tid, oid), never email or upn; app roles left in the claims; and
// groups, including the overage case, read from Microsoft Graph into
// Identity.Sources["groups"].
//
// Entra's email claim is not verified by Microsoft (it is an editable user
// attribute): mappings must not link accounts on it.
package azuread

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/oidc"
	"github.com/fedbroker/fedbroker/problem"
)

// Defaults of the configuration.
const (
	DefaultLoginURL = "https://login.microsoftonline.com"
	DefaultGraphURL = "https://graph.microsoft.com"
	// GraphGroupsScope is added to the default scopes when groups are on:
	// the delegated permission transitiveMemberOf needs.
	GraphGroupsScope = "https://graph.microsoft.com/GroupMember.Read.All"
)

// Values of Config.Tenant besides a tenant id.
const (
	TenantOrganizations = "organizations"
	TenantCommon        = "common"
)

// Values of Config.Groups.
const (
	GroupsOff   = ""
	GroupsIDs   = "ids"
	GroupsNames = "names"
)

// UserError codes specific to this connector.
const (
	CodeTenantNotAllowed = "tenant_not_allowed"
	CodeGroupsFailed     = "groups_unavailable"
)

var guid = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Config is the `config:` block of a connector of type "azuread".
type Config struct {
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// ClientAuth is how the connector authenticates at Entra:
	// client_secret (default) or certificate (see clientauth.go).
	ClientAuth ClientAuth `yaml:"client_auth"`
	// Tenant is a tenant id (lowercase GUID) for a single-tenant app, or
	// "organizations" / "common" for a multi-tenant one.
	Tenant string `yaml:"tenant"`
	// AllowedTenants lists the tenant ids accepted on the multi-tenant
	// endpoints. Required with organizations or common.
	AllowedTenants []string `yaml:"allowed_tenants"`
	// Groups reads the user's groups into Identity.Sources["groups"]:
	// "ids" (object ids) or "names" (display names); "" leaves them out.
	// Groups come from the ID token's groups claim when it is complete and
	// ids are wanted, otherwise from Graph transitiveMemberOf.
	Groups string `yaml:"groups"`
	// Scopes requested (default openid profile email, plus
	// GraphGroupsScope when groups are on).
	Scopes        []string      `yaml:"scopes"`
	OfflineAccess *bool         `yaml:"offline_access"` // default true
	Timeout       time.Duration `yaml:"timeout"`        // every upstream call, Graph paging included; default 10s
	// LoginURL and GraphURL are the Entra login and Microsoft Graph base
	// URLs; change them only for national clouds or tests.
	LoginURL string `yaml:"login_url"`
	GraphURL string `yaml:"graph_url"`
}

// Open returns an *oidc.Connector, whose package checks its capabilities.
var _ connectors.Config = (*Config)(nil)

// Validate returns every problem in c, each with its path relative to the
// connector's config block.
func (c *Config) Validate() []problem.Problem {
	base := c.oidcConfig()
	errs := c.validateClientAuth(base.Validate())
	add := func(path, format string, args ...any) {
		errs = append(errs, problem.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	multi := c.Tenant == TenantOrganizations || c.Tenant == TenantCommon
	switch {
	case c.Tenant == "":
		add("tenant", "is required: a tenant id, organizations or common")
	case !multi && !guid.MatchString(c.Tenant):
		add("tenant", "must be a lowercase tenant id (GUID), organizations or common, not %q", c.Tenant)
	}
	if multi && len(c.AllowedTenants) == 0 {
		add("allowed_tenants", "is required with tenant %s (any Entra tenant could sign in otherwise)", c.Tenant)
	}
	if !multi && len(c.AllowedTenants) > 0 {
		add("allowed_tenants", "is only for tenant organizations or common")
	}
	for i, t := range c.AllowedTenants {
		if !guid.MatchString(t) {
			add(fmt.Sprintf("allowed_tenants[%d]", i), "must be a lowercase tenant id (GUID), not %q", t)
		}
	}
	switch c.Groups {
	case GroupsOff, GroupsIDs, GroupsNames:
	default:
		add("groups", "must be ids or names, not %q", c.Groups)
	}
	for path, u := range map[string]string{"login_url": c.LoginURL, "graph_url": c.GraphURL} {
		if u == "" {
			continue
		}
		if pu, err := url.Parse(u); err != nil || !pu.IsAbs() || pu.Host == "" || pu.RawQuery != "" {
			add(path, "must be an absolute URL without a query")
		}
	}
	// An issuer problem is a login_url or tenant problem here.
	out := errs[:0]
	for _, e := range errs {
		if e.Path != "issuer" {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b problem.Problem) int { return strings.Compare(a.Path, b.Path) })
	return out
}

func (c *Config) loginURL() string {
	if c.LoginURL == "" {
		return DefaultLoginURL
	}
	return strings.TrimSuffix(c.LoginURL, "/")
}

func (c *Config) oidcConfig() oidc.Config {
	scopes := c.Scopes
	if len(scopes) == 0 {
		scopes = slices.Clone(oidc.DefaultScopes)
		if c.Groups != GroupsOff {
			scopes = append(scopes, GraphGroupsScope)
		}
	}
	return oidc.Config{
		Issuer:        c.loginURL() + "/" + c.Tenant + "/v2.0",
		ClientID:      c.ClientID,
		ClientSecret:  c.ClientSecret,
		ClientAuth:    c.ClientAuth.oidcClientAuth(),
		Scopes:        scopes,
		OfflineAccess: c.OfflineAccess,
		Timeout:       c.Timeout,
		// Entra does not vouch for the email claim; see the package doc.
		InsecureSkipEmailVerified: true,
	}
}

// Open discovers the tenant with opts.HTTPClient and returns a
// *oidc.Connector with Entra's checks.
func (c *Config) Open(ctx context.Context, id string, opts connectors.Options) (connectors.Connector, error) {
	// Entra issues refresh tokens for offline_access without prompt=consent,
	// which would show its consent page on every sign-in.
	ext := oidc.Extension{CheckClaims: c.checkClaims, Subject: subject, NoConsentPrompt: true}
	if c.Tenant == TenantOrganizations || c.Tenant == TenantCommon {
		ext.DiscoveryIssuer = c.loginURL() + "/{tenantid}/v2.0"
	}
	var g *graph
	if c.Groups != GroupsOff {
		g = &graph{baseURL: c.GraphURL, names: c.Groups == GroupsNames, timeout: c.Timeout}
		ext.Enrich = g.enrich
	}
	conn, err := oidc.Open(ctx, id, c.oidcConfig(), opts, ext)
	if err != nil {
		return nil, fmt.Errorf("azuread: %w", err)
	}
	if g != nil {
		g.init(conn.HTTPClient())
	}
	return conn, nil
}

// checkClaims enforces the tenant rules. With a single tenant go-oidc has
// already required iss to equal the configured issuer exactly; on the
// multi-tenant endpoints iss must name the token's own tid.
func (c *Config) checkClaims(_ context.Context, claims map[string]any) error {
	tid, _ := claims["tid"].(string)
	iss, _ := claims["iss"].(string)
	if tid == "" {
		return oidc.UserError(oidc.CodeInvalidToken, "Microsoft did not say which organization you belong to.", fmt.Errorf("azuread: no tid claim"))
	}
	switch c.Tenant {
	case TenantOrganizations, TenantCommon:
		if !slices.Contains(c.AllowedTenants, tid) {
			return oidc.UserError(CodeTenantNotAllowed, "Your organization's Microsoft accounts are not allowed to sign in here.", fmt.Errorf("azuread: tenant %q not allowed: %w", tid, connectors.ErrRefused))
		}
		if want := c.loginURL() + "/" + tid + "/v2.0"; iss != want {
			return oidc.UserError(oidc.CodeInvalidToken, "Microsoft's answer failed verification.", fmt.Errorf("azuread: iss %q, want %q for tid %q", iss, want, tid))
		}
	default:
		if tid != c.Tenant {
			return oidc.UserError(CodeTenantNotAllowed, "Your organization's Microsoft accounts are not allowed to sign in here.", fmt.Errorf("azuread: tid %q, want %q: %w", tid, c.Tenant, connectors.ErrRefused))
		}
	}
	return nil
}

// subject is "{tid}/{oid}": oid is the user's immutable object id in its
// tenant; email and upn can be changed by an admin and are never used.
func subject(claims map[string]any) (string, error) {
	tid, _ := claims["tid"].(string)
	oid, _ := claims["oid"].(string)
	if tid == "" || oid == "" {
		return "", oidc.UserError(oidc.CodeInvalidToken, "Microsoft did not identify your account (is the profile scope granted?).", fmt.Errorf("azuread: tid %q oid %q", tid, oid))
	}
	return tid + "/" + oid, nil
}

// tokenGroups returns the groups claim when it is complete: present and
// without the overage markers (_claim_names.groups, hasgroups).
func tokenGroups(claims map[string]any) ([]any, bool) {
	if names, ok := claims["_claim_names"].(map[string]any); ok {
		if _, over := names["groups"]; over {
			return nil, false
		}
	}
	if isTrue(claims["hasgroups"]) {
		return nil, false
	}
	gs, ok := claims["groups"].([]any)
	return gs, ok // absent: the app does not emit the claim, so ask Graph
}

func isTrue(v any) bool {
	b, ok := v.(bool)
	return ok && b || v == "true"
}
