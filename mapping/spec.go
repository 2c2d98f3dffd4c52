// Package mapping is the CEL claim-mapping engine. It knows nothing of HTTP,
// the broker or connectors: it turns upstream claims into the claims to
// issue, an internal subject and a link key, or a rejection.
package mapping

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Spec is one mapping as written under `mappings:` in config.
type Spec struct {
	Require []Rule `yaml:"require"`
	Subject string `yaml:"subject"`
	Link    string `yaml:"link"`
	// AllowUnverifiedEmailLink opts out of the rule that a link key read
	// from claims.email must also read claims.email_verified.
	AllowUnverifiedEmailLink bool                      `yaml:"allow_unverified_email_link"`
	Claims                   map[string]ClaimSpec      `yaml:"claims"`
	Tables                   map[string]map[string]any `yaml:"tables"`
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
			return fmt.Errorf("mapping: claim: %w", err)
		}
		*c = ClaimSpec{Expr: s}
		return nil
	}
	type plain ClaimSpec
	var p plain
	if err := n.Decode(&p); err != nil {
		return fmt.Errorf("mapping: claim: %w", err)
	}
	*c = ClaimSpec(p)
	return nil
}
