// Package registry maps each connector `type:` name in the configuration to
// the connector package that implements it. It is the one place that lists
// the connector types; nothing registers itself.
package registry

import (
	"sort"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/azuread"
	"github.com/fedbroker/fedbroker/connectors/google"
	"github.com/fedbroker/fedbroker/connectors/ldap"
	"github.com/fedbroker/fedbroker/connectors/local"
	"github.com/fedbroker/fedbroker/connectors/oidc"
	"github.com/fedbroker/fedbroker/connectors/saml"
)

// Types returns every connector type: its `type:` name to a constructor of
// that type's empty Config. The map is built on each call, so a caller may
// change the map it got without affecting anyone else.
func Types() map[string]func() connectors.Config {
	return map[string]func() connectors.Config{
		"local":   func() connectors.Config { return new(local.Config) },
		"oidc":    func() connectors.Config { return new(oidc.Config) },
		"google":  func() connectors.Config { return new(google.Config) },
		"azuread": func() connectors.Config { return new(azuread.Config) },
		"saml":    func() connectors.Config { return new(saml.Config) },
		"ldap":    func() connectors.Config { return new(ldap.Config) },
	}
}

// Names returns the connector type names of Types, sorted.
func Names() []string {
	types := Types()
	names := make([]string, 0, len(types))
	for name := range types {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
