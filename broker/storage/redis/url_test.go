package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// cmpOpts compares parsed options field by field; TLS configs on the fields
// the parsers set.
var cmpOpts = []cmp.Option{
	cmp.AllowUnexported(clientConfig{}),
	cmpopts.IgnoreUnexported(goredis.Options{}, goredis.FailoverOptions{}, goredis.ClusterOptions{}),
	cmp.Comparer(func(a, b *tls.Config) bool {
		if a == nil || b == nil {
			return a == b
		}
		return a.ServerName == b.ServerName && a.MinVersion == b.MinVersion && a.InsecureSkipVerify == b.InsecureSkipVerify
	}),
}

func TestParseURL(t *testing.T) {
	tls12 := func(host string) *tls.Config { return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12} }
	tests := []struct {
		url  string
		want clientConfig
	}{
		// One node.
		{"redis://localhost:6379", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "localhost:6379"}}},
		{"redis://localhost", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "localhost:6379"}}},
		{"REDIS://Localhost", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "Localhost:6379"}}},
		{"redis://localhost/", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "localhost:6379"}}},
		{"redis://u:p%40ss@10.0.0.1:6380/3", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "10.0.0.1:6380", Username: "u", Password: "p@ss", DB: 3}}},
		{"redis://:secret@h:1/0", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "h:1", Password: "secret"}}},
		{"redis://user@h", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "h:6379", Username: "user"}}},
		{"redis://u:p@ss@h", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "h:6379", Username: "u", Password: "p@ss"}}},
		{"redis://u:a%2Fb%3Fc%23d%3Ae@h", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "h:6379", Username: "u", Password: "a/b?c#d:e"}}},
		{"redis://[::1]:7000/2", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "[::1]:7000", DB: 2}}},
		{"redis://[::1]", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "[::1]:6379"}}},
		{"redis://redis_1.internal:65535/2147483647", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "redis_1.internal:65535", DB: 2147483647}}},
		{"redis://h?db=4", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "h:6379", DB: 4}}},
		{
			"redis://h:6379/0?dial_timeout=3&read_timeout=300ms&write_timeout=1s&max_retries=-1&pool_size=20&client_name=fb&protocol=2",
			clientConfig{single: &goredis.Options{
				Network: "tcp", Addr: "h:6379", DialTimeout: 3 * time.Second, ReadTimeout: 300 * time.Millisecond,
				WriteTimeout: time.Second, MaxRetries: -1, PoolSize: 20, ClientName: "fb", Protocol: 2,
			}},
		},
		{"redis://h?read_timeout=", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "h:6379"}}},
		{"rediss://h:6380/1", clientConfig{single: &goredis.Options{Network: "tcp", Addr: "h:6380", DB: 1, TLSConfig: tls12("h")}}},
		{"rediss://u:p@h?skip_verify=true", clientConfig{single: &goredis.Options{
			Network: "tcp", Addr: "h:6379", Username: "u", Password: "p",
			TLSConfig: &tls.Config{ServerName: "h", MinVersion: tls.VersionTLS12, InsecureSkipVerify: true},
		}}},
		{"unix:///run/redis/redis.sock", clientConfig{single: &goredis.Options{Network: "unix", Addr: "/run/redis/redis.sock"}}},
		{"unix://u:p@/run/redis.sock?db=2&read_timeout=500ms", clientConfig{single: &goredis.Options{
			Network: "unix", Addr: "/run/redis.sock", Username: "u", Password: "p", DB: 2, ReadTimeout: 500 * time.Millisecond,
		}}},

		// Sentinel.
		{
			"redis-sentinel://u:pw@s1:26379,s2:26380,s3/mymaster?db=2",
			clientConfig{failover: &goredis.FailoverOptions{
				MasterName: "mymaster", SentinelAddrs: []string{"s1:26379", "s2:26380", "s3:26379"},
				Username: "u", Password: "pw", SentinelUsername: "u", SentinelPassword: "pw", DB: 2,
			}},
		},
		{
			"redis-sentinel://s1:1/m?sentinel_password=sp&sentinel_username=su",
			clientConfig{failover: &goredis.FailoverOptions{
				MasterName: "m", SentinelAddrs: []string{"s1:1"}, SentinelUsername: "su", SentinelPassword: "sp",
			}},
		},
		{
			// Credentials are text, never range-checked like numbers.
			"redis-sentinel://s1:1/m?sentinel_password=99999999999999999999&client_name=12345678901",
			clientConfig{failover: &goredis.FailoverOptions{
				MasterName: "m", SentinelAddrs: []string{"s1:1"}, SentinelPassword: "99999999999999999999", ClientName: "12345678901",
			}},
		},
		{
			// An empty sentinel_password reaches the sentinels without one.
			"redis-sentinel://u:pw@s1/m?sentinel_password=",
			clientConfig{failover: &goredis.FailoverOptions{
				MasterName: "m", SentinelAddrs: []string{"s1:26379"}, Username: "u", Password: "pw", SentinelUsername: "u",
			}},
		},
		{
			"redis-sentinel://[::1],[::2]:26380/my%20master?dial_timeout=1s&read_timeout=200ms&write_timeout=250ms&max_retries=2&sentinel_password=a%26b",
			clientConfig{failover: &goredis.FailoverOptions{
				MasterName: "my master", SentinelAddrs: []string{"[::1]:26379", "[::2]:26380"}, SentinelPassword: "a&b",
				DialTimeout: time.Second, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 250 * time.Millisecond, MaxRetries: 2,
			}},
		},

		// Cluster.
		{
			"redis-cluster://u:p@n1:7000,n2:7001,[::1]:7002",
			clientConfig{cluster: &goredis.ClusterOptions{Addrs: []string{"n1:7000", "n2:7001", "[::1]:7002"}, Username: "u", Password: "p"}},
		},
		{"redis-cluster://n1/", clientConfig{cluster: &goredis.ClusterOptions{Addrs: []string{"n1:6379"}}}},
		{
			"redis-cluster://n1,n2?dial_timeout=2s&read_timeout=300ms&write_timeout=300ms&max_retries=1&max_redirects=5&pool_size=8",
			clientConfig{cluster: &goredis.ClusterOptions{
				Addrs: []string{"n1:6379", "n2:6379"}, DialTimeout: 2 * time.Second, ReadTimeout: 300 * time.Millisecond,
				WriteTimeout: 300 * time.Millisecond, MaxRetries: 1, MaxRedirects: 5, PoolSize: 8,
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got, err := parseURL(tc.url)
			if err != nil {
				t.Fatalf("parseURL(%q) = %v", tc.url, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpOpts...); diff != "" {
				t.Errorf("parseURL(%q) mismatch (-want +got):\n%s", tc.url, diff)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct{ url, want string }{
		// Shape and scheme.
		{"", "url is empty"},
		{"localhost:6379", "no scheme"},
		{"redis:/h", "no scheme"},
		{"//h:1", "no scheme"},
		{"://h:1", "malformed scheme"},
		{"r@dis://h:1", "malformed scheme"},
		{"http://h:1", `unsupported scheme "http"`},
		{"memcache://h", `unsupported scheme "memcache"`},
		{"redis+sentinel://h/m", `unsupported scheme "redis+sentinel"`},
		{"rediss-cluster://h", `unsupported scheme "rediss-cluster"`},
		{"redis://h:1\n", "control character"},
		{"redis://h :1", "control character"},
		{"redis://h:1/0#frag", "fragment"},

		// Hosts and ports.
		{"redis://", "no host"},
		{"redis:///0", "no host"},
		{"redis://:6379", "no host name"},
		{"redis://u:p@", "no host"},
		{"redis://h:99999", `port "99999" is not a number from 1 to 65535`},
		{"redis://h:0", `port "0"`},
		{"redis://h:-1", `port "-1"`},
		{"redis://h:", `port ""`},
		{"redis://h:abc", `port "abc"`},
		{"redis://h:+80", `port "+80"`},
		{"redis://h%41:1", "want a host name"},
		{"redis://h!:1", "want a host name"},
		{"redis://" + strings.Repeat("a", 254), "want a host name"},
		{"redis://::1", "brackets"},
		{"redis://[::1", "missing ']'"},
		{"redis://[1.2.3.4]:1", "not an IPv6 address"},
		{"redis://[fe80::1%25eth0]:1", "not an IPv6 address"},
		{"redis://[::1]x", "after ']'"},
		{"redis://a:1,b:2", "takes one host"},
		{"rediss://a,b", "takes one host"},
		{"unix://h/run/redis.sock", "not a host"},
		{"unix://", "no socket path"},
		{"unix:///", "no socket path"},

		// Database.
		{"redis://h:1/notanumber", "invalid database number"},
		{"redis://h:1/1/2", "invalid URL path"},
		{"redis://h/-1", "database number -1 out of range"},
		{"redis://h/2147483648", "database number 2147483648 out of range"},
		{"redis://h/99999999999999999999", "invalid database number"},
		{"redis://h?db=x", "invalid database number"},
		{"redis://h?db=99999999999", `option "db" is out of range`},
		{"redis://h/1?db=2", "both in the path and as db="},
		{"redis-sentinel://s1/m?db=x", "invalid database number"},
		{"redis-sentinel://s1/m?db=-1", "out of range"},
		{"redis-sentinel://s1/m?db=1&db=2", `option "db" given 2 times`},

		// Options.
		{"redis://h?pool_sise=10", "unexpected option: pool_sise"},
		{"redis://h?read_timeout=fast", "invalid read_timeout duration"},
		{"redis://h?read_timeout=0", "read_timeout must be positive"},
		{"redis://h?dial_timeout=-1s", "dial_timeout must be positive"},
		{"redis://h?write_timeout=-3", "write_timeout must be positive"},
		{"redis://h?read_timeout=1s&read_timeout=2s", `option "read_timeout" given 2 times`},
		{"redis://h?dial_timeout=9999999999999", `option "dial_timeout" is out of range`},
		{"redis://h?pool_size=3000000000", `option "pool_size" is out of range`},
		{"redis://h?max_retries=-3000000000", `option "max_retries" is out of range`},
		{"redis://h?pool_fifo=maybe", "invalid pool_fifo boolean"},
		{"redis://h?skip_verify=true", "unexpected option: skip_verify"},
		{"redis://h?password=x", `option "password" is not allowed`},
		{"redis://h?username=x", `option "username" is not allowed`},
		{"redis://h?addr=h2:1", "unexpected option: addr"},
		{"redis://h?a=1;b=2", "malformed query"},
		{"redis://h?a=%zz", "malformed query"},
		{"redis://h/%zz", "malformed percent-encoding"},
		{"redis://u:p%zz@h", "malformed user info"},
		{"redis://u:p@h/0?client_name=a@b", "'@' after the host"},

		// Sentinel.
		{"redis-sentinel://s1:1", "master name"},
		{"redis-sentinel://s1:1/", "master name"},
		{"redis-sentinel://s1:1/a/b", "master name"},
		{"redis-sentinel://s1:1/a%2Fb", "master name"},
		{"redis-sentinel:///m", "no host"},
		{"redis-sentinel://s1:1,,s2:2/m", "no host"},
		{"redis-sentinel://s1:1,/m", "no host"},
		{"redis-sentinel://s1:port/m", `port "port"`},
		{"redis-sentinel://s1:0/m", `port "0"`},
		{"redis-sentinel://:1/m", "no host name"},
		{"redis-sentinel://s1/m?tls=true", "unexpected option: tls"},
		{"redis-sentinel://s1/m?skip_verify=true", "unexpected option: skip_verify"},
		{"redis-sentinel://s1/m?master_name=x", `option "master_name" is not allowed: the master name is the URL path`},
		{"redis-sentinel://s1/m?addr=s2:1", `option "addr" is not allowed`},
		{"redis-sentinel://s1/m?password=x", `option "password" is not allowed`},
		{"redis-sentinel://s1/m?replica_only=true", `option "replica_only" is not allowed: it would send reads to replicas`},
		{"redis-sentinel://s1/m?use_disconnected_replicas=true", `option "use_disconnected_replicas" is not allowed`},
		{"redis-sentinel://s1/m?route_by_latency=true", `option "route_by_latency" is not allowed`},
		{"redis-sentinel://s1/m?route_randomly=true", `option "route_randomly" is not allowed`},
		{"redis-sentinel://s1/m?read_timeout=0", "read_timeout must be positive"},
		{"redis-sentinel://s1/m?sentinel_password=a&sentinel_password=b", `option "sentinel_password" given 2 times`},

		// Cluster.
		{"redis-cluster://", "no host"},
		{"redis-cluster://n1:1/2", "no path"},
		{"redis-cluster://n1:1?db=1", `option "db" is not allowed: a cluster has only database 0`},
		{"redis-cluster://n1:70000", `port "70000"`},
		{"redis-cluster://u:p%zz@n1:1", "malformed user info"},
		{"redis-cluster://[::1:1", "missing ']'"},
		{"redis-cluster://n1?addr=n2:1", `option "addr" is not allowed`},
		{"redis-cluster://n1?read_only=true", `option "read_only" is not allowed: it would send reads to replicas`},
		{"redis-cluster://n1?route_by_latency=1", `option "route_by_latency" is not allowed`},
		{"redis-cluster://n1?route_randomly=true", `option "route_randomly" is not allowed`},
		{"redis-cluster://n1?sentinel_password=x", "unexpected option: sentinel_password"},
		{"redis-cluster://n1?write_timeout=-1", "write_timeout must be positive"},
		{"redis-cluster://n1?pool_size=x", "invalid pool_size number"},
		{"redis-cluster://n1?bogus=1", "unexpected option: bogus"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got, err := parseURL(tc.url)
			if err == nil {
				t.Fatalf("parseURL(%q) = %+v, nil; want an error containing %q", tc.url, got, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseURL(%q) error = %q, want it to contain %q", tc.url, err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "redis: url") {
				t.Errorf("parseURL(%q) error = %q, want it to start with \"redis: url\"", tc.url, err)
			}
		})
	}
}

// TestParseURLErrorsHidePassword tries URLs that fail for many reasons, with
// credentials written correctly and incorrectly, and checks that no error
// shows any part of the password.
func TestParseURLErrorsHidePassword(t *testing.T) {
	const pw = "Hunter2Secret"
	for _, u := range []string{
		"redis-sentinel://user:Hunter2Secret@s1:1",
		"redis-sentinel://user:Hunter2Secret@s1:1/m?tls=1",
		"redis-sentinel://s1:1/m?sentinel_password=Hunter2Secret&bogus=1",
		"redis-sentinel://s1:1/m?sentinel_password=Hunter2Secret&sentinel_password=x",
		"redis-sentinel://s1:1/m?sentinel_password=Hunter2Secret%zz",
		"redis-sentinel://s1:1/m?password=Hunter2Secret",
		"redis-cluster://user:Hunter2Secret@n1:1/x",
		"redis-cluster://user:Hunter2Secret@n1:99999",
		"redis-cluster://user:Hunter2Secret@n1?db=1",
		"redis://user:Hunter2Secret@h:1/zz",
		"redis://user:Hunter2Secret@h:1/%zz",
		"redis://user:Hunter2Secret@h:99999",
		"redis://user:Hunter2Secret@h:1?pool_size=x",
		"redis://user:Hunter2Secret@h:1?read_timeout=0",
		"redis://user:Hunter2Secret%zz@h:1",
		"redis://user:Hunter2Secret@h:1#frag",
		"redis://Hunter2Secret@h:1/x",
		"rediss://:Hunter2Secret@h:1,h2:2",
		"unix://:Hunter2Secret@host/sock",
		"ftp://user:Hunter2Secret@h",
		"Hunter2Secret",
		"user:Hunter2Secret@h:1",
		"redis:user:Hunter2Secret@h",
		// Unencoded '/', '?' or '#' in the password end the authority early.
		"redis://user:Hunt/er2Secret@h:1",
		"redis://user:Hunter2Secret/x@h:1",
		"redis://user:Hunter2Secret?x@h:1",
		"redis://user:Hunter2Secret#x@h:1",
		"redis-sentinel://user:Hunter2Secret/@s1,s2/m",
		"redis-cluster://user:Hunter2Secret?a=b@n1,n2",
		"redis://user:Hunter2Secret:x/@h",
		"redis://user:Hunter2Secret\n@h",
	} {
		_, err := parseURL(u)
		if err == nil {
			t.Errorf("parseURL(%q) = nil error, want one", u)
			continue
		}
		if leaks(err.Error(), pw) {
			t.Errorf("parseURL(%q) error %q shows part of the password", u, err)
		}
	}
}

// leaks reports whether msg holds four or more consecutive characters of pw.
func leaks(msg, pw string) bool {
	for i := 0; i+4 <= len(pw); i++ {
		if strings.Contains(msg, pw[i:i+4]) {
			return true
		}
	}
	return false
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"redis://u:p@h:1/0?read_timeout=1s", "rediss://h", "unix:///tmp/r.sock?db=1",
		"redis-sentinel://u:p@s1,s2:2/m?db=1&sentinel_password=x", "redis-cluster://n1,[::1]:2?pool_size=3",
		"redis://u:p/q@h", "redis-cluster://[", "redis://h?dial_timeout=99999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := parseURL(raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "redis: url") {
				t.Errorf("parseURL(%q) error %q does not start with \"redis: url\"", raw, err)
			}
			return
		}
		n := 0
		for _, set := range []bool{c.single != nil, c.failover != nil, c.cluster != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("parseURL(%q) = %+v: want exactly one option set", raw, c)
		}
		// Building the client must not panic (go-redis panics on some
		// option values). Nothing may reach the network.
		noDial := func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("fuzz: no dialing") }
		switch {
		case c.single != nil:
			c.single.Dialer, c.single.MinIdleConns = noDial, 0
		case c.failover != nil:
			c.failover.Dialer, c.failover.MinIdleConns = noDial, 0
		default:
			c.cluster.Dialer, c.cluster.MinIdleConns = noDial, 0
		}
		if err := c.newClient().Close(); err != nil {
			t.Logf("Close: %v", err)
		}
	})
}

