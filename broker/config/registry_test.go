package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func TestConnectorTypes(t *testing.T) {
	got := ConnectorTypes()
	if !slices.IsSorted(got) || !slices.Contains(got, "local") {
		t.Errorf("ConnectorTypes = %v, want sorted and containing local", got)
	}
	for _, name := range got {
		if c := connectorTypes()[name](); c == nil {
			t.Errorf("registry entry %q builds a nil Config", name)
		}
	}
}

func TestDecode(t *testing.T) {
	node := func(s string) yaml.Node {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(s), &n); err != nil {
			t.Fatal(err)
		}
		return *n.Content[0]
	}
	known := strings.Join(ConnectorTypes(), ", ")
	tests := []struct {
		name    string
		c       Connector
		want    []Problem
		wantNil bool
	}{
		{"unknown type", Connector{ID: "x", Type: "ldap"}, []Problem{{Path: "type", Message: `unknown connector type "ldap" (known: ` + known + ")"}}, true},
		{"no type", Connector{ID: "x"}, []Problem{{Path: "type", Message: "required (one of " + known + ")"}}, true},
		{"not a mapping", Connector{ID: "x", Type: "local", Config: node("[1, 2]")}, []Problem{{Path: "config", Message: "line 1: expected a mapping, got a list"}}, true},
		{"unknown key and invalid together", Connector{ID: "x", Type: "local", Config: node("users: [{username: a, pasword_hash: x, email_verified: nah}]")}, []Problem{
			{Path: "config.users[0].pasword_hash", Message: "line 1: unknown key (did you mean password_hash?)"},
			{Path: "config.users[0].email_verified", Message: "line 1: cannot unmarshal !!str `nah` into bool"},
			{Path: "config.users[0].password_hash", Message: "required (a bcrypt hash, e.g. from htpasswd -nbBC 12)"},
		}, true},
		{"invalid", Connector{ID: "x", Type: "local", Config: node("users: [{username: a, password_hash: x}]")}, []Problem{{Path: "config.users[0].password_hash", Message: "not a bcrypt hash"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ps := tt.c.Decode()
			if diff := cmp.Diff(tt.want, ps); diff != "" {
				t.Errorf("Decode problems (-want +got):\n%s", diff)
			}
			if (got == nil) != tt.wantNil {
				t.Errorf("Decode config = %v, want nil: %v", got, tt.wantNil)
			}
		})
	}
}
