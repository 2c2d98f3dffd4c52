// Package google is a connector for Google accounts (Google Workspace). It
// is the oidc connector with Google's rules: a hosted-domain allowlist
// checked on the signed hd claim (never on the email suffix), a verified
// email required, the subject bound to sub, and optional groups from the
// Admin SDK Directory API through a service account with domain-wide
// delegation (JWT-bearer grant).
package google

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2/google"
	"golang.org/x/oauth2/jwt"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/oidc"
	"github.com/fedbroker/fedbroker/problem"
)

// Defaults of the configuration.
const (
	DefaultIssuer       = "https://accounts.google.com"
	DefaultDirectoryURL = "https://admin.googleapis.com"
	DefaultTokenURL     = "https://oauth2.googleapis.com/token"
	// DirectoryScope is the scope the service account is granted.
	DirectoryScope = "https://www.googleapis.com/auth/admin.directory.group.readonly"
)

// CodeDomainNotAllowed is the UserError code for an account outside
// HostedDomains.
const CodeDomainNotAllowed = "domain_not_allowed"

// Config is the `config:` block of a connector of type "google".
type Config struct {
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// Issuer is Google's issuer; change it only for tests.
	Issuer string `yaml:"issuer"`
	// HostedDomains allows only accounts whose signed hd claim is one of
	// these Workspace domains. Empty allows every Google account, personal
	// ones included.
	HostedDomains []string `yaml:"hosted_domains"`
	// Scopes requested (default openid profile email).
	Scopes []string `yaml:"scopes"`
	// OfflineAccess asks for access_type=offline and keeps the refresh token
	// so that broker refreshes are checked at Google (default true).
	OfflineAccess *bool         `yaml:"offline_access"`
	Timeout       time.Duration `yaml:"timeout"`

	// ServiceAccountFile is a service account JSON key with domain-wide
	// delegation for DirectoryScope. When set, groups are fetched on every
	// sign-in and refresh into Identity.Sources["groups"] (group emails).
	ServiceAccountFile string `yaml:"service_account_file"`
	// AdminEmail is the Workspace admin the service account acts as.
	AdminEmail string `yaml:"admin_email"`
	// DirectoryURL is the Admin SDK base URL (default
	// https://admin.googleapis.com); TokenURL overrides the key file's
	// token_uri. Change them only for tests.
	DirectoryURL string `yaml:"directory_url"`
	TokenURL     string `yaml:"token_url"`
}

// Open returns an *oidc.Connector, whose package checks its capabilities.
var _ connectors.Config = (*Config)(nil)

