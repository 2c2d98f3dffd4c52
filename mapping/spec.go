// Package mapping is the CEL claim-mapping engine. It knows nothing of HTTP,
// the broker or connectors: it turns upstream claims into the claims to
// issue, an internal subject and a link key, or a rejection.
package mapping

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