// FuzzParseURLPassword puts a password, written any way, into URLs that
// may fail and checks that the error never shows it.
func FuzzParseURLPassword(f *testing.F) {
	f.Add(0, "pass/word", "h:1", "/0?x=1")
	f.Add(3, "p?w", "s1,s2", "/m?db=x")
	f.Add(4, "p#w", "n1:99999", "")
	f.Fuzz(func(t *testing.T, scheme int, pass, hosts, tail string) {
		schemes := []string{"redis", "rediss", "unix", "redis-sentinel", "redis-cluster", "http"}
		const mark = "Zq"
		if strings.Contains(hosts+tail, mark) {
			return
		}
		pw := mark + pass + mark
		raw := schemes[uint(scheme)%uint(len(schemes))] + "://user:" + pw + "@" + hosts + tail
		_, err := parseURL(raw)
		if err != nil && strings.Contains(err.Error(), mark) {
			t.Errorf("parseURL(%q) error %q shows part of the password", raw, err)
		}
	})
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		url               string
		dial, read, write time.Duration
		retries           int
	}{
		{"redis://h", 2 * time.Second, time.Second, time.Second, 1},
		{"unix:///s", 2 * time.Second, time.Second, time.Second, 1},
		{"redis://h?dial_timeout=5s&read_timeout=300ms&write_timeout=400ms&max_retries=-1", 5 * time.Second, 300 * time.Millisecond, 400 * time.Millisecond, -1},
		{"redis://h?read_timeout=300ms", 2 * time.Second, 300 * time.Millisecond, time.Second, 1},
		{"redis://h?max_retries=0", 2 * time.Second, time.Second, time.Second, 1},
		{"redis-sentinel://s/m", 2 * time.Second, time.Second, time.Second, 1},
		{"redis-sentinel://s/m?dial_timeout=3s&read_timeout=2s&write_timeout=250ms&max_retries=4", 3 * time.Second, 2 * time.Second, 250 * time.Millisecond, 4},
		{"redis-cluster://n1,n2", 2 * time.Second, time.Second, time.Second, 1},
		{"redis-cluster://n1,n2?dial_timeout=3s&read_timeout=2s&write_timeout=250ms&max_retries=-1", 3 * time.Second, 2 * time.Second, 250 * time.Millisecond, -1},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			c, err := parseURL(tc.url)
			if err != nil {
				t.Fatalf("parseURL(%q) = %v", tc.url, err)
			}
			c = c.withDefaults()
			var got [3]time.Duration
			var retries int
			switch {
			case c.single != nil:
				got, retries = [3]time.Duration{c.single.DialTimeout, c.single.ReadTimeout, c.single.WriteTimeout}, c.single.MaxRetries
			case c.failover != nil:
				got, retries = [3]time.Duration{c.failover.DialTimeout, c.failover.ReadTimeout, c.failover.WriteTimeout}, c.failover.MaxRetries
			default:
				got, retries = [3]time.Duration{c.cluster.DialTimeout, c.cluster.ReadTimeout, c.cluster.WriteTimeout}, c.cluster.MaxRetries
			}
			if want := [3]time.Duration{tc.dial, tc.read, tc.write}; got != want || retries != tc.retries {
				t.Errorf("timeouts (dial, read, write), retries = %v, %d; want %v, %d", got, retries, want, tc.retries)
			}
		})
	}
}

