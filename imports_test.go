package fedbroker_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/fedbroker/fedbroker/"

// TestImportDirection enforces the rules of the architecture: imports point
// cmd → broker → {connectors, mapping, keys, storage, templates}; the
// libraries another program could use never import the broker.
func TestImportDirection(t *testing.T) {
	rules := []struct {
		dir       string
		forbidden []string
	}{
		{"connectors", []string{module + "broker", module + "mapping", module + "templates", module + "cmd", module + "demo"}},
		{"mapping", []string{module, "net/http"}},
		{"verify", []string{module}},
		{"templates", []string{module}},
		{"broker", []string{module + "cmd", module + "demo"}},
	}
	for _, r := range rules {
		err := filepath.WalkDir(r.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range r.forbidden {
					if p == strings.TrimSuffix(bad, "/") || strings.HasPrefix(p, bad) {
						t.Errorf("%s imports %s: %s must not depend on it", path, p, r.dir)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
