package redis

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// clientConfig is a parsed connection URL: exactly one of the three option
// sets is filled.
type clientConfig struct {
	single   *goredis.Options
	failover *goredis.FailoverOptions
	cluster  *goredis.ClusterOptions
}

// Default timeouts, used when the URL sets none: a broker answers people
// and services, so a slow Redis must turn into a quick 503, not a request
// hanging for go-redis's defaults (3 s per attempt, three retries).
const (
	defaultDialTimeout  = 2 * time.Second
	defaultReadTimeout  = time.Second
	defaultWriteTimeout = time.Second
	defaultMaxRetries   = 1
)

func setDefaults(dial, read, write *time.Duration, retries *int) {
	if *dial == 0 {
		*dial = defaultDialTimeout
	}
	if *read == 0 {
		*read = defaultReadTimeout
	}
	if *write == 0 {
		*write = defaultWriteTimeout
	}
	if *retries == 0 {
		*retries = defaultMaxRetries
	}
}

// withDefaults fills in the default timeouts and retry count wherever the
// URL left them unset.
func (c clientConfig) withDefaults() clientConfig {
	switch {
	case c.failover != nil:
		setDefaults(&c.failover.DialTimeout, &c.failover.ReadTimeout, &c.failover.WriteTimeout, &c.failover.MaxRetries)
	case c.cluster != nil:
		setDefaults(&c.cluster.DialTimeout, &c.cluster.ReadTimeout, &c.cluster.WriteTimeout, &c.cluster.MaxRetries)
	default:
		setDefaults(&c.single.DialTimeout, &c.single.ReadTimeout, &c.single.WriteTimeout, &c.single.MaxRetries)
	}
	return c
}

func (c clientConfig) newClient() goredis.UniversalClient {
	c = c.withDefaults()
	switch {
	case c.failover != nil:
		return goredis.NewFailoverClient(c.failover)
	case c.cluster != nil:
		return goredis.NewClusterClient(c.cluster)
	default:
		return goredis.NewClient(c.single)
	}
}

// parseURL parses the connection URL forms Open accepts:
//
//	redis://[user[:password]@]host[:port][/db][?option=value&...]
//	rediss://[user[:password]@]host[:port][/db][?option=value&...]      (TLS)
//	unix://[user[:password]@]/path/to/redis.sock[?db=N&option=value&...]
//	redis-sentinel://[user[:password]@]host[:port][,host[:port]...]/master[?db=N&option=value&...]
//	redis-cluster://[user[:password]@]host[:port][,host[:port]...][/][?option=value&...]
//
// The port defaults to 6379, or 26379 for a sentinel. Host names are
// letters, digits, '-', '.' and '_'; IPv6 addresses go in brackets. Reserved
// characters in the user name and password are percent-encoded.
//
// The options are go-redis's, as its ParseURL (redis, rediss, unix),
// ParseFailoverURL (sentinel) and ParseClusterURL (cluster) name them:
// dial_timeout, read_timeout, write_timeout, max_retries, pool_size, ... An
// unknown option is an error, and so is an option given twice, an integer
// that does not fit in 32 bits, a dial, read or write timeout of 0 or less
// (which would disable it) and an option that would send reads to replicas
// (replica_only, use_disconnected_replicas, read_only, route_by_latency,
// route_randomly): the broker must read what it has just written.
//
// A sentinel URL's credentials are the data nodes'; the sentinels are reached
// with the same ones unless sentinel_username or sentinel_password is given.
// go-redis's own failover and cluster URLs list extra hosts in addr=
// parameters and, for a sentinel, take master_name, username and password
// parameters; here the host list, the path and the user info say that, and
// those parameters are refused.
//
// Errors name the problem. They show at most the scheme, hosts and path and
// the option at fault (go-redis quotes a malformed number, duration or
// boolean), never the user info or the value of sentinel_username or
// sentinel_password.
func parseURL(raw string) (clientConfig, error) {
	p, err := splitURL(raw)
	if err != nil {
		return clientConfig{}, err
	}
	switch p.scheme {
	case "redis", "rediss", "unix":
		o, err := p.single(raw)
		return clientConfig{single: o}, err
	case "redis-sentinel":
		o, err := p.sentinel()
		return clientConfig{failover: o}, err
	default: // redis-cluster
		o, err := p.cluster()
		return clientConfig{cluster: o}, err
	}
}