// TestOpenURLForms opens real servers through the URL forms that a single
// redis-server can answer: TCP with options, a unix socket, and a cluster
// URL with timeouts.
func TestOpenURLForms(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	srv := redistest.StartServer(t, "--unixsocket", sock, "--unixsocketperm", "700")
	for _, tc := range []struct {
		url  string
		want goredis.Options // compared on the fields below
	}{
		{
			"redis://" + srv.Addr() + "/1?dial_timeout=1s&read_timeout=500ms&write_timeout=400ms&max_retries=2",
			goredis.Options{Network: "tcp", Addr: srv.Addr(), DB: 1, DialTimeout: time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 400 * time.Millisecond, MaxRetries: 2},
		},
		{
			"unix://" + sock + "?db=2&read_timeout=500ms",
			goredis.Options{Network: "unix", Addr: sock, DB: 2, DialTimeout: 2 * time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: time.Second, MaxRetries: 1},
		},
	} {
		s, err := Open(context.Background(), tc.url, Options{})
		if err != nil {
			t.Fatalf("Open(%q) = %v", tc.url, err)
		}
		o := s.c.(*goredis.Client).Options()
		got := goredis.Options{Network: o.Network, Addr: o.Addr, DB: o.DB, DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, MaxRetries: o.MaxRetries}
		if diff := cmp.Diff(tc.want, got, cmpOpts...); diff != "" {
			t.Errorf("Open(%q) options mismatch (-want +got):\n%s", tc.url, diff)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	// A wrong password is refused by the server, not shown.
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.ConfigSet(context.Background(), "requirepass", "right").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), "redis://default:Hunter2Secret@"+srv.Addr(), Options{})
	if err == nil {
		t.Fatalf("Open with a password the server does not know = nil error")
	}
	if leaks(err.Error(), "Hunter2Secret") {
		t.Errorf("Open error %q shows part of the password", err)
	}
}