// Validate returns every problem in c, each with its path relative to the
// connector's config block. It reads ServiceAccountFile.
func (c *Config) Validate() []problem.Problem {
	base := c.oidcConfig()
	if base.Issuer == "" {
		base.Issuer = DefaultIssuer
	}
	errs := base.Validate()
	for i, e := range errs {
		if e.Path == "client_secret" {
			// Google's web clients have no other credential; the generic
			// message would name client_auth, which this type has not.
			errs[i].Message = "is required (Google web clients authenticate with their secret)"
		}
	}
	add := func(path, format string, args ...any) {
		errs = append(errs, problem.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	for i, d := range c.HostedDomains {
		if d == "" || d != strings.ToLower(d) || strings.ContainsAny(d, "@/ ") || !strings.Contains(d, ".") {
			add(fmt.Sprintf("hosted_domains[%d]", i), "must be a lowercase domain name such as example.com, not %q", d)
		}
	}
	if c.ServiceAccountFile != "" {
		if _, err := readServiceAccount(c.ServiceAccountFile); err != nil {
			add("service_account_file", "%v", err)
		}
		if c.AdminEmail == "" || !strings.Contains(c.AdminEmail, "@") {
			add("admin_email", "is required with service_account_file (a Workspace admin's email)")
		}
	} else if c.AdminEmail != "" {
		add("service_account_file", "is required with admin_email")
	}
	for path, u := range map[string]string{"directory_url": c.DirectoryURL, "token_url": c.TokenURL} {
		if u == "" {
			continue
		}
		if pu, err := url.Parse(u); err != nil || !pu.IsAbs() || pu.Host == "" {
			add(path, "must be an absolute URL")
		}
	}
	slices.SortStableFunc(errs, func(a, b problem.Problem) int { return strings.Compare(a.Path, b.Path) })
	return errs
}

func (c *Config) oidcConfig() oidc.Config {
	return oidc.Config{
		Issuer:        c.Issuer,
		ClientID:      c.ClientID,
		ClientSecret:  c.ClientSecret,
		Scopes:        c.Scopes,
		OfflineAccess: c.OfflineAccess,
		Timeout:       c.Timeout,
	}
}

// Open discovers Google with opts.HTTPClient and returns a *oidc.Connector
// with Google's checks. It reads ServiceAccountFile.
func (c *Config) Open(ctx context.Context, id string, opts connectors.Options) (connectors.Connector, error) {
	base := c.oidcConfig()
	if base.Issuer == "" {
		base.Issuer = DefaultIssuer
	}
	ext := oidc.Extension{NoOfflineScope: true, AuthParams: url.Values{}, CheckClaims: c.checkClaims}
	if c.OfflineAccess == nil || *c.OfflineAccess {
		ext.AuthParams.Set("access_type", "offline")
		ext.AuthParams.Set("prompt", "consent")
	}
	if len(c.HostedDomains) == 1 {
		ext.AuthParams.Set("hd", c.HostedDomains[0]) // a hint for the account chooser only
	}
	var dir *directory
	if c.ServiceAccountFile != "" {
		sa, err := readServiceAccount(c.ServiceAccountFile)
		if err != nil {
			return nil, fmt.Errorf("google: %w", err)
		}
		dir = &directory{sa: sa, admin: c.AdminEmail, baseURL: c.DirectoryURL, tokenURL: c.TokenURL}
		ext.Enrich = dir.enrich
	}
	conn, err := oidc.Open(ctx, id, base, opts, ext)
	if err != nil {
		return nil, fmt.Errorf("google: %w", err)
	}
	if dir != nil {
		dir.init(conn.HTTPClient())
	}
	return conn, nil
}

// checkClaims requires a verified email and, with HostedDomains, an hd
// claim from the list. The email suffix is never consulted: a personal
// account may carry any address.
func (c *Config) checkClaims(_ context.Context, claims map[string]any) error {
	if v, _ := claims["email_verified"].(bool); !v {
		return oidc.UserError(oidc.CodeEmailNotVerified, "Your Google account's email address is not verified.", fmt.Errorf("google: email_verified is %v", claims["email_verified"]))
	}
	if len(c.HostedDomains) == 0 {
		return nil
	}
	hd, _ := claims["hd"].(string)
	if hd == "" || !slices.Contains(c.HostedDomains, hd) {
		return oidc.UserError(CodeDomainNotAllowed, "This Google account does not belong to an allowed organization.", fmt.Errorf("google: hd %q not in %v: %w", hd, c.HostedDomains, connectors.ErrRefused))
	}
	return nil
}

// readServiceAccount reads a service account JSON key with
// golang.org/x/oauth2/google: the JWT-bearer configuration for
// DirectoryScope (its token_uri, or Google's token endpoint), without a
// subject yet.
func readServiceAccount(path string) (*jwt.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read service account key: %w", err)
	}
	cfg, err := google.JWTConfigFromJSON(b, DirectoryScope)
	if err != nil {
		return nil, fmt.Errorf("parse service account key: %w", err)
	}
	if cfg.Email == "" || len(cfg.PrivateKey) == 0 {
		return nil, fmt.Errorf("service account key needs type service_account, client_email and private_key")
	}
	return cfg, nil
}