// urlParts is a URL cut into the pieces that the checks below look at.
type urlParts struct {
	scheme     string // lower case
	user, pass string
	hosts      string // host list as written
	path       string // unescaped
	rawPath    string // as written, for error messages
	query      url.Values
}

// where names the URL in error messages: scheme, hosts and path, which hold
// no credentials.
func (p *urlParts) where() string { return p.scheme + "://" + p.hosts + p.rawPath }

func (p *urlParts) errorf(format string, args ...any) error {
	return fmt.Errorf("redis: url %s: %s", p.where(), fmt.Sprintf(format, args...))
}

// schemes lists the accepted schemes, for error messages.
const schemes = "redis://, rediss://, unix://, redis-sentinel:// or redis-cluster://"

// splitURL cuts raw at the boundaries net/url uses (the authority ends at the
// first '/', '?' or '#'; the user info ends at the authority's last '@') and
// checks every part. The host list of a sentinel or cluster URL has commas,
// which net/url does not parse, so hosts are checked here for every scheme.
func splitURL(raw string) (*urlParts, error) {
	if raw == "" {
		return nil, errors.New("redis: url is empty; want " + schemes)
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x20 || c == 0x7f || c == ' ' {
			return nil, fmt.Errorf("redis: url has a space or control character at byte %d; percent-encode it", i)
		}
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("redis: url has no scheme; want " + schemes)
	}
	p := &urlParts{scheme: strings.ToLower(scheme)}
	switch p.scheme {
	case "redis", "rediss", "unix", "redis-sentinel", "redis-cluster":
	default:
		if !validScheme(scheme) {
			return nil, errors.New("redis: url has a malformed scheme; want " + schemes)
		}
		return nil, fmt.Errorf("redis: url has unsupported scheme %q; want %s", scheme, schemes)
	}

	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hasUserinfo := "", false
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, p.hosts, hasUserinfo = authority[:i], authority[i+1:], true
	} else {
		p.hosts = authority
	}
	// An '@' after the authority most likely means a user name or password
	// holds an unencoded '/', '?' or '#', which ended the authority early:
	// part of the password is then in what looks like the host, and the
	// rest in the path or query. So this message shows nothing of the URL.
	if strings.Contains(tail, "@") {
		return nil, errors.New("redis: url has an '@' after the host; percent-encode '@', '/', '?' and '#' in user names, passwords and option values (%40, %2F, %3F, %23)")
	}
	rawPath, rawQuery, _ := strings.Cut(tail, "?")
	p.rawPath = rawPath
	if strings.Contains(tail, "#") {
		return nil, p.errorf("a fragment (#...) is not allowed; percent-encode '#' as %%23")
	}
	if hasUserinfo {
		// net/url's own rules, as go-redis applies them to a redis:// URL.
		u, err := url.Parse("redis://" + userinfo + "@localhost")
		if err != nil || u.User == nil {
			return nil, p.errorf("malformed user info; percent-encode reserved characters in the user name and password")
		}
		p.user = u.User.Username()
		p.pass, _ = u.User.Password()
	}
	var err error
	if p.path, err = url.PathUnescape(rawPath); err != nil {
		return nil, p.errorf("path has a malformed percent-encoding")
	}
	// url.Values from URL.Query drops malformed pairs silently; refuse them.
	if p.query, err = url.ParseQuery(rawQuery); err != nil {
		return nil, p.errorf("malformed query; want name=value pairs separated by '&', percent-encoded")
	}
	if err := p.checkQuery(); err != nil {
		return nil, err
	}
	return p, nil
}

