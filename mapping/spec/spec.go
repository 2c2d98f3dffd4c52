// Package spec is the written form of a claim mapping: the YAML shape of one
// entry under `mappings:` in the broker's configuration. It holds the
// expressions as text and checks nothing; package mapping type-checks and
// compiles a Spec. Keeping the shape apart from the CEL engine lets a
// program read a configuration without linking CEL.
package spec

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Spec is one mapping as written under `mappings:` in config. Every string
// but the rule messages is a CEL expression over `claims` and `sources`.
type Spec struct {
	// Require are conditions every sign-in must meet; the first one that is
	// false rejects the person with its message.
	Require []Rule `yaml:"require"`
	// Subject is the internal subject; empty means the default (derived from
	// the connector id and the upstream subject).
	Subject string `yaml:"subject"`
	// Link is the key that links identities from different connectors to
	// one subject; empty means no linking.
	Link string `yaml:"link"`
	// AllowUnverifiedEmailLink opts out of the rule that a link key read
	// from claims.email must also read claims.email_verified.
	AllowUnverifiedEmailLink bool `yaml:"allow_unverified_email_link"`
	// Claims are the claims to issue, by name.
	Claims map[string]ClaimSpec `yaml:"claims"`
	// Tables are constant lookup tables the expressions may read with
	// lookup(name, key).
	Tables map[string]map[string]any `yaml:"tables"`
}

// Rule is one require condition with the message shown on rejection.
type Rule struct {
	Expr    string `yaml:"expr"`
	Message string `yaml:"message"`
}

// ClaimSpec is one output claim: a CEL expression and which token carries it
// ("id_token", "access_token" or "both", the default).
type ClaimSpec struct {
	Expr string `yaml:"expr"`
	In   string `yaml:"in"`
}

// UnmarshalYAML accepts a claim written as just its expression
// (`email: claims.email`) as well as the full form
// (`groups: {expr: claims.groups, in: access_token}`).
func (c *ClaimSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return fmt.Errorf("spec: claim: %w", err)
		}
		*c = ClaimSpec{Expr: s}
		return nil
	}
	type plain ClaimSpec
	var p plain
	if err := n.Decode(&p); err != nil {
		return fmt.Errorf("spec: claim: %w", err)
	}
	*c = ClaimSpec(p)
	return nil
}
