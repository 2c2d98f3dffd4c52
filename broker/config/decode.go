package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/problem"
)

// Validator is a configuration block that checks itself, such as a
// connector type's Config or a workload issuer's Config. Validate returns
// every problem with its path relative to the block.
type Validator interface {
	Validate() []Problem
}

// Decode strictly decodes the connector's `config:` block into a new Config
// of its type, taken from types (the `type:` name to a constructor of that
// type's empty Config, such as registry.Types()), and validates it. Problem
// paths are relative to this connector entry ("type",
// "config.users[1].email"); the caller places them under "connectors[i]".
// Unknown keys (with a suggestion when one is close), duplicate keys, type
// errors and the type's own Validate problems are all reported together,
// each with its line where the YAML gives one; a Validate problem at or
// below a path that failed to decode is left out. An unknown or missing
// type is a problem at "type" that lists the names in types. The returned
// Config is nil when the type is unknown or the block has unknown keys or
// type errors; when only its Validate complained, it is returned together
// with the problems, and the caller must not open it.
func (c Connector) Decode(types map[string]func() connectors.Config) (connectors.Config, []Problem) {
	newConfig, ok := types[c.Type]
	if !ok {
		known := strings.Join(typeNames(types), ", ")
		if c.Type == "" {
			return nil, []Problem{{Path: "type", Message: "required (one of " + known + ")"}}
		}
		return nil, []Problem{{Path: "type", Message: fmt.Sprintf("unknown connector type %q (known: %s)", c.Type, known)}}
	}
	cfg := newConfig()
	ok, ps := decodeBlock(&c.Config, cfg, cfg.Validate)
	if !ok {
		return nil, ps
	}
	return cfg, ps
}

// Decode strictly decodes the workload issuer's `config:` block into into
// (a pointer, such as a *workload.Config) and validates it, exactly as
// Connector.Decode does for a connector block. Problem paths are relative
// to this workload entry ("config.issuer"); the caller places them under
// "workloads[i]". into must not be used when any problem is returned.
func (w Workload) Decode(into Validator) []Problem {
	_, ps := decodeBlock(&w.Config, into, into.Validate)
	return ps
}

// decodeBlock checks the block n against the Go type of into, decodes it
// when it fits and validates the result. ok is false when the block did not
// fit (unknown keys, type errors); problems are then those plus the
// Validate problems not at or below them.
func decodeBlock(n *yaml.Node, into any, validate func() []Problem) (ok bool, ps problems) {
	if n.Kind != 0 {
		checkNode(n, reflect.TypeOf(into), "config", &ps)
		if err := n.Decode(into); err != nil && len(ps) == 0 {
			return false, problems{{Path: "config", Message: typeMessage(err)}}
		}
	}
	parsed := append(problems(nil), ps...)
	for _, p := range validate() {
		path := problem.Join("config", p.Path)
		if !under(path, parsed) {
			ps.Add(path, "%s", p.Message)
		}
	}
	return len(parsed) == 0, ps
}

// typeNames returns the names of types, sorted.
func typeNames(types map[string]func() connectors.Config) []string {
	names := make([]string, 0, len(types))
	for name := range types {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