// validScheme reports whether s is an RFC 3986 scheme, safe to quote.
func validScheme(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// stringOptions are go-redis options whose values are text, not numbers.
var stringOptions = map[string]bool{
	"client_name": true, "identitySuffix": true, "master_name": true, "addr": true,
	"username": true, "password": true, "sentinel_username": true, "sentinel_password": true,
}

// checkQuery applies the rules common to every scheme. Option values are
// never quoted: some are credentials.
func (p *urlParts) checkQuery() error {
	for _, name := range slices.Sorted(maps.Keys(p.query)) {
		vs := p.query[name]
		if len(vs) > 1 {
			return p.errorf("option %q given %d times", name, len(vs))
		}
		switch name {
		case "username", "password":
			return p.errorf("option %q is not allowed; put credentials in the user info (%s://user:password@host)", name, p.scheme)
		}
		if !stringOptions[name] {
			// go-redis parses ints into int and whole seconds into a
			// time.Duration, unchecked: a huge value would overflow or make
			// it panic when it builds a connection pool.
			if _, err := strconv.ParseInt(vs[0], 10, 32); errors.Is(err, strconv.ErrRange) {
				return p.errorf("option %q is out of range (%d to %d)", name, math.MinInt32, math.MaxInt32)
			}
		}
	}
	return nil
}

// refuse rejects any of the named options, with the reason.
func (p *urlParts) refuse(reason string, names ...string) error {
	for _, n := range names {
		if p.query.Has(n) {
			return p.errorf("option %q is not allowed: %s", n, reason)
		}
	}
	return nil
}

const replicaReason = "it would send reads to replicas, which lag behind the primary; the broker must read what it has just written"

// goredisErr wraps an error from a go-redis parser, whose messages name an
// option and its value but never the user info.
func (p *urlParts) goredisErr(err error) error {
	return fmt.Errorf("redis: url %s: %w", p.where(), err)
}

// single parses redis://, rediss:// and unix:// URLs with goredis.ParseURL.
func (p *urlParts) single(raw string) (*goredis.Options, error) {
	if p.scheme == "unix" {
		if p.hosts != "" {
			return nil, p.errorf("a unix URL has a socket path, not a host: unix:///path/to/redis.sock")
		}
		if strings.Trim(p.path, "/") == "" {
			return nil, p.errorf("no socket path: want unix:///path/to/redis.sock")
		}
	} else {
		if strings.Contains(p.hosts, ",") {
			return nil, p.errorf("%s:// takes one host; use redis-sentinel:// or redis-cluster:// for several", p.scheme)
		}
		if _, err := hostPort(p.hosts, "6379"); err != nil {
			return nil, p.errorf("%v", err)
		}
		if strings.Trim(p.path, "/") != "" && p.query.Has("db") {
			return nil, p.errorf("database given both in the path and as db=")
		}
	}
	o, err := goredis.ParseURL(raw)
	if err != nil {
		return nil, p.goredisErr(err)
	}
	if err := p.checkCommon(o.DB, o.DialTimeout, o.ReadTimeout, o.WriteTimeout); err != nil {
		return nil, err
	}
	return o, nil
}

// sentinel parses a redis-sentinel:// URL: it becomes go-redis's failover
// URL redis://h1:p1/?master_name=M&addr=h2:p2&... for ParseFailoverURL, and
// the credentials are set on the result.
func (p *urlParts) sentinel() (*goredis.FailoverOptions, error) {
	addrs, err := p.hostList("26379")
	if err != nil {
		return nil, err
	}
	master := strings.TrimPrefix(p.path, "/")
	if master == "" || strings.Contains(master, "/") {
		return nil, p.errorf("want the master name as the path (redis-sentinel://h1:p1,h2:p2/mymaster)")
	}
	if err := p.refuse("the master name is the URL path", "master_name"); err != nil {
		return nil, err
	}
	if err := p.refuse("list every sentinel before the path (redis-sentinel://h1:p1,h2:p2/mymaster)", "addr"); err != nil {
		return nil, err
	}
	if err := p.refuse(replicaReason, "replica_only", "use_disconnected_replicas", "route_by_latency", "route_randomly"); err != nil {
		return nil, err
	}
	q := cloneValues(p.query)
	sentinelUser, hasSentinelUser := popValue(q, "sentinel_username")
	sentinelPass, hasSentinelPass := popValue(q, "sentinel_password")
	q.Set("master_name", master)
	q["addr"] = addrs[1:]
	u := url.URL{Scheme: "redis", Host: addrs[0], Path: "/", RawQuery: q.Encode()}
	o, err := goredis.ParseFailoverURL(u.String())
	if err != nil {
		return nil, p.goredisErr(err)
	}
	if err := p.checkCommon(o.DB, o.DialTimeout, o.ReadTimeout, o.WriteTimeout); err != nil {
		return nil, err
	}
	o.Username, o.Password = p.user, p.pass
	o.SentinelUsername, o.SentinelPassword = p.user, p.pass
	if hasSentinelUser {
		o.SentinelUsername = sentinelUser
	}
	if hasSentinelPass {
		o.SentinelPassword = sentinelPass
	}
	return o, nil
}

// cluster parses a redis-cluster:// URL: it becomes go-redis's cluster URL
// redis://h1:p1?addr=h2:p2&... for ParseClusterURL, and the credentials are
// set on the result.
func (p *urlParts) cluster() (*goredis.ClusterOptions, error) {
	addrs, err := p.hostList("6379")
	if err != nil {
		return nil, err
	}
	if p.path != "" && p.path != "/" {
		return nil, p.errorf("a cluster URL has no path (a cluster has only database 0)")
	}
	if err := p.refuse("a cluster has only database 0", "db"); err != nil {
		return nil, err
	}
	if err := p.refuse("list every node before the query (redis-cluster://h1:p1,h2:p2)", "addr"); err != nil {
		return nil, err
	}
	if err := p.refuse(replicaReason, "read_only", "route_by_latency", "route_randomly"); err != nil {
		return nil, err
	}
	q := cloneValues(p.query)
	q["addr"] = addrs[1:]
	u := url.URL{Scheme: "redis", Host: addrs[0], RawQuery: q.Encode()}
	o, err := goredis.ParseClusterURL(u.String())
	if err != nil {
		return nil, p.goredisErr(err)
	}
	if err := p.checkCommon(0, o.DialTimeout, o.ReadTimeout, o.WriteTimeout); err != nil {
		return nil, err
	}
	o.Username, o.Password = p.user, p.pass
	return o, nil
}

// checkCommon checks parsed values go-redis accepts but the broker must not
// use: a database number Redis cannot have, and disabled timeouts (go-redis
// turns a timeout of 0 or less into -1, "no timeout").
func (p *urlParts) checkCommon(db int, dial, read, write time.Duration) error {
	if db < 0 || db > math.MaxInt32 {
		return p.errorf("database number %d out of range (0 to %d)", db, math.MaxInt32)
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"dial_timeout", dial}, {"read_timeout", read}, {"write_timeout", write}} {
		if t.d < 0 {
			return p.errorf("%s must be positive: 0 or less would disable it, and the broker needs bounded timeouts", t.name)
		}
	}
	return nil
}

