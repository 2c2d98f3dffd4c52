package registry

import (
	"slices"
	"testing"
)

func TestNames(t *testing.T) {
	got := Names()
	want := []string{"azuread", "google", "ldap", "local", "oidc", "saml"}
	if !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

func TestTypes(t *testing.T) {
	types := Types()
	for name, newConfig := range types {
		a, b := newConfig(), newConfig()
		if a == nil {
			t.Errorf("Types()[%q]() = nil, want an empty Config", name)
			continue
		}
		if a == b {
			t.Errorf("Types()[%q]() returned the same Config twice, want a new one each call", name)
		}
	}
	delete(types, "local")
	if _, ok := Types()["local"]; !ok {
		t.Error("deleting from one Types() map changed the next one")
	}
}
