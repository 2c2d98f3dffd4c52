package config

import (
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/jwa"
)

// Limits the lifetimes are checked against.
const (
	MaxTokenLifetime    = 24 * time.Hour
	MaxAuthCodeLifetime = 10 * time.Minute
)

// Grant types a client may be allowed.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// Client authentication methods (token_endpoint_auth_method). A client with
// a secret may use either secret method.
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
)

var (
	grantTypes    = []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantTokenExchange, GrantDeviceCode}
	connectorIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	domainLabelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	schemeRe      = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)
)

// Validate checks the whole configuration (defaults applied) and returns
// every problem found, each with its YAML path. It never stops at the
// first problem. It does not look inside the `config:` blocks of connectors
// and workload issuers, whose shape depends on their type: Connector.Decode
// and Workload.Decode check those, and the broker reports their problems
// when it compiles the configuration (as `fedbroker check` does).
func (c *Config) Validate() []Problem {
	var ps problems
	checks := []func(*Config, *problems){
		validateIssuer,
		validateHTTP,
		validateStorage,
		validateSigning,
		validateTokens,
		validateDPoP,
		validateConnectors,
		validateClients,
		validateProfiles,
		validateRedirectPorts,
		validateLinks,
		validateWorkloads,
		validateAdmin,
		validateDevice,
		validatePAR,
		validateLogout,
	}
	for _, check := range checks {
		check(c, &ps)
	}
	return ps
}

func validateIssuer(c *Config, ps *problems) {
	if c.Issuer == "" {
		ps.Add("issuer", "required (the broker's public URL, e.g. https://login.example.com)")
		return
	}
	u, err := url.Parse(c.Issuer)
	switch {
	case err != nil:
		ps.Add("issuer", "not a URL: %v", err)
	case u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.Opaque != "":
		ps.Add("issuer", "must be an absolute http(s) URL")
	case u.Scheme == "http" && !IsLoopback(u.Hostname()):
		ps.Add("issuer", "must use https (http is only allowed for localhost and loopback addresses)")
	case u.User != nil:
		ps.Add("issuer", "must not contain user information")
	case u.RawQuery != "" || u.ForceQuery:
		ps.Add("issuer", "must not have a query")
	case u.Fragment != "" || strings.Contains(c.Issuer, "#"):
		ps.Add("issuer", "must not have a fragment")
	case strings.HasSuffix(c.Issuer, "/"):
		ps.Add("issuer", "must not end with a slash")
	}
}

// IsLoopback reports whether host (no port, IPv6 without brackets) is
// localhost, an address in 127.0.0.0/8, or ::1.
func IsLoopback(host string) bool { return connectors.IsLoopback(host) }

// ValidURLPort reports whether u has no port or a TCP port: 1 to 65535 in
// decimal without leading zeros. An empty port ("http://127.0.0.1:/cb")
// is refused. Redirect URIs are checked with it when they are registered
// and when a client presents one.
func ValidURLPort(u *url.URL) bool {
	if strings.HasSuffix(u.Host, ":") {
		return false
	}
	p := u.Port()
	if p == "" {
		return true
	}
	if p[0] == '0' {
		return false
	}
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && n >= 1
}

// validateRedirectPorts refuses a registered redirect or post-logout
// redirect URI whose port is not a TCP port, unless the URI already has a
// problem (validateClients runs first).
func validateRedirectPorts(c *Config, ps *problems) {
	for i, cl := range c.Clients {
		p := index("clients", i)
		for _, l := range []struct {
			key  string
			uris []string
		}{{"redirect_uris", cl.RedirectURIs}, {"post_logout_redirect_uris", cl.PostLogoutRedirectURIs}} {
			for j, raw := range l.uris {
				path := index(p+"."+l.key, j)
				if ps.Covers(path) {
					continue
				}
				u, err := url.Parse(raw)
				switch {
				case err != nil || ValidURLPort(u):
				case strings.HasSuffix(u.Host, ":"):
					ps.Add(path, "empty port: remove the colon or give a port from 1 to 65535")
				default:
					ps.Add(path, "port must be a number from 1 to 65535 without leading zeros, not %q", u.Port())
				}
			}
		}
	}
}

// Notes returns what is worth knowing about a valid configuration because
// it may not behave as its author expects, each at its YAML path. Notes are
// not problems: the configuration serves as written. They are for
// `fedbroker check` to print beside its summary.
//
// A confidential client's loopback http redirect is matched exactly, port
// included: only a public client (a native app, RFC 8252 §7.3) may present
// its registered loopback redirect with any port.
func (c *Config) Notes() []Problem {
	var ns problems
	for i, cl := range c.Clients {
		if cl.Public {
			continue
		}
		for j, raw := range cl.RedirectURIs {
			if u, err := url.Parse(raw); err == nil && u.Scheme == "http" && IsLoopback(u.Hostname()) {
				ns.Add(index(index("clients", i)+".redirect_uris", j), "a confidential client's loopback redirect must match exactly, port included; only public (native) clients may use any port on loopback (RFC 8252 §7.3)")
			}
		}
	}
	return ns
}

