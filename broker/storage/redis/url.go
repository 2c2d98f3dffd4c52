package redis

import (
	"fmt"
	"net"
	"net/url"
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

func (c clientConfig) newClient() goredis.UniversalClient {
	switch {
	case c.failover != nil:
		setDefaults(&c.failover.DialTimeout, &c.failover.ReadTimeout, &c.failover.WriteTimeout, &c.failover.MaxRetries)
	case c.cluster != nil:
		setDefaults(&c.cluster.DialTimeout, &c.cluster.ReadTimeout, &c.cluster.WriteTimeout, &c.cluster.MaxRetries)
	default:
		setDefaults(&c.single.DialTimeout, &c.single.ReadTimeout, &c.single.WriteTimeout, &c.single.MaxRetries)
	}
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
//	redis://[user:pass@]host:port[/db]
//	rediss://[user:pass@]host:port[/db]          (TLS)
//	redis-sentinel://[user:pass@]h1:p1,h2:p2/master[?db=N]
//	redis-cluster://[user:pass@]h1:p1,h2:p2
//
// For sentinel URLs the credentials are the data nodes'; the sentinels are
// reached with the same credentials unless sentinel_username and
// sentinel_password are given in the query.
func parseURL(raw string) (clientConfig, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return clientConfig{}, fmt.Errorf("redis: url %q: missing scheme (redis://, rediss://, redis-sentinel:// or redis-cluster://)", redact(raw))
	}
	switch scheme {
	case "redis", "rediss", "redis-sentinel", "redis-cluster":
	default:
		return clientConfig{}, fmt.Errorf("redis: url %q: unsupported scheme %q (want redis, rediss, redis-sentinel or redis-cluster)", redact(raw), scheme)
	}

	authority, pathQuery := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, pathQuery = rest[:i], rest[i:]
	}
	var user, pass string
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		var err error
		u, p, _ := strings.Cut(authority[:i], ":")
		if user, err = url.PathUnescape(u); err != nil {
			return clientConfig{}, fmt.Errorf("redis: url %q: user name: %w", redact(raw), err)
		}
		if pass, err = url.PathUnescape(p); err != nil {
			return clientConfig{}, fmt.Errorf("redis: url %q: password is not valid URL escaping", redact(raw))
		}
		authority = authority[i+1:]
	}

	if scheme == "redis" || scheme == "rediss" {
		o, err := goredis.ParseURL(raw)
		if err == nil {
			_, err = parseAddrs(o.Addr, "6379")
		}
		if err != nil {
			msg := err.Error()
			if pass != "" {
				msg = strings.ReplaceAll(msg, pass, "xxxxx")
				msg = strings.ReplaceAll(msg, url.PathEscape(pass), "xxxxx")
			}
			return clientConfig{}, fmt.Errorf("redis: url %q: %s", redact(raw), msg)
		}
		return clientConfig{single: o}, nil
	}

	defPort := "6379"
	if scheme == "redis-sentinel" {
		defPort = "26379"
	}
	addrs, err := parseAddrs(authority, defPort)
	if err != nil {
		return clientConfig{}, fmt.Errorf("redis: url %q: %w", redact(raw), err)
	}
	path, rawQuery, _ := strings.Cut(pathQuery, "?")
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return clientConfig{}, fmt.Errorf("redis: url %q: query: %w", redact(raw), err)
	}

	if scheme == "redis-cluster" {
		if path != "" && path != "/" {
			return clientConfig{}, fmt.Errorf("redis: url %q: a cluster URL has no path (cluster has only database 0)", redact(raw))
		}
		if len(query) > 0 {
			return clientConfig{}, fmt.Errorf("redis: url %q: a cluster URL takes no query parameters", redact(raw))
		}
		return clientConfig{cluster: &goredis.ClusterOptions{Addrs: addrs, Username: user, Password: pass}}, nil
	}

	master := strings.TrimPrefix(path, "/")
	if master == "" || strings.Contains(master, "/") {
		return clientConfig{}, fmt.Errorf("redis: url %q: want the master name as the path (redis-sentinel://h1:p1,h2:p2/mymaster)", redact(raw))
	}
	o := &goredis.FailoverOptions{
		MasterName:       master,
		SentinelAddrs:    addrs,
		Username:         user,
		Password:         pass,
		SentinelUsername: user,
		SentinelPassword: pass,
	}
	for k, v := range query {
		if len(v) != 1 {
			return clientConfig{}, fmt.Errorf("redis: url %q: parameter %s given %d times", redact(raw), k, len(v))
		}
		switch k {
		case "db":
			db, err := strconv.Atoi(v[0])
			if err != nil || db < 0 {
				return clientConfig{}, fmt.Errorf("redis: url %q: db %q is not a database number", redact(raw), v[0])
			}
			o.DB = db
		case "sentinel_username":
			o.SentinelUsername = v[0]
		case "sentinel_password":
			o.SentinelPassword = v[0]
		default:
			return clientConfig{}, fmt.Errorf("redis: url %q: unknown parameter %q (want db, sentinel_username or sentinel_password)", redact(raw), k)
		}
	}
	return clientConfig{failover: o}, nil
}

// parseAddrs splits "h1:p1,h2:p2" into checked host:port pairs.
func parseAddrs(s, defPort string) ([]string, error) {
	if s == "" {
		return nil, fmt.Errorf("no host")
	}
	var addrs []string
	for _, a := range strings.Split(s, ",") {
		if a == "" {
			return nil, fmt.Errorf("empty host in list %q", s)
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			if !strings.Contains(err.Error(), "missing port") {
				return nil, fmt.Errorf("address %q: %w", a, err)
			}
			host, port = strings.Trim(a, "[]"), defPort
		}
		if host == "" {
			return nil, fmt.Errorf("address %q: no host", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("address %q: bad port %q", a, port)
		}
		addrs = append(addrs, net.JoinHostPort(host, port))
	}
	return addrs, nil
}

// redact hides a password in a URL for error messages.
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		if strings.Contains(raw, "@") {
			return "(unparsable url)"
		}
		return raw
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		end = i
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return raw
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return raw
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
