// Package ldap is the LDAP and Active Directory password connector: the
// broker renders its login form, and the connector checks the username and
// password by binding to the directory, either directly with a DN built
// from a template or after a search with a service account. Attributes of
// the user's entry, and the groups found by memberOf or a group search,
// become the claims the mapping sees.
//
// Each login opens its own connection (dial, StartTLS if configured, the
// binds and searches, close): there is no pool, so a directory restart or a
// changed certificate never leaves broken connections behind. Every network
// step is bounded by the configured timeout.
//
// The connector does no rate limiting of its own; the broker limits failed
// attempts before calling Login, as for the local connector.
package ldap

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/problem"
)

// TLS modes.
const (
	TLSLDAPS    = "ldaps"
	TLSStartTLS = "starttls"
	TLSNone     = "none"
)

// Search scopes.
const (
	ScopeSub  = "sub"
	ScopeOne  = "one"
	ScopeBase = "base"
)

const (
	defaultTimeout = 5 * time.Second
	// defaultPoolSize and defaultPoolIdleTimeout are the pool's defaults:
	// a few connections, closed before directories and middleboxes
	// usually drop idle ones (Active Directory after 15 minutes).
	defaultPoolSize        = 4
	maxPoolSize            = 256
	defaultPoolIdleTimeout = time.Minute
	maxPoolIdleTimeout     = time.Hour
	minTimeout             = 100 * time.Millisecond
	maxTimeout             = 2 * time.Minute
)

// Config is the `config:` block of a connector with `type: ldap`.
type Config struct {
	// Host is host:port of the directory (636 for LDAPS, 389 otherwise).
	Host string `yaml:"host"`
	// TLS is ldaps, starttls or none; none needs InsecureNoTLS unless the
	// host is a loopback address.
	TLS           string `yaml:"tls"`
	RootCA        string `yaml:"root_ca"` // PEM file; default: the system roots
	InsecureNoTLS bool   `yaml:"insecure_no_tls"`
	// ServerName overrides the name the certificate is checked against
	// (default: the host part of Host).
	ServerName string `yaml:"server_name"`

	// BindDN and BindPassword are the service account of search-then-bind.
	BindDN       string `yaml:"bind_dn"`
	BindPassword string `yaml:"bind_password"`
	// UserDNTemplate is the direct-bind alternative:
	// "uid={username},ou=people,dc=acme,dc=com".
	UserDNTemplate string `yaml:"user_dn_template"`

	UserSearch  UserSearch   `yaml:"user_search"`
	GroupSearch *GroupSearch `yaml:"group_search"`
	// MemberOfAttr names the attribute of the user entry that lists its
	// groups' DNs (memberOf); the group name is the first RDN's value.
	MemberOfAttr string `yaml:"memberof_attr"`

	IDAttr                string   `yaml:"id_attr"`
	IDEncoding            string   `yaml:"id_encoding"` // string (default), base64, hex
	EmailAttr             string   `yaml:"email_attr"`
	EmailVerified         *bool    `yaml:"email_verified"` // default true
	NameAttr              string   `yaml:"name_attr"`
	PreferredUsernameAttr string   `yaml:"preferred_username_attr"`
	ExtraAttrs            []string `yaml:"extra_attrs"`

	// Timeout bounds the dial and each LDAP operation; default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is how many connections bound as bind_dn are kept open
	// between sign-ins (with bind_dn only); default 4, 0 keeps none.
	PoolSize *int `yaml:"pool_size"`
	// PoolIdleTimeout closes a kept connection unused for this long;
	// default 1m.
	PoolIdleTimeout time.Duration `yaml:"pool_idle_timeout"`
	// Prompt labels the username field; default "Username".
	Prompt string `yaml:"prompt"`
}

// UserSearch finds the user's entry: (&FILTER(USERNAME_ATTR=username)).
type UserSearch struct {
	BaseDN       string `yaml:"base_dn"`
	Filter       string `yaml:"filter"`
	UsernameAttr string `yaml:"username_attr"`
	Scope        string `yaml:"scope"` // sub (default), one, base
}