func validateHTTP(c *Config, ps *problems) {
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		ps.Add("http.addr", "want host:port: %v", err)
	}
	if t := c.HTTP.TLS; t != nil {
		if t.CertFile == "" {
			ps.Add("http.tls.cert_file", "required when http.tls is set")
		}
		if t.KeyFile == "" {
			ps.Add("http.tls.key_file", "required when http.tls is set")
		}
	}
	for i, p := range c.HTTP.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				ps.Add(index("http.trusted_proxies", i), "not an IP address or CIDR prefix: %q", p)
			}
		}
	}
	if d := c.HTTP.HSTSMaxAge; d != nil {
		switch {
		case *d < 0:
			ps.Add("http.hsts_max_age", "must not be negative, not %s (0s turns HSTS off)", *d)
		case *d > 0 && *d < time.Second:
			ps.Add("http.hsts_max_age", "must be at least 1s, not %s (0s turns HSTS off)", *d)
		}
	}
	if d := c.HTTP.DrainPeriod; d != nil && *d < 0 {
		ps.Add("http.drain_period", "must not be negative, not %s (0s turns the drain off)", *d)
	}
	if l := c.HTTP.SignInLimit; l != nil {
		if l.Burst < 1 || l.Burst > 1_000_000 {
			ps.Add("http.sign_in_limit.burst", "must be from 1 to 1000000, not %d", l.Burst)
		}
		if l.Every <= 0 {
			ps.Add("http.sign_in_limit.every", "must be a positive duration such as 10s, not %s", l.Every)
		}
	}
}

func validateStorage(c *Config, ps *problems) {
	switch c.Storage.Type {
	case "memory":
	case "redis":
		r := c.Storage.Redis
		if r.URL == "" {
			ps.Add("storage.redis.url", "required for storage.type redis")
		} else if scheme, _, _ := strings.Cut(r.URL, "://"); !slices.Contains([]string{"redis", "rediss", "redis-sentinel", "redis-cluster", "unix"}, scheme) {
			// The rest of the URL (host lists, options) is checked by
			// `fedbroker check` and at start, by the storage's own parser.
			ps.Add("storage.redis.url", "want redis://, rediss://, unix://, redis-sentinel:// or redis-cluster://")
		}
	case "sqlite":
		if strings.TrimSpace(c.Storage.SQLite.Path) == "" {
			ps.Add("storage.sqlite.path", "required for storage.type sqlite")
		}
	case "postgres":
		u := c.Storage.Postgres.URL
		switch scheme, _, _ := strings.Cut(u, "://"); {
		case u == "":
			ps.Add("storage.postgres.url", "required for storage.type postgres")
		case scheme != "postgres" && scheme != "postgresql":
			ps.Add("storage.postgres.url", "want postgres://user@host:port/database")
		}
	default:
		ps.Add("storage.type", "must be memory, sqlite, redis or postgres, not %q", c.Storage.Type)
	}
	if c.Storage.Redis.KeyPrefix == "" || strings.ContainsAny(c.Storage.Redis.KeyPrefix, " \t\r\n{}") {
		ps.Add("storage.redis.key_prefix", "must be non-empty, without spaces or braces")
	}
	if p := c.Storage.Redis.EvictionPolicy; p != "refuse" && p != "warn" {
		ps.Add("storage.redis.eviction_policy", "must be refuse or warn, not %q", p)
	}
	if d := c.Storage.Redis.RequireDurability; d != "" && d != "aof" && d != "rdb" && d != "none" {
		ps.Add("storage.redis.require_durability", "must be aof, rdb or none, not %q", d)
	}
}

func validateSigning(c *Config, ps *problems) {
	s := c.Signing
	if !jwa.CanSign(s.Algorithm) {
		ps.Add("signing.algorithm", "must be one of %s, not %q", strings.Join(jwa.Signing(), ", "), s.Algorithm)
	}
	for i, a := range s.Algorithms {
		if !jwa.CanSign(a) {
			ps.Add(index("signing.algorithms", i), "must be one of %s, not %q", strings.Join(jwa.Signing(), ", "), a)
		}
	}
	if s.RotationPeriod < time.Hour {
		ps.Add("signing.rotation_period", "must be at least 1h, not %s", s.RotationPeriod)
	}
	if s.KeyEncryptionKey != "" {
		if k, ok := decodeBase64(s.KeyEncryptionKey); !ok {
			ps.Add("signing.key_encryption_key", "not base64")
		} else if len(k) != 32 {
			ps.Add("signing.key_encryption_key", "must decode to exactly 32 bytes, not %d (try: openssl rand -base64 32)", len(k))
		}
	}
	kids := make(map[string]int)
	for i, k := range s.StaticKeys {
		p := index("signing.static_keys", i)
		if k.File == "" {
			ps.Add(p+".file", "required")
		}
		if k.KeyID != "" {
			if first, dup := kids[k.KeyID]; dup {
				ps.Add(p+".kid", "duplicate of signing.static_keys[%d].kid", first)
			}
			kids[k.KeyID] = i
		}
	}
}