// startOneNodeCluster starts a redis-server in cluster mode (with extra
// arguments) that holds every slot, and waits until the cluster is ok.
func startOneNodeCluster(t *testing.T, args ...string) *redistest.Server {
	t.Helper()
	srv := redistest.StartServer(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"}, args...)...)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	slots := make([]int, 16384)
	for i := range slots {
		slots[i] = i
	}
	if err := c.ClusterAddSlots(ctx, slots...).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTS: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return srv
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not become ready: %q, %v", info, err)
		}
	}
}

// TestOpenClusterURLTimeouts opens a one-node Redis Cluster through
// redis-cluster:// URLs with and without timeouts and checks the options the
// client really runs with.
func TestOpenClusterURLTimeouts(t *testing.T) {
	srv := startOneNodeCluster(t)
	ctx := context.Background()
	for _, tc := range []struct {
		query             string
		dial, read, write time.Duration
		retries           int
	}{
		{"", 2 * time.Second, time.Second, time.Second, 1},
		{"?dial_timeout=1500ms&read_timeout=400ms&write_timeout=300ms&max_retries=2", 1500 * time.Millisecond, 400 * time.Millisecond, 300 * time.Millisecond, 2},
	} {
		u := "redis-cluster://" + srv.Addr() + tc.query
		s, err := Open(ctx, u, Options{})
		if err != nil {
			t.Fatalf("Open(%q) = %v", u, err)
		}
		cc, ok := s.c.(*goredis.ClusterClient)
		if !ok {
			t.Fatalf("Open(%q) client is %T, want *redis.ClusterClient", u, s.c)
		}
		o := cc.Options()
		got := [3]time.Duration{o.DialTimeout, o.ReadTimeout, o.WriteTimeout}
		if want := [3]time.Duration{tc.dial, tc.read, tc.write}; got != want || o.MaxRetries != tc.retries {
			t.Errorf("Open(%q): timeouts (dial, read, write), retries = %v, %d; want %v, %d", u, got, o.MaxRetries, want, tc.retries)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// TestOpenSentinelURL opens a store through a real sentinel whose host list
// also names a dead sentinel. The master and the sentinel want different
// passwords: the user info has the master's, sentinel_password the
// sentinel's.
func TestOpenSentinelURL(t *testing.T) {
	ctx := context.Background()
	master := redistest.StartServer(t)
	mc := goredis.NewClient(&goredis.Options{Addr: master.Addr()})
	defer mc.Close()
	if err := mc.ConfigSet(ctx, "requirepass", "m4ster").Err(); err != nil {
		t.Fatal(err)
	}
	sentinel := startSentinel(t, master.Addr(), "m4ster", "s3ntinel")

	u := "redis-sentinel://:m4ster@127.0.0.1:1," + sentinel + "/mymaster?db=3&read_timeout=500ms&sentinel_password=s3ntinel"
	s, err := Open(ctx, u, Options{})
	if err != nil {
		t.Fatalf("Open(%q) = %v", u, err)
	}
	defer s.Close()
	o := s.c.(*goredis.Client).Options()
	if o.DB != 3 || o.ReadTimeout != 500*time.Millisecond || o.WriteTimeout != time.Second || o.DialTimeout != 2*time.Second || o.MaxRetries != 1 {
		t.Errorf("Open(%q) options: DB %d, timeouts (dial, read, write) %v %v %v, retries %d; want 3, 2s 500ms 1s, 1",
			u, o.DB, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries)
	}
	if err := s.c.Set(ctx, "via-sentinel", "yes", 0).Err(); err != nil {
		t.Fatalf("SET through the sentinel: %v", err)
	}
	direct := goredis.NewClient(&goredis.Options{Addr: master.Addr(), Password: "m4ster", DB: 3})
	defer direct.Close()
	if got, err := direct.Get(ctx, "via-sentinel").Result(); err != nil || got != "yes" {
		t.Errorf("GET on the master's database 3 = %q, %v; want \"yes\"", got, err)
	}
}

// startSentinel starts a sentinel, with password pass, watching the master
// at addr as "mymaster" and returns its address once it knows the master.
func startSentinel(t *testing.T, master, masterPass, pass string) string {
	t.Helper()
	bin := redistest.Binary(t, "redis-server")
	host, port, _ := strings.Cut(master, ":")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, sport, _ := strings.Cut(addr, ":")
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nprotected-mode no\nsentinel monitor mymaster %s %s 1\nsentinel auth-pass mymaster %s\nsentinel down-after-milliseconds mymaster 2000\nrequirepass %s\n",
		sport, dir, host, port, masterPass, pass)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := goredis.NewSentinelClient(&goredis.Options{Addr: addr, Password: pass})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		got, err := c.GetMasterAddrByName(ctx, "mymaster").Result()
		if err == nil && len(got) == 2 && got[1] == port {
			return addr
		}
		if ctx.Err() != nil {
			t.Fatalf("sentinel on %s does not know the master: %v, %v\n%s", addr, got, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestParseURLCommonOptions checks that every form takes the options the
// operations guide lists for all of them.
func TestParseURLCommonOptions(t *testing.T) {
	const common = "dial_timeout=1s&read_timeout=1&write_timeout=1s&max_retries=2&min_retry_backoff=10ms&max_retry_backoff=100ms" +
		"&pool_size=5&pool_timeout=2s&min_idle_conns=1&max_idle_conns=3&max_active_conns=9&conn_max_idle_time=1m&conn_max_lifetime=1h" +
		"&client_name=fb&protocol=3"
	for _, u := range []string{
		"redis://h/0?" + common,
		"rediss://h?" + common,
		"unix:///s?" + common,
		"redis-sentinel://s/m?" + common,
		"redis-cluster://n1,n2?max_redirects=4&" + common,
	} {
		if _, err := parseURL(u); err != nil {
			t.Errorf("parseURL(%q) = %v", u, err)
		}
	}
}
