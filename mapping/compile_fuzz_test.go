package mapping

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
)

// fuzzTables are the lookup tables every fuzzed mapping has.
var fuzzTables = map[string]map[string]any{
	"roles": {"eng-admins": "admin", "eng-dev": "developer"},
	"empty": {},
}

// fuzzInput is the fixed identity every fuzzed mapping is evaluated on:
// strings, lists, a nested map, numbers, within the input bounds.
func fuzzInput() Input {
	groups := make([]any, 200)
	for i := range groups {
		groups[i] = "eng-" + strings.Repeat("g", i%17) + string(rune('a'+i%26))
	}
	return Input{
		ConnectorID: "corp", ConnectorType: "oidc", UpstreamSubject: "u-123",
		Claims: map[string]any{
			"sub": "u-123", "email": "Alice@Example.COM", "email_verified": true,
			"name":    "Alice  Q. Example",
			"groups":  groups,
			"hd":      "example.com",
			"n":       int64(42),
			"f":       1.5,
			"text":    strings.Repeat("lorem ipsum ", 300),
			"address": map[string]any{"country": "NZ", "lines": []any{"1 Main St", "Apt 2"}},
			"attrs":   map[string]any{"mail": []any{"a@example.com"}, "memberOf": []any{"x", "y"}},
		},
		Sources: map[string]any{"graph": map[string]any{"groups": []any{"a", "b", "c"}}},
	}
}

// fuzzEvalBudget is how long one evaluation of a fuzzed mapping may take
// on the fixed input before it counts as unbounded. Evaluations within
// the cost limit take milliseconds; the margin is for a loaded machine.
const fuzzEvalBudget = 3 * time.Second