// decodeBase64 accepts standard or URL-safe base64, padded or not.
// KEK returns the decoded key-encryption key, nil when none is configured.
// It accepts every base64 form Validate accepts.
func (s Signing) KEK() ([]byte, error) {
	if s.KeyEncryptionKey == "" {
		return nil, nil
	}
	k, ok := decodeBase64(s.KeyEncryptionKey)
	if !ok {
		return nil, errors.New("signing.key_encryption_key: not base64")
	}
	if len(k) != 32 {
		return nil, errors.New("signing.key_encryption_key: must decode to exactly 32 bytes, not " + strconv.Itoa(len(k)))
	}
	return k, nil
}

func decodeBase64(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

func validateTokens(c *Config, ps *problems) {
	t := c.Tokens
	for _, d := range []struct {
		path string
		v    time.Duration
		max  time.Duration
	}{
		{"tokens.id_token", t.IDToken, MaxTokenLifetime},
		{"tokens.access_token", t.AccessToken, MaxTokenLifetime},
		{"tokens.refresh_idle", t.RefreshIdle, 0},
		{"tokens.refresh_absolute", t.RefreshAbsolute, 0},
		{"tokens.auth_code", t.AuthCode, MaxAuthCodeLifetime},
		{"tokens.auth_request", t.AuthRequest, 24 * time.Hour},
		{"tokens.session", t.Session, 0},
	} {
		switch {
		case d.v <= 0:
			ps.Add(d.path, "must be positive, not %s", d.v)
		case d.max > 0 && d.v > d.max:
			ps.Add(d.path, "must be at most %s, not %s", d.max, d.v)
		}
	}
	if t.RefreshIdle > 0 && t.RefreshAbsolute > 0 && t.RefreshIdle > t.RefreshAbsolute {
		ps.Add("tokens.refresh_idle", "must not exceed tokens.refresh_absolute (%s)", t.RefreshAbsolute)
	}
	if d := t.RefreshRetryWindow; d != nil {
		switch {
		case *d < 0:
			ps.Add("tokens.refresh_retry_window", "must not be negative, not %s (0s turns refresh retries off)", *d)
		case *d > MaxRefreshRetryWindow:
			ps.Add("tokens.refresh_retry_window", "must be at most %s, not %s", MaxRefreshRetryWindow, *d)
		}
	}
}

func validateConnectors(c *Config, ps *problems) {
	ids := make(map[string]int)
	domains := make(map[string]string)
	for i, cc := range c.Connectors {
		p := index("connectors", i)
		switch {
		case cc.ID == "":
			ps.Add(p+".id", "required")
		case !connectorIDRe.MatchString(cc.ID):
			ps.Add(p+".id", "must match [a-z0-9][a-z0-9_-]{0,62}, not %q", cc.ID)
		default:
			if first, dup := ids[cc.ID]; dup {
				ps.Add(p+".id", "duplicate of connectors[%d].id", first)
			} else {
				ids[cc.ID] = i
			}
		}
		if cc.Mapping != "" {
			if _, ok := c.Mappings[cc.Mapping]; !ok {
				ps.Add(p+".mapping", "no mapping %q under mappings", cc.Mapping)
			}
		}
		for j, d := range cc.Domains {
			dp := index(p+".domains", j)
			if !validDomain(d) {
				ps.Add(dp, "not a domain name: %q", d)
				continue
			}
			key := strings.ToLower(d)
			if other, dup := domains[key]; dup {
				ps.Add(dp, "domain %q already routes to %s", d, other)
			} else {
				domains[key] = p
			}
		}
		if cc.Type == "" {
			ps.Add(p+".type", "required")
		}
	}
}

// validDomain accepts a DNS name of two or more labels, any case, without
// a trailing dot or a leading "@".
func validDomain(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, label := range strings.Split(strings.ToLower(d), ".") {
		if !domainLabelRe.MatchString(label) {
			return false
		}
	}
	return true
}

func validateLinks(c *Config, ps *problems) {
	ids := make(map[string]bool)
	for _, cc := range c.Connectors {
		ids[cc.ID] = true
	}
	for i, g := range c.Links.Groups {
		p := index("links.groups", i)
		if len(g) < 2 {
			ps.Add(p, "a link group needs at least two connectors")
		}
		seen := make(map[string]bool)
		for j, id := range g {
			switch {
			case !ids[id]:
				ps.Add(index(p, j), "no connector %q", id)
			case seen[id]:
				ps.Add(index(p, j), "connector %q listed twice", id)
			}
			seen[id] = true
		}
	}
}
