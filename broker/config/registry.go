package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/azuread"
	"github.com/fedbroker/fedbroker/connectors/google"
	"github.com/fedbroker/fedbroker/connectors/local"
	"github.com/fedbroker/fedbroker/connectors/oidc"
	"github.com/fedbroker/fedbroker/connectors/saml"
)

// connectorTypes is the registry of connector types: the `type:` name in
// config to a constructor of that type's empty Config. It is built on each
// call, so nothing global can be changed by anyone.
func connectorTypes() map[string]func() connectors.Config {
	return map[string]func() connectors.Config{
		"local":   func() connectors.Config { return new(local.Config) },
		"oidc":    func() connectors.Config { return new(oidc.Config) },
		"google":  func() connectors.Config { return new(google.Config) },
		"azuread": func() connectors.Config { return new(azuread.Config) },
		"saml":    func() connectors.Config { return new(saml.Config) },
	}
}

// ConnectorTypes returns the known connector type names, sorted.
func ConnectorTypes() []string {
	reg := connectorTypes()
	names := make([]string, 0, len(reg))
	for name := range reg {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Decode decodes the connector's `config:` block into its type's Config
// and validates it. Problem paths are relative to this connector entry
// ("type", "config.users[1].email"); Config.Validate prefixes them with
// "connectors[i].". Unknown keys, type errors and the type's own Validate
// problems are all reported together. The returned Config is nil when the
// type is unknown or the block has unknown keys or type errors; when only
// its Validate complained, it is returned together with the problems.
func (c Connector) Decode() (connectors.Config, []Problem) {
	newConfig, ok := connectorTypes()[c.Type]
	if !ok {
		if c.Type == "" {
			return nil, []Problem{{Path: "type", Message: "required (one of " + strings.Join(ConnectorTypes(), ", ") + ")"}}
		}
		return nil, []Problem{{Path: "type", Message: fmt.Sprintf("unknown connector type %q (known: %s)", c.Type, strings.Join(ConnectorTypes(), ", "))}}
	}
	cfg := newConfig()
	var ps problems
	if c.Config.Kind != 0 {
		checkNode(&c.Config, reflect.TypeOf(cfg), "config", &ps)
		if err := c.Config.Decode(cfg); err != nil && len(ps) == 0 {
			return nil, []Problem{{Path: "config", Message: typeMessage(err)}}
		}
	}
	parsed := append(problems(nil), ps...)
	for _, fe := range cfg.Validate() {
		p := "config"
		if fe.Path != "" {
			p += "." + fe.Path
		}
		if !under(p, parsed) {
			ps.add(p, "%s", fe.Message)
		}
	}
	if len(parsed) > 0 {
		return nil, ps
	}
	return cfg, ps
}