// FuzzCompileMapping compiles arbitrary CEL expressions placed in every
// position of a mapping. Properties: Compile never panics; it returns
// either problems and no Mapping, or a Mapping; a Mapping evaluates on a
// fixed input without panicking, within fuzzEvalBudget; and an expression
// that runs without a run-time cost limit (its compile-time worst case fits
// MaxCost) really costs at most MaxCost on that input.
func FuzzCompileMapping(f *testing.F) {
	for _, s := range []string{
		`true`, `1 + 2`, `claims.email`, `claims.email.lowerAscii()`, `claims.?email.orValue("")`,
		`claims["em" + "ail"]`, `cel.bind(c, claims, c.email)`, `connector.id + ":" + claims.sub`,
		`claims.email_verified == true ? claims.email.lowerAscii() : ""`,
		`claims.groups.filter(g, g.startsWith("eng-")).map(g, g.substring(4))`,
		`claims.groups.map(g, lookup("roles", g)).filter(r, r != null)`,
		`emailDomain(claims.email)`, `sets.union(claims.groups, ["x"])`, `sets.intersection(claims.groups, ["x"])`,
		`regex.replace(claims.name, "\\s+", " ")`, `regex.extract(claims.name, "^(\\w+)")`,
		`claims.name.split(" ").join("-")`, `claims.groups.filter(g, ["eng-", "ops-"].exists(p, g.startsWith(p)))`,
		`claims.groups.map(g, cel.bind(l, g.lowerAscii(), l + l))`, `has(claims.hd) && claims.?hd.orValue("") == "acme.com"`,
		`claims.address.lines.join(", ")`, `claims.attrs.mail[0]`, `sources.graph.groups`,
		`{"a": [1], "b": {"c": "d"}}`, `[1, "a", true, null]`, `optional.none()`, `0.0 / 0.0`, `{1: "a"}`,
		`timestamp("2020-01-01T00:00:00Z")`, `claims.n * 2`, `claims.f / 0.0`, `9223372036854775807 + 1`,
		// Hostile: loops, ranges, growth, deep nesting, odd literals.
		`claims.groups.filter(a, claims.groups.exists(b, a == b))`,
		`claims.groups.all(a, claims.groups.all(b, claims.groups.all(c, a != b || b != c)))`,
		`lists.range(1000000).map(x, x)`, `lists.range(100000000).size()`,
		`lists.range(1000).map(a, lists.range(1000).map(b, a * b))`,
		`[0,1,2,3,4,5,6,7,8,9].map(a, [0,1,2,3,4,5,6,7,8,9].map(b, [0,1,2,3,4,5,6,7,8,9].map(c, [0,1,2,3,4,5,6,7,8,9].map(d, a+b+c+d))))`,
		`cel.bind(a, claims.text + claims.text, cel.bind(b, a + a, cel.bind(c, b + b, cel.bind(d, c + c, d + d))))`,
		`claims.text.split(" ").map(w, claims.text.indexOf(w))`,
		`claims.groups.map(g, claims.text.replace("o", g))`,
		`strings.quote(claims.text + claims.text)`, `base64.encode(bytes(claims.text))`,
		`"%s %s".format([claims.text, claims.text])`, `claims.groups.sort()`, `claims.groups.flatten()`,
		`claims.text.matches("(a*)*b")`, `regex.extractAll(claims.text, "(o)")`,
		`claims.groups.transformMap(i, g, claims.groups)`, `claims.groups.sortBy(g, claims.text.indexOf(g))`,
		`((((((((((((((((((((1))))))))))))))))))))`, `[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]`,
		`"` + strings.Repeat("a", 1000) + `"`, `claims.` + strings.Repeat("x.", 50) + `y`,
		`dyn(claims).email`, `type(claims) == map`, `claims.nope`, `lookup("nope", "k")`, `)`, ``, ` `,
	} {
		for kind := range uint8(4) {
			f.Add(s, kind)
		}
	}
	in := fuzzInput()
	f.Fuzz(func(t *testing.T, expr string, kind uint8) {
		var sp Spec
		sp.Tables = fuzzTables
		path := "claims.x"
		switch kind % 4 {
		case 0:
			sp.Claims = map[string]ClaimSpec{"x": {Expr: expr}}
		case 1:
			sp.Require = []Rule{{Expr: expr, Message: "no"}}
			path = "require[0].expr"
		case 2:
			sp.Subject = expr
			path = "subject"
		case 3:
			sp.Link = expr
			sp.AllowUnverifiedEmailLink = kind&4 != 0
			path = "link"
		}
		m, ps := Compile(sp, CompileOptions{})
		if len(ps) > 0 {
			if m != nil {
				t.Fatalf("Compile(%q) returned problems and a Mapping", expr)
			}
			for _, p := range ps {
				if p.Message == "" {
					t.Fatalf("Compile(%q): a problem without a message at %q", expr, p.Path)
				}
				if p.Path != "" && !strings.HasPrefix(p.Path, path) {
					t.Fatalf("Compile(%q): problem at %q, want under %q: %s", expr, p.Path, path, p.Message)
				}
			}
			return
		}
		if m == nil {
			t.Fatalf("Compile(%q) returned neither problems nor a Mapping", expr)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzEvalBudget)
		defer cancel()
		start := time.Now()
		_, err := m.Evaluate(ctx, in)
		if d := time.Since(start); d > fuzzEvalBudget {
			t.Fatalf("Evaluate(%q) took %s (budget %s): evaluation is not bounded", expr, d, fuzzEvalBudget)
		}
		var ee *EvalError
		if errors.As(err, &ee) && strings.Contains(ee.Err.Error(), "panicked") {
			t.Fatalf("Evaluate(%q) panicked inside CEL: %v", expr, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Evaluate(%q) ran into the context deadline: evaluation is not bounded", expr)
		}

		// Run it again with cost tracking: an expression the compiler let
		// run untracked must not cost more than the limit it escaped.
		for _, c := range m.all() {
			if c.tracked {
				continue
			}
			if cost, ok := actualCost(t, sp.Tables, c.expr, in); ok && cost > DefaultMaxCost {
				t.Fatalf("%s %q runs without a cost limit but cost %d on a small input (limit %d): the cost estimate is too low", c.path, c.expr, cost, uint64(DefaultMaxCost))
			}
		}
	})
}

// all lists every compiled expression of m.
func (m *Mapping) all() []*compiled {
	var out []*compiled
	for i := range m.require {
		out = append(out, &m.require[i].compiled)
	}
	if m.subject != nil {
		out = append(out, m.subject)
	}
	if m.link != nil {
		out = append(out, m.link)
	}
	for i := range m.claims {
		out = append(out, &m.claims[i].compiled)
	}
	return out
}

// actualCost evaluates expr on in with cost tracking (and a generous
// limit, so that a runaway expression stops) and returns what it cost.
func actualCost(t *testing.T, tables map[string]map[string]any, expr string, in Input) (uint64, bool) {
	t.Helper()
	c := &compiler{opts: CompileOptions{}.withDefaults()}
	env, err := newEnv(c.tables(tables))
	if err != nil {
		t.Fatal(err)
	}
	a, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		t.Fatalf("%q compiled in Compile but not again: %v", expr, iss.Err())
	}
	prg, err := env.Program(a, cel.CostLimit(100*DefaultMaxCost), costTrackerOptions(), cel.InterruptCheckFrequency(100))
	if err != nil {
		t.Fatal(err)
	}
	act, err := newActivation(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzEvalBudget)
	defer cancel()
	_, det, err := prg.ContextEval(ctx, act)
	if det == nil || det.ActualCost() == nil {
		return 0, false
	}
	if err != nil && strings.Contains(err.Error(), "cost limit") {
		return 100 * DefaultMaxCost, true
	}
	return *det.ActualCost(), true
}
