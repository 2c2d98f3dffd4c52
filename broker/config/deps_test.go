package config

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestLightDependencies checks that every package of this module that
// config imports, directly or not, stays clear of the heavy libraries the
// connectors and the mapping engine use: a program that only reads the
// configuration must not link SAML, CEL or OpenID Connect.
func TestLightDependencies(t *testing.T) {
	const module = "github.com/fedbroker/fedbroker/"
	forbidden := []string{
		"github.com/crewjam/",
		"github.com/google/cel-go/",
		"github.com/coreos/go-oidc/",
		"github.com/go-jose/",
		"github.com/russellhaering/",
		module + "connectors/",
		module + "mapping",
	}
	allowedModule := map[string]bool{module + "mapping/spec": true}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	seen := map[string]bool{}
	var walk func(pkg, from string)
	walk = func(pkg, from string) {
		if seen[pkg] {
			return
		}
		seen[pkg] = true
		dir := filepath.Join(root, strings.TrimPrefix(pkg, module))
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, name), nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range forbidden {
					if strings.HasPrefix(p, bad) && !allowedModule[p] {
						t.Errorf("%s (imported by %s) imports %s", pkg, from, p)
					}
				}
				if strings.HasPrefix(p, module) {
					walk(p, pkg)
				}
			}
		}
	}
	walk(module+"broker/config", "the test")
}
