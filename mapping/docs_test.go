package mapping

import (
	"context"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDocsExamplesCompile compiles every mapping in docs/mappings.md.
func TestDocsExamplesCompile(t *testing.T) {
	b, err := os.ReadFile("../docs/mappings.md")
	if err != nil {
		t.Fatalf("read docs: %v", err)
	}
	blocks := strings.Split(string(b), "```yaml\n")[1:]
	n := 0
	for i, blk := range blocks {
		src := blk[:strings.Index(blk, "```")]
		var doc struct {
			Mappings map[string]Spec `yaml:"mappings"`
		}
		if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
			t.Errorf("block %d: %v", i, err)
			continue
		}
		for name, s := range doc.Mappings {
			n++
			m, errs := Compile(s, CompileOptions{})
			if errs != nil {
				t.Errorf("mapping %s: %v", name, errs)
				continue
			}
			// Evaluating on empty claims must fail in a controlled way or
			// succeed, never panic.
			_, _ = m.Evaluate(context.Background(), Input{})
		}
	}
	if n < 6 {
		t.Errorf("found %d mappings in docs, want at least 6", n)
	}
}

// TestDocsLinkExample evaluates the two-company example from the docs.
func TestDocsLinkExample(t *testing.T) {
	b, err := os.ReadFile("../docs/mappings.md")
	if err != nil {
		t.Fatalf("read docs: %v", err)
	}
	var google, entra *Mapping
	for _, blk := range strings.Split(string(b), "```yaml\n")[1:] {
		var doc struct {
			Mappings map[string]Spec `yaml:"mappings"`
		}
		if yaml.Unmarshal([]byte(blk[:strings.Index(blk, "```")]), &doc) != nil {
			continue
		}
		if s, ok := doc.Mappings["google-link"]; ok {
			google = mustCompile(t, s, CompileOptions{})
		}
		if s, ok := doc.Mappings["entra-link"]; ok {
			entra = mustCompile(t, s, CompileOptions{})
		}
	}
	if google == nil || entra == nil {
		t.Fatalf("docs lack google-link or entra-link")
	}
	ctx := context.Background()
	g, err := google.Evaluate(ctx, Input{ConnectorID: "google", UpstreamSubject: "1", Claims: map[string]any{"email": "Pat@acme.com", "email_verified": true}})
	if err != nil {
		t.Fatalf("google: %v", err)
	}
	e, err := entra.Evaluate(ctx, Input{ConnectorID: "entra", UpstreamSubject: "2", Claims: map[string]any{"preferred_username": "Pat@Acquired.com", "tid": "9188040d-6c67-4c5b-b112-36a304b66dad"}})
	if err != nil {
		t.Fatalf("entra: %v", err)
	}
	if g.LinkKey != "pat@acme.com" || e.LinkKey != g.LinkKey {
		t.Errorf("link keys = %q, %q, want both pat@acme.com", g.LinkKey, e.LinkKey)
	}
	if g.Subject == e.Subject {
		t.Errorf("subjects before linking are equal: %q", g.Subject)
	}
	for _, email := range []string{"pat@acme.c\u03bfm", "pat@evil.com@acme.com"} {
		r, err := google.Evaluate(ctx, Input{ConnectorID: "google", UpstreamSubject: "3", Claims: map[string]any{"email": email, "email_verified": true}})
		if err != nil || r.LinkKey != "" {
			t.Errorf("google %q: LinkKey = %q, err %v, want no link", email, r.LinkKey, err)
		}
	}
}
