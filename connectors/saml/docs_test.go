package saml

import (
	"bytes"
	"os"
	"regexp"
	"testing"

	"go.yaml.in/yaml/v3"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestDocsExamples decodes every saml connector in the YAML examples of
// docs/connectors-saml.md strictly, so that the docs name only options
// that exist, and checks their idp_initiated blocks.
func TestDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/connectors-saml.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range yamlBlock.FindAllSubmatch(doc, -1) {
		var file struct {
			Connectors []struct {
				ID     string    `yaml:"id"`
				Type   string    `yaml:"type"`
				Config yaml.Node `yaml:"config"`
			} `yaml:"connectors"`
		}
		if err := yaml.Unmarshal(m[1], &file); err != nil {
			t.Fatalf("example does not parse: %v\n%s", err, m[1])
		}
		for _, c := range file.Connectors {
			if c.Type != "saml" {
				continue
			}
			n++
			raw, err := yaml.Marshal(&c.Config)
			if err != nil {
				t.Fatal(err)
			}
			dec := yaml.NewDecoder(bytes.NewReader(raw))
			dec.KnownFields(true)
			var cfg Config
			if err := dec.Decode(&cfg); err != nil {
				t.Errorf("connector %s: %v", c.ID, err)
				continue
			}
			if cfg.IDPInitiated != nil {
				if errs := cfg.IDPInitiated.validate("idp_initiated"); len(errs) > 0 {
					t.Errorf("connector %s: %v", c.ID, errs)
				}
			}
			if cfg.IDPMetadataURL != "" {
				if err := checkMetadataURL(cfg.IDPMetadataURL); err != nil {
					t.Errorf("connector %s: idp_metadata_url: %v", c.ID, err)
				}
			}
		}
	}
	if n < 4 {
		t.Errorf("found %d saml connectors in the docs' examples, want at least 4", n)
	}
}
