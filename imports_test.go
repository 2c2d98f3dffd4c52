package fedbroker_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/fedbroker/fedbroker/"

// layers lists, for each package of the module (by directory), the
// packages of the module it may import: "x" is exactly x, "x/..." is x and
// everything below it. The most specific directory applies to a file.
// Imports point one way: cmd → broker → {authflow, grants, admin} →
// {tokens, clientauth} → {runtime, oauth} → {config, keys, storage,
// connectors, mapping, templates}; connectors, mapping and verify are
// libraries that never import the broker.
var layers = map[string][]string{
	"problem":      {},
	"jwa":          {},
	"dpop":         {"jwa"},
	"templates":    {},
	"mapping":      {"mapping/...", "problem"},
	"mapping/spec": {},
	"verify":       {"verify/...", "jwa", "dpop"},
	"connectors":   {"connectors/...", "problem", "jwa"},
	// The LDAP connector needs only the contract; its slapd test helper
	// needs nothing of the module.
	"connectors/ldap":           {"connectors", "problem"},
	"connectors/ldap/slapdtest": {},

	"broker/seal":    {},
	"broker/observe": {},
	"broker/storage": {"broker/storage/..."},
	"broker/keys":    {"broker/storage/...", "broker/seal", "jwa"},
	// The SQL backend (and its pgtest helper below it) implements the
	// interface and nothing more.
	"broker/storage/sqlstore": {"broker/storage"},
	// config is what everything reads: it must stay light (no connector
	// implementations, no CEL).
	"broker/config":     {"connectors", "mapping/spec", "problem", "jwa"},
	"broker/oauth":      {"broker/storage", "broker/config", "templates"},
	"broker/runtime":    {"broker/runtime/...", "broker/config", "broker/keys", "broker/storage/...", "connectors/...", "mapping/...", "problem", "jwa"},
	"broker/tokens":     {"broker/runtime", "broker/oauth", "broker/observe", "broker/keys", "broker/seal", "broker/storage", "broker/config", "mapping", "jwa"},
	"broker/clientauth": {"broker/runtime", "broker/oauth", "broker/observe", "broker/storage", "broker/config", "jwa"},
	"broker/grants":     {"broker/tokens", "broker/clientauth", "broker/runtime", "broker/oauth", "broker/observe", "broker/storage", "broker/config", "connectors/...", "mapping", "jwa", "dpop"},
	"broker/logout":     {"broker/tokens", "broker/runtime", "broker/observe", "broker/storage", "broker/config", "broker/oauth"},
	"broker/authflow":   {"broker/logout", "broker/tokens", "broker/clientauth", "broker/runtime", "broker/oauth", "broker/observe", "broker/storage", "broker/config", "connectors", "mapping", "templates"},
	"broker/admin":      {"broker/logout", "broker/runtime", "broker/observe", "broker/keys", "broker/storage", "broker/config", "connectors"},
	// The admin console: the admin API's reads plus the token authority;
	// never the flows (authflow, grants).
	"broker/console": {"broker/workbench", "broker/admin", "broker/logout", "broker/tokens", "broker/runtime", "broker/observe", "broker/keys", "broker/storage", "broker/config", "connectors"},
	"broker":         {"broker/...", "connectors/...", "mapping/...", "templates", "jwa", "problem", "dpop"},

	// The console's mapping workbench: evaluations and drafts, reading
	// the served configuration and storage; it writes only test sign-in
	// records.
	"broker/workbench": {"broker/tokens", "broker/runtime", "broker/storage", "broker/config", "mapping/...", "problem"},
}

// rulesFor returns the rule of the most specific directory containing dir.
func rulesFor(dir string) (string, []string, bool) {
	best := ""
	for d := range layers {
		if (dir == d || strings.HasPrefix(dir, d+"/")) && len(d) > len(best) {
			best = d
		}
	}
	r, ok := layers[best]
	return best, r, ok
}

func allowed(rule []string, imp string) bool {
	return slices.ContainsFunc(rule, func(a string) bool {
		if base, ok := strings.CutSuffix(a, "/..."); ok {
			return imp == base || strings.HasPrefix(imp, base+"/")
		}
		return imp == a
	})
}

// TestImportDirection enforces the layers above on every non-test file.
func TestImportDirection(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		layer, rule, ok := rulesFor(dir)
		if !ok {
			return nil // cmd, demo, e2e, deploy: wiring and tests may import anything
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			rel, internal := strings.CutPrefix(p, module)
			if !internal || rel == dir {
				continue
			}
			if !allowed(rule, rel) {
				t.Errorf("%s imports %s: %s may import only %v", path, rel, layer, rule)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDependencyWeight keeps heavy modules out of packages that others
// import for little: a service importing verify does not get echo, the
// mapping spec does not get CEL, jwa gets no JOSE library, and the binary
// links no test-only comparison library. (What
// broker/config may depend on is checked by its own TestLightDependencies.)
func TestDependencyWeight(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for pkg, banned := range map[string][]string{
		"./verify":       {"github.com/labstack/echo"},
		"./mapping/spec": {"github.com/google/cel-go"},
		"./jwa":          {"github.com/go-jose/"},
		"./dpop":         {"github.com/labstack/echo", "github.com/fedbroker/fedbroker/broker"},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range banned {
				if strings.HasPrefix(dep, b) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
