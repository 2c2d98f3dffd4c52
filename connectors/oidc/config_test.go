package oidc

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func TestValidate(t *testing.T) {
	good := Config{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s"}
	tests := []struct {
		name  string
		mod   func(*Config)
		paths []string
	}{
		{"good", func(*Config) {}, nil},
		{"loopback http", func(c *Config) { c.Issuer = "http://127.0.0.1:8080" }, nil},
		{"loopback http, another address", func(c *Config) { c.Issuer = "http://127.0.0.2:8080" }, nil},
		{"loopback http, localhost", func(c *Config) { c.Issuer = "http://localhost:8080" }, nil},
		{"http to a name ending in localhost", func(c *Config) { c.Issuer = "http://localhost.evil.example" }, []string{"issuer"}},
		{"empty", func(c *Config) { *c = Config{} }, []string{"issuer", "client_id", "client_secret"}},
		{"http issuer", func(c *Config) { c.Issuer = "http://idp.example" }, []string{"issuer"}},
		{"relative issuer", func(c *Config) { c.Issuer = "/idp" }, []string{"issuer"}},
		{"bad scope and algs", func(c *Config) {
			c.Scopes = []string{"openid", "a b"}
			c.AllowedAlgorithms = []string{"RS256", "HS256", "none"}
		}, []string{"scopes[1]", "allowed_algorithms[1]", "allowed_algorithms[2]"}},
		{"timeouts", func(c *Config) { c.Timeout = time.Nanosecond; c.KeyRefreshInterval = -1 }, []string{"timeout", "key_refresh_interval"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			var paths []string
			for _, e := range c.Validate() {
				paths = append(paths, e.Path)
			}
			if diff := cmp.Diff(tt.paths, paths); diff != "" {
				t.Errorf("Validate() paths (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
issuer: https://idp.example
client_id: c
client_secret: s
scopes: [openid, email, groups]
allowed_algorithms: [ES256]
userinfo: true
offline_access: false
timeout: 5s
`
	var c Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	off := false
	want := Config{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s", Scopes: []string{"openid", "email", "groups"},
		AllowedAlgorithms: []string{"ES256"}, UserInfo: true, OfflineAccess: &off, Timeout: 5 * time.Second}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("yaml decode (-want +got):\n%s", diff)
	}
	d := Config{}.withDefaults()
	if !*d.OfflineAccess || d.Timeout != DefaultTimeout || !cmp.Equal(d.Scopes, DefaultScopes) || !cmp.Equal(d.AllowedAlgorithms, DefaultAlgorithms) {
		t.Errorf("withDefaults() = %+v", d)
	}
}
