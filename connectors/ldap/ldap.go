package ldap

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/fedbroker/fedbroker/connectors"
)

// Open returns a *Connector. It does not reach the directory: the first
// sign-in opens the first connection. Validate must have accepted c.
func (c *Config) Open(_ context.Context, id string, opts connectors.Options) (connectors.Connector, error) {
	conn := &Connector{id: id, cfg: *c, timeout: c.Timeout, log: opts.Logger}
	if conn.timeout == 0 {
		conn.timeout = defaultTimeout
	}
	if conn.log == nil {
		conn.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	conn.pool = &pool{max: defaultPoolSize, idleTimeout: c.PoolIdleTimeout, now: opts.Now}
	if c.PoolSize != nil {
		conn.pool.max = *c.PoolSize
	}
	if c.BindDN == "" {
		conn.pool.max = 0 // connections end bound as the user
	}
	if conn.pool.idleTimeout == 0 {
		conn.pool.idleTimeout = defaultPoolIdleTimeout
	}
	if conn.pool.now == nil {
		conn.pool.now = time.Now
	}
	if c.TLS != TLSNone {
		host, _, err := net.SplitHostPort(c.Host)
		if err != nil {
			return nil, fmt.Errorf("ldap: host: %w", err)
		}
		conn.tls = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if c.ServerName != "" {
			conn.tls.ServerName = c.ServerName
		}
		if c.RootCA != "" {
			pool, err := loadRootCA(c.RootCA)
			if err != nil {
				return nil, fmt.Errorf("ldap: root_ca: %w", err)
			}
			conn.tls.RootCAs = pool
		}
	}
	return conn, nil
}

// Connector checks passwords against an LDAP directory. It is safe for
// concurrent use: each Login has a connection of its own while it runs,
// new or, with bind_dn, one kept from an earlier sign-in (pool.go). Close
// closes the kept ones.
type Connector struct {
	id      string
	cfg     Config
	tls     *tls.Config
	timeout time.Duration
	log     *slog.Logger
	pool    *pool
}

// Prompt labels the username field.
func (c *Connector) Prompt() string {
	if c.cfg.Prompt != "" {
		return c.cfg.Prompt
	}
	return "Username"
}

// Login binds as the user. It returns ok=false with a nil error whenever
// the directory refuses the credentials or the user is unknown, locked or
// disabled, after comparable work (an unknown user costs one more bind as
// the service account in place of the user's bind), so that neither the
// answer nor its timing tells which usernames exist. An error means the
// check itself failed: the directory is down, slow, or refused the service
// account.
func (c *Connector) Login(ctx context.Context, _ connectors.Scopes, username, password string) (connectors.Identity, bool, error) {
	// An empty password would be an unauthenticated bind, which succeeds.
	if username == "" || password == "" || !utf8.ValidString(username) || strings.ContainsRune(username, 0) {
		return connectors.Identity{}, false, nil
	}
	if c.cfg.BindDN != "" {
		return c.searchThenBind(ctx, username, password)
	}
	return c.directBind(ctx, username, password)
}

// searchThenBind finds the user as bind_dn, binds as them, and reads
// their groups as bind_dn, on a connection from the pool when there is
// one; bound as bind_dn again, the connection goes back to the pool.
func (c *Connector) searchThenBind(ctx context.Context, username, password string) (connectors.Identity, bool, error) {
	var entry *goldap.Entry
	s, err := c.withService(ctx, "user search", func(s *session) (err error) {
		entry, err = c.findUser(s, username)
		return err
	})
	if err != nil {
		return connectors.Identity{}, false, err
	}
	asService := false
	defer func() { c.release(s, asService) }()
	// bindService binds s as bind_dn again: users may not be allowed to
	// read groups, and a pooled connection is always bound as bind_dn.
	bindService := func() error {
		if err := s.bind(c.cfg.BindDN, c.cfg.BindPassword); err != nil {
			return c.failure("bind as bind_dn", err)
		}
		asService = true
		return nil
	}
	// A kept connection is bound as bind_dn again after the user's bind,
	// whatever its outcome: it is never left bound as a user, and never
	// left bound as nobody. An unknown user makes the same binds as the
	// service account, so that neither the answer, nor its timing, nor
	// the state of the pool after it tells which usernames exist.
	keep := c.pool.max > 0
	if entry == nil {
		if err := bindService(); err != nil { // in place of the user's bind
			return connectors.Identity{}, false, err
		}
		if keep {
			return connectors.Identity{}, false, bindService()
		}
		return connectors.Identity{}, false, nil
	}
	ok, err := c.userBind(s, entry.DN, password)
	if err != nil {
		return connectors.Identity{}, false, err
	}
	if !ok {
		if keep {
			return connectors.Identity{}, false, bindService()
		}
		return connectors.Identity{}, false, nil
	}
	if c.cfg.GroupSearch != nil || keep {
		if err := bindService(); err != nil {
			return connectors.Identity{}, false, err
		}
	}
	id, ok, err := c.finish(s, entry, username)
	if err != nil {
		asService = false // whatever failed, the connection is not kept
	}
	return id, ok, err
}

// directBind binds as the DN user_dn_template makes of username, on a
// connection of its own (it ends bound as the user: no pool).
func (c *Connector) directBind(ctx context.Context, username, password string) (connectors.Identity, bool, error) {
	s, err := c.dial(ctx)
	if err != nil {
		return connectors.Identity{}, false, c.failure("connect", err)
	}
	defer s.close()
	dn := strings.Replace(c.cfg.UserDNTemplate, "{username}", goldap.EscapeDN(username), 1)
	if ok, err := c.userBind(s, dn, password); !ok || err != nil {
		return connectors.Identity{}, false, err
	}
	var entry *goldap.Entry
	if c.cfg.UserSearch.BaseDN != "" {
		entry, err = c.findUser(s, username)
	} else {
		entry, err = c.readEntry(s, dn)
	}
	if err != nil {
		return connectors.Identity{}, false, c.failure("read the user entry", err)
	}
	if entry == nil {
		return connectors.Identity{}, false, c.failure("read the user entry", fmt.Errorf("bound as %q, but its entry was not found (check user_search or the directory's read access)", dn))
	}
	return c.finish(s, entry, username)
}

// finish reads the user's groups and makes the identity.
func (c *Connector) finish(s *session, entry *goldap.Entry, username string) (connectors.Identity, bool, error) {
	groups, err := c.groups(s, entry)
	if err != nil {
		return connectors.Identity{}, false, c.failure("group search", err)
	}
	id, err := c.identity(entry, username, groups)
	if err != nil {
		return connectors.Identity{}, false, c.failure("user entry", err)
	}
	id.ConnectorData = c.connectorData(entry.DN, username)
	return id, true, nil
}

// userBind binds as dn. A refusal is ok=false with a nil error.
func (c *Connector) userBind(s *session, dn, password string) (bool, error) {
	err := s.bind(dn, password)
	switch {
	case err == nil:
		return true, nil
	case userBindFailed(err):
		c.log.Debug("ldap bind refused", "connector", c.id, "dn", dn, "err", err)
		return false, nil
	}
	return false, c.failure("bind as the user", err)
}

// userAttrs are the attributes read from the user's entry.
func (c *Connector) userAttrs() []string {
	attrs := []string{c.cfg.IDAttr, c.cfg.EmailAttr, c.cfg.NameAttr, c.cfg.PreferredUsernameAttr, c.cfg.MemberOfAttr, c.cfg.UserSearch.UsernameAttr}
	attrs = append(attrs, c.cfg.ExtraAttrs...)
	if g := c.cfg.GroupSearch; g != nil {
		_, ua, _ := g.matcher()
		attrs = append(attrs, ua)
	}
	out := attrs[:0]
	for _, a := range attrs {
		if a != "" && !strings.EqualFold(a, "dn") && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return []string{"1.1"} // no attributes
	}
	return out
}

// UserFilter is the filter that finds username's entry: the configured
// filter and an equality on username_attr, the username escaped.
func (c *Connector) UserFilter(username string) string {
	eq := "(" + c.cfg.UserSearch.UsernameAttr + "=" + goldap.EscapeFilter(username) + ")"
	if c.cfg.UserSearch.Filter == "" {
		return eq
	}
	return "(&" + c.cfg.UserSearch.Filter + eq + ")"
}

// findUser returns the one entry matching username, or nil when there is
// none or more than one.
func (c *Connector) findUser(s *session, username string) (*goldap.Entry, error) {
	req := goldap.NewSearchRequest(c.cfg.UserSearch.BaseDN, scopes[c.cfg.UserSearch.Scope], goldap.NeverDerefAliases,
		0, 0, false, c.UserFilter(username), c.userAttrs(), nil)
	res, err := s.search(req)
	if err != nil {
		return nil, err
	}
	switch len(res.Entries) {
	case 1:
		return res.Entries[0], nil
	case 0:
		c.log.Debug("ldap user not found", "connector", c.id)
	default:
		c.log.Warn("ldap user search matched more than one entry; refusing the sign-in", "connector", c.id, "entries", len(res.Entries))
	}
	return nil, nil
}

func (c *Connector) readEntry(s *session, dn string) (*goldap.Entry, error) {
	req := goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", c.userAttrs(), nil)
	res, err := s.search(req)
	if err != nil {
		return nil, err
	}
	if len(res.Entries) != 1 {
		return nil, nil
	}
	return res.Entries[0], nil
}

// GroupFilter is the group search filter for a user whose matched value
// (its DN, or the user_matcher attribute) is value.
func (c *Connector) GroupFilter(value string) string {
	g := c.cfg.GroupSearch
	ga, _, _ := g.matcher()
	op := "="
	if g.Nested {
		op = ":1.2.840.113556.1.4.1941:=" // LDAP_MATCHING_RULE_IN_CHAIN
	}
	eq := "(" + ga + op + goldap.EscapeFilter(value) + ")"
	if g.Filter == "" {
		return eq
	}
	return "(&" + g.Filter + eq + ")"
}

// groups returns the names of the user's groups, from memberof_attr and
// from the group search, sorted and without duplicates.
func (c *Connector) groups(s *session, entry *goldap.Entry) ([]string, error) {
	var names []string
	if a := c.cfg.MemberOfAttr; a != "" {
		for _, v := range entry.GetEqualFoldAttributeValues(a) {
			if dn, err := goldap.ParseDN(v); err == nil && len(dn.RDNs) > 0 && len(dn.RDNs[0].Attributes) > 0 {
				names = append(names, dn.RDNs[0].Attributes[0].Value)
			}
		}
	}
	if g := c.cfg.GroupSearch; g != nil {
		_, ua, _ := g.matcher()
		values := []string{entry.DN}
		if !strings.EqualFold(ua, "dn") {
			values = entry.GetEqualFoldAttributeValues(ua)
		}
		for _, v := range values {
			req := goldap.NewSearchRequest(g.BaseDN, scopes[g.Scope], goldap.NeverDerefAliases, 0, 0, false,
				c.GroupFilter(v), []string{g.nameAttr()}, nil)
			res, err := s.search(req)
			if err != nil {
				return nil, err
			}
			for _, e := range res.Entries {
				names = append(names, e.GetEqualFoldAttributeValues(g.nameAttr())...)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// identity builds the Identity: the subject from id_attr (default: the
// entry's DN) and JSON-shaped claims.
func (c *Connector) identity(e *goldap.Entry, username string, groups []string) (connectors.Identity, error) {
	sub, err := c.subject(e)
	if err != nil {
		return connectors.Identity{}, err
	}
	first := func(attr string) string {
		if attr == "" {
			return ""
		}
		if strings.EqualFold(attr, "dn") {
			return e.DN
		}
		return text(e.GetEqualFoldRawAttributeValue(attr))
	}
	verified := c.cfg.EmailVerified == nil || *c.cfg.EmailVerified
	pu := first(c.cfg.PreferredUsernameAttr)
	if pu == "" {
		pu = first(c.cfg.UserSearch.UsernameAttr)
	}
	if pu == "" {
		pu = username
	}
	gs := make([]any, len(groups))
	for i, g := range groups {
		gs[i] = g
	}
	claims := map[string]any{}
	for _, a := range c.cfg.ExtraAttrs {
		var vs []any
		for _, v := range e.GetEqualFoldRawAttributeValues(a) {
			vs = append(vs, text(v))
		}
		if vs != nil {
			claims[a] = vs
		}
	}
	claims["sub"] = sub
	claims["dn"] = e.DN
	claims["username"] = username
	claims["preferred_username"] = pu
	claims["groups"] = gs
	if email := first(c.cfg.EmailAttr); email != "" {
		claims["email"] = email
		claims["email_verified"] = verified
	}
	if name := first(c.cfg.NameAttr); name != "" {
		claims["name"] = name
	}
	return connectors.Identity{Subject: sub, Claims: claims}, nil
}

func (c *Connector) subject(e *goldap.Entry) (string, error) {
	if c.cfg.IDAttr == "" || strings.EqualFold(c.cfg.IDAttr, "dn") {
		return e.DN, nil
	}
	raw := e.GetEqualFoldRawAttributeValue(c.cfg.IDAttr)
	if len(raw) == 0 {
		return "", fmt.Errorf("entry %q has no %s (id_attr)", e.DN, c.cfg.IDAttr)
	}
	switch c.cfg.IDEncoding {
	case "base64":
		return base64.StdEncoding.EncodeToString(raw), nil
	case "hex":
		return hex.EncodeToString(raw), nil
	}
	if !utf8.Valid(raw) {
		return "", fmt.Errorf("%s (id_attr) of %q is binary: set id_encoding to base64 or hex", c.cfg.IDAttr, e.DN)
	}
	return string(raw), nil
}

// text returns v as a string, base64-encoded when it is not UTF-8.
func text(v []byte) string {
	if utf8.Valid(v) {
		return string(v)
	}
	return base64.StdEncoding.EncodeToString(v)
}
