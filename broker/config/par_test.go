package config

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestPARConfig: par and clients[].require_pushed_authorization_requests
// are read, the lifetime's default is applied by its accessor, and every
// bad value is named by its YAML path.
func TestPARConfig(t *testing.T) {
	const iss = "issuer: https://sso.example.com\n"
	const client = "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], %s}\n"
	tests := []struct {
		name string
		yml  string
		want []string
	}{
		{"defaults", iss, nil},
		{"all set", iss + "par: {request_lifetime: 90s, require: true}\n", nil},
		{"the longest lifetime", iss + "par: {request_lifetime: 10m}\n", nil},
		{"the shortest lifetime", iss + "par: {request_lifetime: 1s}\n", nil},
		{"zero lifetime", iss + "par: {request_lifetime: 0s}\n", []string{"par.request_lifetime"}},
		{"negative lifetime", iss + "par: {request_lifetime: -1m}\n", []string{"par.request_lifetime"}},
		{"lifetime too long", iss + "par: {request_lifetime: 601s}\n", []string{"par.request_lifetime"}},
		{"fractional lifetime", iss + "par: {request_lifetime: 1500ms}\n", []string{"par.request_lifetime"}},
		{"lifetime not a duration", iss + "par: {request_lifetime: soon}\n", []string{"par.request_lifetime"}},
		{"require not a bool", iss + "par: {require: maybe}\n", []string{"par.require"}},
		{"unknown key", iss + "par: {lifetime: 60s}\n", []string{"par.lifetime"}},
		{"client requires PAR", iss + fmt.Sprintf(client, "require_pushed_authorization_requests: true"), nil},
		{"client requirement not a bool", iss + fmt.Sprintf(client, "require_pushed_authorization_requests: often"), []string{"clients[0].require_pushed_authorization_requests"}},
		{"client requires PAR without the code flow", iss + fmt.Sprintf(client, "grant_types: [refresh_token], require_pushed_authorization_requests: true"), []string{"clients[0].require_pushed_authorization_requests"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(fill(tt.yml), noEnv)
			if tt.want == nil {
				if err != nil || cfg == nil {
					t.Fatalf("Parse = %v, want a configuration", err)
				}
				return
			}
			if diff := cmp.Diff(tt.want, paths(t, err)); diff != "" {
				t.Errorf("problem paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
	cfg, err := Parse(fill(iss+"par: {request_lifetime: 90s, require: true}\n"+fmt.Sprintf(client, "require_pushed_authorization_requests: true")), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.PAR; p.Lifetime() != 90*time.Second || !p.Require || !cfg.Clients[0].RequirePushedAuthorizationRequests {
		t.Errorf("par = %+v (lifetime %s), client requires PAR %v", p, p.Lifetime(), cfg.Clients[0].RequirePushedAuthorizationRequests)
	}
	if p := (PAR{}); p.Require || p.Lifetime() != DefaultPARRequestLifetime || DefaultPARRequestLifetime != time.Minute {
		t.Errorf("zero PAR = require %v, lifetime %s; want off and one minute", p.Require, p.Lifetime())
	}
}

// TestPARDiff: a change of the par section is reported under its own
// section, and a client's requirement under clients: the broker applies
// both on reload.
func TestPARDiff(t *testing.T) {
	old := parseDiffConfig(t, diffBase)
	y := replaceOnce(t, diffBase, "admin:\n", "par:\n  request_lifetime: 2m\n  require: true\nadmin:\n")
	y = replaceOnce(t, y, "    name: App\n", "    name: App\n    require_pushed_authorization_requests: true\n")
	cs := Diff(old, parseDiffConfig(t, y))
	got := changeStrings(cs)
	want := []string{"clients[app].require_pushed_authorization_requests changed", "par.request_lifetime added", "par.require changed"}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Diff = %q, want %q", got, want)
	}
	for _, c := range cs {
		if s := c.Section(); s != "par" && s != "clients" {
			t.Errorf("%s is in section %q, want par or clients", c, s)
		}
	}
}
