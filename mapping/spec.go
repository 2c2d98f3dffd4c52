// Package mapping is the CEL claim-mapping engine. It knows nothing of HTTP,
// the broker or connectors: it turns upstream claims into the claims to
// issue, an internal subject and a link key, or a rejection.
package mapping

import "github.com/fedbroker/fedbroker/mapping/spec"

// Spec is one mapping as written under `mappings:` in config; Compile
// turns it into a Mapping. See package spec.
type Spec = spec.Spec

// Rule is one require condition with the message shown on rejection.
type Rule = spec.Rule

// ClaimSpec is one output claim: a CEL expression and which token carries
// it (InIDToken, InAccessToken or InBoth, the default).
type ClaimSpec = spec.ClaimSpec