// GroupSearch finds the user's groups: (&FILTER(GROUP_ATTR=<user value>)),
// where user_matcher is GROUP_ATTR=USER_ATTR and the user value is the
// user's DN (member=dn, the default) or one of its attributes
// (memberUid=uid). With nested, the filter is Active Directory's
// LDAP_MATCHING_RULE_IN_CHAIN on the DN instead.
type GroupSearch struct {
	BaseDN      string `yaml:"base_dn"`
	Filter      string `yaml:"filter"`
	Scope       string `yaml:"scope"`
	UserMatcher string `yaml:"user_matcher"` // default member=dn
	NameAttr    string `yaml:"name_attr"`    // default cn
	// Nested asks Active Directory for groups reached through other
	// groups too (member:1.2.840.113556.1.4.1941:=DN); AD only.
	Nested bool `yaml:"nested"`
}

// matcher splits user_matcher into the group's and the user's attribute.
func (g *GroupSearch) matcher() (groupAttr, userAttr string, ok bool) {
	m := g.UserMatcher
	if m == "" {
		m = "member=dn"
	}
	groupAttr, userAttr, ok = strings.Cut(m, "=")
	return groupAttr, userAttr, ok && validAttr(groupAttr) && validAttr(userAttr)
}

func (g *GroupSearch) nameAttr() string {
	if g.NameAttr == "" {
		return "cn"
	}
	return g.NameAttr
}

var (
	_ connectors.Config            = (*Config)(nil)
	_ connectors.PasswordConnector = (*Connector)(nil)
)

