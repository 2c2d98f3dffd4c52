package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/connectors/registry"
)

// TestRoundTrip marshals a parsed config back to YAML and parses it again:
// the result must be the same configuration, connector blocks included.
func TestRoundTrip(t *testing.T) {
	first, err := Parse(fill(goodYAML), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out, err := yaml.Marshal(first)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	second, err := Parse(out, noEnv)
	if err != nil {
		t.Fatalf("Parse(Marshal(cfg)): %v\n%s", err, out)
	}
	if diff := cmp.Diff(first, second, cmpopts.IgnoreFields(Connector{}, "Config"), cmpopts.IgnoreFields(Workload{}, "Config"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("round trip (-first +second):\n%s", diff)
	}
	for i := range first.Connectors {
		a, pa := first.Connectors[i].Decode(registry.Types())
		b, pb := second.Connectors[i].Decode(registry.Types())
		if len(pa)+len(pb) > 0 {
			t.Fatalf("Decode problems: %v %v", pa, pb)
		}
		if diff := cmp.Diff(a, b, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("connectors[%d] config round trip (-first +second):\n%s", i, diff)
		}
	}
}
