package config

import (
	"errors"
	"testing"
	"time"
)

// TestDeviceSettings: the device: section has defaults, accepts its three
// settings, and refuses each bad value at its YAML path.
func TestDeviceSettings(t *testing.T) {
	const iss = "issuer: https://sso.example.com\n"
	cfg, err := Parse([]byte(iss), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Device; d.Lifetime() != DefaultDeviceCodeLifetime || d.Interval() != DefaultDeviceInterval || d.Attempts() != DefaultDeviceUserCodeAttempts {
		t.Errorf("defaults = %s %s %+v", d.Lifetime(), d.Interval(), d.Attempts())
	}
	cfg, err = Parse([]byte(iss+"device: {code_lifetime: 15m, interval: 3s, user_code_attempts: {burst: 5, every: 1m}}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Device; d.Lifetime() != 15*time.Minute || d.Interval() != 3*time.Second || d.Attempts() != (RateLimit{Burst: 5, Every: time.Minute}) {
		t.Errorf("set = %s %s %+v", d.Lifetime(), d.Interval(), d.Attempts())
	}
	for _, tc := range []struct{ yml, path string }{
		{"{code_lifetime: -1m}", "device.code_lifetime"},
		{"{code_lifetime: 30s}", "device.code_lifetime"},
		{"{code_lifetime: 2h}", "device.code_lifetime"},
		{"{interval: 0s}", "device.interval"},
		{"{interval: 1500ms}", "device.interval"},
		{"{interval: 2m}", "device.interval"},
		{"{code_lifetime: 2m, interval: 60s}", "device.interval"},
		{"{user_code_attempts: {burst: 0, every: 1m}}", "device.user_code_attempts.burst"},
		{"{user_code_attempts: {burst: 5}}", "device.user_code_attempts.every"},
		{"{user_code_attempts: {burst: 5, every: -1s}}", "device.user_code_attempts.every"},
		{"{unknown: 1}", "device.unknown"},
	} {
		_, err := Parse([]byte(iss+"device: "+tc.yml+"\n"), noEnv)
		var ps Errors
		if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != tc.path {
			t.Errorf("device %s: err = %v, want one problem at %s", tc.yml, err, tc.path)
		}
	}
}

// TestDeviceGrantType: a client, public or confidential, may list the
// device code grant; it needs no redirect URI.
func TestDeviceGrantType(t *testing.T) {
	yml := `issuer: https://sso.example.com
clients:
  - id: cli
    public: true
    grant_types: [urn:ietf:params:oauth:grant-type:device_code, refresh_token]
`
	cfg, err := Parse([]byte(yml), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Clients[0].GrantTypes; len(g) != 2 || g[0] != GrantDeviceCode {
		t.Errorf("grant_types = %v", g)
	}
}

// TestDiffDevice: a change of the device section is reported with its
// path (it takes a restart: the section is not reloadable).
func TestDiffDevice(t *testing.T) {
	old, err := Parse([]byte("issuer: https://sso.example.com\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	next, err := Parse([]byte("issuer: https://sso.example.com\ndevice: {interval: 10s}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	d := Diff(old, next)
	if len(d) != 1 || d[0].Path != "device.interval" || d[0].Section() != "device" {
		t.Errorf("Diff = %v", d)
	}
}
