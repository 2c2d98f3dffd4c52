package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/local"
	"github.com/fedbroker/fedbroker/connectors/workload"
)

// node parses s as one YAML value.
func node(t *testing.T, s string) yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	return *n.Content[0]
}

// testTypes is a registry of two connector types; Decode must list exactly
// the types it is given.
func testTypes() map[string]func() connectors.Config {
	return map[string]func() connectors.Config{
		"local":  func() connectors.Config { return new(local.Config) },
		"zlocal": func() connectors.Config { return new(local.Config) },
	}
}

func TestConnectorDecode(t *testing.T) {
	tests := []struct {
		name    string
		c       Connector
		want    []Problem
		wantNil bool
	}{
		{"unknown type", Connector{ID: "x", Type: "ldap"}, []Problem{{Path: "type", Message: `unknown connector type "ldap" (known: local, zlocal)`}}, true},
		{"no type", Connector{ID: "x"}, []Problem{{Path: "type", Message: "required (one of local, zlocal)"}}, true},
		{"not a mapping", Connector{ID: "x", Type: "local", Config: node(t, "[1, 2]")}, []Problem{{Path: "config", Message: "line 1: expected a mapping, got a list"}}, true},
		{"unknown key and invalid together", Connector{ID: "x", Type: "local", Config: node(t, "users: [{username: a, pasword_hash: x, email_verified: nah}]")}, []Problem{
			{Path: "config.users[0].pasword_hash", Message: "line 1: unknown key (did you mean password_hash?)"},
			{Path: "config.users[0].email_verified", Message: "line 1: cannot unmarshal !!str `nah` into bool"},
			{Path: "config.users[0].password_hash", Message: "required (a bcrypt hash, e.g. from fedbroker hash-secret --password)"},
		}, true},
		{"duplicate key", Connector{ID: "x", Type: "local", Config: node(t, "users: []\nusers: []")}, []Problem{
			{Path: "config.users", Message: "line 2: duplicate key (first at line 1)"},
		}, true},
		{"invalid", Connector{ID: "x", Type: "local", Config: node(t, "users: [{username: a, password_hash: x}]")}, []Problem{{Path: "config.users[0].password_hash", Message: "not a bcrypt hash"}}, false},
		{"no block", Connector{ID: "x", Type: "zlocal"}, []Problem{{Path: "config.users", Message: "at least one user is required"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ps := tt.c.Decode(testTypes())
			if diff := cmp.Diff(tt.want, ps); diff != "" {
				t.Errorf("Decode problems (-want +got):\n%s", diff)
			}
			if (got == nil) != tt.wantNil {
				t.Errorf("Decode config = %v, want nil: %v", got, tt.wantNil)
			}
		})
	}
}

// TestConnectorDecodeEmptyRegistry checks that a connector cannot be
// decoded against no types at all.
func TestConnectorDecodeEmptyRegistry(t *testing.T) {
	got, ps := Connector{ID: "x", Type: "local"}.Decode(nil)
	want := []Problem{{Path: "type", Message: `unknown connector type "local" (known: )`}}
	if diff := cmp.Diff(want, ps); diff != "" || got != nil {
		t.Errorf("Decode(nil) = %v, problems (-want +got):\n%s", got, diff)
	}
}

// rootProblem is a Validator whose only problem is about the block itself.
type rootProblem struct {
	Name string `yaml:"name"`
}

func (rootProblem) Validate() []Problem { return []Problem{{Message: "never valid"}} }

func TestWorkloadDecode(t *testing.T) {
	tests := []struct {
		name string
		w    Workload
		want []Problem
		cfg  workload.Config // when want is nil
	}{
		{"good", Workload{ID: "gh", Config: node(t, "{issuer: https://x.example.com, audiences: [a], max_lifetime: 1h, one_time_jti: true}")}, nil,
			workload.Config{Issuer: "https://x.example.com", Audiences: []string{"a"}, MaxLifetime: 3600e9, OneTimeJTI: true}},
		{"no block", Workload{ID: "gh"}, []Problem{
			{Path: "config.issuer", Message: "required"},
			{Path: "config.audiences", Message: "at least one accepted audience is required"},
		}, workload.Config{}},
		{"unknown key", Workload{ID: "gh", Config: node(t, "{issuer: https://x.example.com, audience: [a]}")}, []Problem{
			{Path: "config.audience", Message: "line 1: unknown key (did you mean audiences?)"},
			{Path: "config.audiences", Message: "at least one accepted audience is required"},
		}, workload.Config{}},
		{"type error hides its own Validate problem", Workload{ID: "gh", Config: node(t, "{issuer: https://x.example.com, audiences: a}")}, []Problem{
			{Path: "config.audiences", Message: `line 1: expected a list, got "a"`},
		}, workload.Config{}},
		{"bad duration", Workload{ID: "gh", Config: node(t, "{issuer: https://x.example.com, audiences: [a], max_lifetime: 1 day}")}, []Problem{
			{Path: "config.max_lifetime", Message: `line 1: invalid duration "1 day" (use Go syntax such as 90s, 5m or 1h30m)`},
		}, workload.Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got workload.Config
			ps := tt.w.Decode(&got)
			if diff := cmp.Diff(tt.want, ps); diff != "" {
				t.Errorf("Decode problems (-want +got):\n%s", diff)
			}
			if tt.want == nil {
				if diff := cmp.Diff(tt.cfg, got); diff != "" {
					t.Errorf("Decode config (-want +got):\n%s", diff)
				}
			}
		})
	}
	t.Run("problem at the block", func(t *testing.T) {
		ps := Workload{ID: "x", Config: node(t, "{name: a}")}.Decode(new(rootProblem))
		want := []Problem{{Path: "config", Message: "never valid"}}
		if diff := cmp.Diff(want, ps); diff != "" {
			t.Errorf("Decode problems (-want +got):\n%s", diff)
		}
	})
}
