package redis

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	goredis "github.com/redis/go-redis/v9"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url      string
		single   *goredis.Options // compared on Addr, Username, Password, DB, TLS
		failover *goredis.FailoverOptions
		cluster  *goredis.ClusterOptions
	}{
		{url: "redis://localhost:6379", single: &goredis.Options{Addr: "localhost:6379"}},
		{url: "redis://localhost", single: &goredis.Options{Addr: "localhost:6379"}},
		{url: "redis://u:p%40ss@10.0.0.1:6380/3", single: &goredis.Options{Addr: "10.0.0.1:6380", Username: "u", Password: "p@ss", DB: 3}},
		{url: "redis://:secret@h:1/0", single: &goredis.Options{Addr: "h:1", Password: "secret"}},
		{url: "rediss://h:6380/1", single: &goredis.Options{Addr: "h:6380", DB: 1}},
		{
			url: "redis-sentinel://u:pw@s1:26379,s2:26380,s3/mymaster?db=2",
			failover: &goredis.FailoverOptions{
				MasterName: "mymaster", SentinelAddrs: []string{"s1:26379", "s2:26380", "s3:26379"},
				Username: "u", Password: "pw", SentinelUsername: "u", SentinelPassword: "pw", DB: 2,
			},
		},
		{
			url: "redis-sentinel://s1:1/m?sentinel_password=sp&sentinel_username=su",
			failover: &goredis.FailoverOptions{
				MasterName: "m", SentinelAddrs: []string{"s1:1"}, SentinelUsername: "su", SentinelPassword: "sp",
			},
		},
		{
			url:     "redis-cluster://u:p@n1:7000,n2:7001,[::1]:7002",
			cluster: &goredis.ClusterOptions{Addrs: []string{"n1:7000", "n2:7001", "[::1]:7002"}, Username: "u", Password: "p"},
		},
		{url: "redis-cluster://n1/", cluster: &goredis.ClusterOptions{Addrs: []string{"n1:6379"}}},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got, err := parseURL(tc.url)
			if err != nil {
				t.Fatalf("parseURL(%q) = %v", tc.url, err)
			}
			switch {
			case tc.single != nil:
				if got.single == nil {
					t.Fatalf("parseURL(%q) = %+v, want single-server options", tc.url, got)
				}
				g := got.single
				gotS := goredis.Options{Addr: g.Addr, Username: g.Username, Password: g.Password, DB: g.DB}
				if diff := cmp.Diff(*tc.single, gotS, cmp.AllowUnexported(goredis.Options{})); diff != "" {
					t.Errorf("parseURL(%q) mismatch (-want +got):\n%s", tc.url, diff)
				}
				if wantTLS := strings.HasPrefix(tc.url, "rediss:"); (g.TLSConfig != nil) != wantTLS {
					t.Errorf("parseURL(%q) TLS = %v, want %v", tc.url, g.TLSConfig != nil, wantTLS)
				}
			case tc.failover != nil:
				if got.failover == nil {
					t.Fatalf("parseURL(%q) = %+v, want failover options", tc.url, got)
				}
				if diff := cmp.Diff(tc.failover, got.failover, cmp.AllowUnexported(goredis.FailoverOptions{})); diff != "" {
					t.Errorf("parseURL(%q) mismatch (-want +got):\n%s", tc.url, diff)
				}
			default:
				if got.cluster == nil {
					t.Fatalf("parseURL(%q) = %+v, want cluster options", tc.url, got)
				}
				if diff := cmp.Diff(tc.cluster, got.cluster, cmp.AllowUnexported(goredis.ClusterOptions{})); diff != "" {
					t.Errorf("parseURL(%q) mismatch (-want +got):\n%s", tc.url, diff)
				}
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct{ url, want string }{
		{"", "missing scheme"},
		{"localhost:6379", "missing scheme"},
		{"http://h:1", "unsupported scheme"},
		{"memcache://h", "unsupported scheme"},
		{"redis://h:1/notanumber", "redis: url"},
		{"redis://h:99999", "redis: url"},
		{"redis-sentinel://s1:1", "master name"},
		{"redis-sentinel://s1:1/", "master name"},
		{"redis-sentinel://s1:1/a/b", "master name"},
		{"redis-sentinel:///m", "no host"},
		{"redis-sentinel://s1:1,,s2:2/m", "empty host"},
		{"redis-sentinel://s1:1/m?db=x", "not a database number"},
		{"redis-sentinel://s1:1/m?db=-1", "not a database number"},
		{"redis-sentinel://s1:1/m?db=1&db=2", "given 2 times"},
		{"redis-sentinel://s1:1/m?tls=true", "unknown parameter"},
		{"redis-sentinel://s1:port/m", "bad port"},
		{"redis-sentinel://s1:0/m", "bad port"},
		{"redis-sentinel://:1/m", "no host"},
		{"redis-cluster://", "no host"},
		{"redis-cluster://n1:1/2", "no path"},
		{"redis-cluster://n1:1?db=1", "no query"},
		{"redis-cluster://n1:70000", "bad port"},
		{"redis-cluster://u:p%zz@n1:1", "password"},
		{"redis-cluster://[::1:1", "address"},
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
		})
	}
}

func TestParseURLErrorsHidePassword(t *testing.T) {
	for _, u := range []string{
		"redis-sentinel://user:hunter2@s1:1",
		"redis-cluster://user:hunter2@n1:1/x",
		"redis://user:hunter2@h:1/zz",
		"redis://user:hunter2@h:1/%zz",
		"redis://user:hunter2@h:99999",
		"redis://user:hunter2@h:1?pool_size=x",
		"ftp://user:hunter2@h",
	} {
		_, err := parseURL(u)
		if err == nil {
			t.Fatalf("parseURL(%q) = nil error, want one", u)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("parseURL(%q) error %q shows the password", u, err)
		}
	}
}