// Validate reports every problem with its path in the `config:` block.
func (c *Config) Validate() []problem.Problem {
	var errs []problem.Problem
	add := func(path, format string, args ...any) {
		errs = append(errs, problem.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	host, _, err := net.SplitHostPort(c.Host)
	switch {
	case c.Host == "":
		add("host", "required (host:port, e.g. ldap.acme.com:636)")
	case err != nil || host == "":
		add("host", "must be host:port, not %q", c.Host)
	}
	switch c.TLS {
	case TLSLDAPS, TLSStartTLS:
		if c.InsecureNoTLS {
			add("insecure_no_tls", "only with tls: none")
		}
	case TLSNone:
		if c.RootCA != "" {
			add("root_ca", "not used with tls: none")
		}
		if !c.InsecureNoTLS && err == nil && host != "" && !connectors.IsLoopback(host) {
			add("tls", "none sends passwords in clear text: only for a loopback host, or set insecure_no_tls: true")
		}
	case "":
		add("tls", "required: ldaps, starttls or none")
	default:
		add("tls", "must be ldaps, starttls or none, not %q", c.TLS)
	}
	if c.RootCA != "" {
		if _, err := loadRootCA(c.RootCA); err != nil {
			add("root_ca", "%v", err)
		}
	}
	switch {
	case c.BindDN != "" && c.UserDNTemplate != "":
		add("user_dn_template", "set either bind_dn (search, then bind) or user_dn_template (direct bind), not both")
	case c.BindDN == "" && c.UserDNTemplate == "":
		add("bind_dn", "required: bind_dn and bind_password (search, then bind) or user_dn_template (direct bind)")
	case c.BindDN != "":
		if _, err := goldap.ParseDN(c.BindDN); err != nil {
			add("bind_dn", "not a DN: %v", err)
		}
		if c.BindPassword == "" {
			add("bind_password", "required with bind_dn (use ${VAR} to read it from the environment)")
		}
		if c.UserSearch.BaseDN == "" {
			add("user_search.base_dn", "required with bind_dn")
		}
	default:
		if strings.Count(c.UserDNTemplate, "{username}") != 1 {
			add("user_dn_template", "must contain {username} once")
		}
		if c.BindPassword != "" {
			add("bind_password", "only with bind_dn")
		}
		if c.UserSearch.BaseDN == "" {
			if _, err := goldap.ParseDN(strings.Replace(c.UserDNTemplate, "{username}", "x", 1)); err != nil {
				add("user_dn_template", "not a DN (a bind name such as {username}@acme.com needs user_search to find the entry): %v", err)
			}
		}
	}
	validSearch(add, "user_search", c.UserSearch.BaseDN, c.UserSearch.Filter, c.UserSearch.Scope)
	if c.UserSearch.BaseDN != "" && c.UserSearch.UsernameAttr == "" {
		add("user_search.username_attr", "required (uid, sAMAccountName, userPrincipalName, ...)")
	}
	if c.UserSearch.BaseDN == "" && c.BindDN == "" && (c.UserSearch.Filter != "" || c.UserSearch.UsernameAttr != "" || c.UserSearch.Scope != "") {
		add("user_search.base_dn", "required when user_search is set")
	}
	if g := c.GroupSearch; g != nil {
		if g.BaseDN == "" {
			add("group_search.base_dn", "required")
		}
		validSearch(add, "group_search", g.BaseDN, g.Filter, g.Scope)
		_, userAttr, ok := g.matcher()
		if !ok {
			add("group_search.user_matcher", "must be GROUP_ATTR=USER_ATTR (member=dn, uniqueMember=dn, memberUid=uid), not %q", g.UserMatcher)
		} else if g.Nested && !strings.EqualFold(userAttr, "dn") {
			add("group_search.nested", "needs a user_matcher on the DN (member=dn)")
		}
		if !validAttr(g.nameAttr()) {
			add("group_search.name_attr", "not an attribute name: %q", g.NameAttr)
		}
	}
	switch c.IDEncoding {
	case "", "string":
		if strings.EqualFold(c.IDAttr, "objectGUID") || strings.EqualFold(c.IDAttr, "objectSid") {
			add("id_encoding", "%s is binary: set base64 or hex", c.IDAttr)
		}
	case "base64", "hex":
	default:
		add("id_encoding", "must be string, base64 or hex, not %q", c.IDEncoding)
	}
	for _, f := range []struct{ path, attr string }{
		{"user_search.username_attr", c.UserSearch.UsernameAttr},
		{"id_attr", c.IDAttr}, {"email_attr", c.EmailAttr}, {"name_attr", c.NameAttr},
		{"preferred_username_attr", c.PreferredUsernameAttr}, {"memberof_attr", c.MemberOfAttr},
	} {
		if f.attr != "" && !validAttr(f.attr) {
			add(f.path, "not an attribute name: %q", f.attr)
		}
	}
	for i, a := range c.ExtraAttrs {
		if !validAttr(a) {
			add(fmt.Sprintf("extra_attrs[%d]", i), "not an attribute name: %q", a)
		}
	}
	if c.Timeout != 0 && (c.Timeout < minTimeout || c.Timeout > maxTimeout) {
		add("timeout", "must be between %s and %s", minTimeout, maxTimeout)
	}
	if c.PoolSize != nil && (*c.PoolSize < 0 || *c.PoolSize > maxPoolSize) {
		add("pool_size", "must be between 0 and %d", maxPoolSize)
	}
	if c.PoolIdleTimeout != 0 && (c.PoolIdleTimeout < time.Second || c.PoolIdleTimeout > maxPoolIdleTimeout) {
		add("pool_idle_timeout", "must be between 1s and %s", maxPoolIdleTimeout)
	}
	return errs
}

func validSearch(add func(string, string, ...any), path, base, filter, scope string) {
	if base != "" {
		if _, err := goldap.ParseDN(base); err != nil {
			add(path+".base_dn", "not a DN: %v", err)
		}
	}
	if filter != "" {
		if _, err := goldap.CompileFilter(filter); err != nil {
			add(path+".filter", "not an LDAP filter (it needs parentheses, e.g. (objectClass=person)): %v", err)
		}
	}
	if _, ok := scopes[scope]; !ok {
		add(path+".scope", "must be sub, one or base, not %q", scope)
	}
}

var scopes = map[string]int{"": goldap.ScopeWholeSubtree, ScopeSub: goldap.ScopeWholeSubtree, ScopeOne: goldap.ScopeSingleLevel, ScopeBase: goldap.ScopeBaseObject}

// validAttr accepts an attribute description: a name or OID, with options.
func validAttr(a string) bool {
	if a == "" || strings.EqualFold(a, "dn") {
		return a != ""
	}
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == ';') {
			return false
		}
	}
	return true
}

func loadRootCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
