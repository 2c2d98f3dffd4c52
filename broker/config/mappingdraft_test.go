package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseMapping(t *testing.T) {
	s, ps := ParseMapping([]byte("require:\n  - expr: 'true'\n    message: hi\nclaims:\n  email: claims.email\n  groups: {expr: claims.groups, in: access_token}\n"))
	if len(ps) != 0 || len(s.Require) != 1 || s.Claims["email"].Expr != "claims.email" || s.Claims["groups"].In != "access_token" {
		t.Fatalf("ParseMapping = %+v, %v", s, ps)
	}
	for _, tc := range []struct{ text, path, msg string }{
		{"claims:\n  email: x\nclams: {}\n", "clams", "line 3: unknown key (did you mean claims?)"},
		{"claims:\n  a: x\n  a: y\n", "claims.a", "line 3: duplicate key (first at line 2)"},
		{"require: yes\n", "require", "line 1: expected a list"},
		{"claims:\n  a: x\n   b: y\n", SyntaxPath, "line 3: mapping values are not allowed"},
	} {
		_, ps := ParseMapping([]byte(tc.text))
		if len(ps) != 1 || ps[0].Path != tc.path || !strings.HasPrefix(ps[0].Message, tc.msg) {
			t.Errorf("ParseMapping(%q) = %v, want %s: %s", tc.text, ps, tc.path, tc.msg)
		}
	}
	// An empty draft is an empty mapping.
	if s, ps := ParseMapping(nil); len(ps) != 0 || len(s.Claims) != 0 {
		t.Errorf("ParseMapping(nil) = %+v, %v", s, ps)
	}
}

func TestWorkbenchSamplesDir(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse(fill(goodYAML+"admin:\n  workbench:\n    samples_dir: "+dir+"\n"), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if cfg.Admin.Workbench.SamplesDir != dir {
		t.Errorf("samples_dir = %q", cfg.Admin.Workbench.SamplesDir)
	}
	file := filepath.Join(dir, "x.json")
	if err := os.WriteFile(file, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{filepath.Join(dir, "missing"), file} {
		_, err := Parse(fill(goodYAML+"admin:\n  workbench:\n    samples_dir: "+bad+"\n"), noEnv)
		if err == nil || !slices.Contains(paths(t, err), "admin.workbench.samples_dir") {
			t.Errorf("samples_dir %s: %v", bad, err)
		}
	}
	_, err = Parse(fill(goodYAML+"admin:\n  workbench:\n    sample_dir: x\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "did you mean samples_dir") {
		t.Errorf("misspelt key: %v", err)
	}
}