// hostList checks a comma-separated host list and returns host:port pairs.
func (p *urlParts) hostList(defPort string) ([]string, error) {
	if p.hosts == "" {
		return nil, p.errorf("no host")
	}
	var addrs []string
	for _, h := range strings.Split(p.hosts, ",") {
		a, err := hostPort(h, defPort)
		if err != nil {
			return nil, p.errorf("%v", err)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// hostPort checks host[:port], [ipv6][:port] and returns it as host:port.
func hostPort(s, defPort string) (string, error) {
	if s == "" {
		return "", errors.New("no host")
	}
	var host, port string
	hasPort := false
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", fmt.Errorf("host %q: missing ']'", s)
		}
		host = s[1:end]
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("host %q: not an IPv6 address (zones are not supported)", s)
		}
		switch after := s[end+1:]; {
		case after == "":
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			return "", fmt.Errorf("host %q: unexpected text after ']'", s)
		}
	} else {
		host, port, hasPort = strings.Cut(s, ":")
		if strings.Contains(port, ":") {
			return "", fmt.Errorf("host %q: put an IPv6 address in brackets ([::1]:6379)", s)
		}
		if host == "" {
			return "", fmt.Errorf("host %q: no host name before the port", s)
		}
		if !validHostname(host) {
			return "", fmt.Errorf("host %q: want a host name (letters, digits, '-', '.', '_') or an IP address", s)
		}
	}
	if !hasPort {
		port = defPort
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("host %q: port %q is not a number from 1 to 65535", s, port)
	}
	return net.JoinHostPort(host, port), nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, c := range h {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		default:
			return false
		}
	}
	return true
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// popValue removes name from q and returns its (single) value.
func popValue(q url.Values, name string) (string, bool) {
	if !q.Has(name) {
		return "", false
	}
	v := q.Get(name)
	q.Del(name)
	return v, true
}

// CheckURL reports whether raw is a Redis URL Open accepts, without
// connecting; the error names the problem and never the password.
func CheckURL(raw string) error {
	_, err := parseURL(raw)
	return err
}
