package mapping

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// compileClaim compiles expr as the claim "x" and returns its problems'
// messages.
func compileClaim(t *testing.T, expr string) []string {
	t.Helper()
	m, ps := Compile(Spec{Claims: map[string]ClaimSpec{"x": {Expr: expr}}}, CompileOptions{})
	if (m == nil) == (len(ps) == 0) {
		t.Fatalf("Compile(%q) = %v, %v: want a mapping or problems", expr, m, ps)
	}
	var out []string
	for _, p := range ps {
		if p.Path != "claims.x" {
			t.Errorf("Compile(%q): problem at %q, want claims.x: %s", expr, p.Path, p.Message)
		}
		out = append(out, p.Message)
	}
	return out
}

// TestCompileErrorsInWords: a CEL syntax or type error is one sentence in
// words with its position in the expression (column, or line and column
// when the expression has several lines) and the expression, never the
// parser's raw text ("mismatched input", "extraneous input", token sets),
// the "ERROR: <input>:1:5:" prefix or a caret snippet.
func TestCompileErrorsInWords(t *testing.T) {
	tests := []struct{ expr, want string }{
		// The expression ends too early.
		{`lower(claims.sub`, `column 17: the expression ends too early: a closing ")" is missing for the "(" at column 6 (in "lower(claims.sub")`},
		{`claims.email.lowerAscii(`, `column 25: the expression ends too early: a closing ")" is missing for the "(" at column 24 (in "claims.email.lowerAscii(")`},
		{`[1, [2`, `column 7: the expression ends too early: a closing "]" is missing for the "[" at column 5, and a closing "]" for the "[" at column 1 (in "[1, [2")`},
		{`{"a": 1`, `column 8: the expression ends too early: a closing "}" is missing for the "{" at column 1 (in "{\"a\": 1")`},
		{`claims.hd ==`, `column 13: the expression ends too early: a value is missing after "==" (in "claims.hd ==")`},
		{`claims.x &&`, `column 12: the expression ends too early: a value is missing after "&&" (in "claims.x &&")`},
		{`f(1,`, `column 5: the expression ends too early: a value is missing after ",", and a closing ")" for the "(" at column 2 (in "f(1,")`},
		{`claims.`, `column 8: the expression ends too early: a name is missing after "." (in "claims.")`},
		{`claims.?`, `column 9: the expression ends too early: a name is missing after ".?" (in "claims.?")`},
		{`true ? 1`, `column 9: the expression ends too early: the "?" at column 6 needs ": value-if-false" (in "true ? 1")`},
		{"has(claims.a) &&\n  (claims.b ||\n   claims.c", `line 3 of the expression, column 12: the expression ends too early: a closing ")" is missing for the "(" at line 2 of the expression, column 3 (in "has(claims.a) &&\n  (claims.b ||\n   claims.c")`},
		// Something unexpected in the middle.
		{`[1 2]`, `column 4: unexpected "2": expected "]" or "," (in "[1 2]")`},
		{`{"a" 1}`, `column 6: a ":" is missing before "1" (in "{\"a\" 1}")`},
		{`claims + + 1`, `column 10: unexpected "+": a value was expected here (in "claims + + 1")`},
		{`1 + * 2`, `column 5: unexpected "*": a value was expected here (in "1 + * 2")`},
		{`f(1,)`, `column 5: unexpected ")": a value was expected here (in "f(1,)")`},
		{`claims.sub)`, `column 11: unexpected ")": there is no "(" for it to close (in "claims.sub)")`},
		{`)`, `column 1: unexpected ")": there is no "(" for it to close (in ")")`},
		{`claims.a claims.b`, `column 10: unexpected "claims": the expression is already complete before it (is an operator such as ==, && or + missing?) (in "claims.a claims.b")`},
		{`claims.x ! y`, `column 10: unexpected "!": the expression is already complete before it (is an operator such as ==, && or + missing?) (in "claims.x ! y")`},
		{`claims..x`, `column 8: unexpected "." (in "claims..x")`},
		{`claims.in`, `column 8: "in" is a reserved word: read this claim as claims["in"] (in "claims.in")`},
		// Characters and strings the lexer cannot read.
		{`claims.x @ 1`, `column 10: unexpected character "@" (in "claims.x @ 1")`},
		{`claims.email = "x"`, `column 14: "=" is not an operator: write "==" to compare (in "claims.email = \"x\"")`},
		{`claims.a & claims.b`, `column 10: "&" is not an operator: write "&&" for "and" (in "claims.a & claims.b")`},
		{`claims.a | claims.b`, `column 10: "|" is not an operator: write "||" for "or" (in "claims.a | claims.b")`},
		{`claims.email == 'x`, `column 17: the string that starts here is never closed: add the closing ' (in "claims.email == 'x")`},
		{`"abc`, `column 1: the string that starts here is never closed: add the closing " (in "\"abc")`},
		{`"a\qb"`, `column 1: the string that starts here has an invalid escape "\q" (write "\\" for a backslash) (in "\"a\\qb\"")`},
		// Type errors the checker finds.
		{"true &&\n  clams.x", `line 2 of the expression, column 3: unknown name "clams"; did you mean "claims"? (in "true &&\n  clams.x")`},
		{`source.groups`, `column 1: unknown name "source"; did you mean "sources"? (in "source.groups")`},
		{`lower(claims.sub)`, `column 1: unknown function "lower"; did you mean "lowerAscii"? (in "lower(claims.sub)")`},
		{`claims.sub.toUpperCase()`, `column 12: unknown function "toUpperCase"; did you mean "upperAscii"? (in "claims.sub.toUpperCase()")`},
		{`"a" + 1`, `column 5: "+" cannot combine a string and an int: convert one side, with string(...), int(...) or double(...) (in "\"a\" + 1")`},
		{`claims.email.lowerAscii() + 1`, `column 27: "+" cannot combine a string and an int: convert one side, with string(...), int(...) or double(...) (in "claims.email.lowerAscii() + 1")`},
		{`1.0 % 2.0`, `column 5: "%" cannot combine a double and a double: it works on ints only, so convert with int(...) (in "1.0 % 2.0")`},
		{`"a" * 2`, `column 5: "*" cannot combine a string and an int: convert one side, with int(...) or double(...) (in "\"a\" * 2")`},
		{`lookup("nope", "k")`, `column 1: lookup of undeclared table "nope": this mapping has no tables (in "lookup(\"nope\", \"k\")")`},
		{`emailDomain(1)`, `column 1: emailDomain() does not accept (int) (in "emailDomain(1)")`},
		{`claims.email.startsWith(1)`, `column 14: startsWith() does not accept (int) (in "claims.email.startsWith(1)")`},
		{`1 && true`, `column 1: a bool is needed here, not an int (in "1 && true")`},
		{`1 ? "a" : "b"`, `column 3: the condition before "?" must be a bool, not an int (in "1 ? \"a\" : \"b\"")`},
		{`has(claims)`, `column 5: has() takes a field, such as has(claims.hd) (in "has(claims)")`},
		// Arithmetic a claim can never take part in (see jsoncheck.go).
		{`claims.email + 1`, `column 14: "+" needs claims.email to be an int here, and a claim never is (claims hold strings, doubles, bools, lists, maps or null): write 1.0 to compute with a number, or string(1) to join text (in "claims.email + 1")`},
		{`2 * claims["n"]`, `column 3: "*" needs claims["n"] to be an int here, and a claim never is (claims hold strings, doubles, bools, lists, maps or null): write 2.0 to compute with a number (in "2 * claims[\"n\"]")`},
		{`claims.n % 2`, `column 10: "%" needs claims.n to be an int here, and a claim never is (claims hold strings, doubles, bools, lists, maps or null): "%" works on ints only, so convert first: int(claims.n) % 2 (in "claims.n % 2")`},
		{`claims.groups.map(g, g + 1)`, `column 24: "+" needs g to be an int here, and a claim never is (claims hold strings, doubles, bools, lists, maps or null): write 1.0 to compute with a number, or string(1) to join text (in "claims.groups.map(g, g + 1)")`},
		{`cel.bind(t, sources.tenant, t - size(claims))`, `column 31: "-" needs t to be an int here, and a claim never is (claims hold strings, doubles, bools, lists, maps or null): convert one side, with double(...) or int(...) (in "cel.bind(t, sources.tenant, t - size(claims))")`},
		{`claims.iat + duration("1h")`, `column 12: "+" needs claims.iat to be a duration or a timestamp here, and a claim never is (claims hold strings, doubles, bools, lists, maps or null): convert it first, e.g. timestamp(claims.iat) (in "claims.iat + duration(\"1h\")")`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got := compileClaim(t, tt.expr)
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("Compile(%q) problems:\n  %s\nwant one:\n  %s", tt.expr, strings.Join(got, "\n  "), tt.want)
			}
			for _, g := range got {
				for _, raw := range []string{"mismatched input", "extraneous input", "no viable alternative", "token recognition", "<EOF>", "Syntax error", "ERROR:", "<input>", "^", "IDENTIFIER", "in container", "_+_", "overload"} {
					if strings.Contains(g, raw) {
						t.Errorf("Compile(%q) problem %q contains the raw %q", tt.expr, g, raw)
					}
				}
			}
		})
	}
}

// TestCompileErrorLongExpression: the expression quoted after a problem in
// a long expression is the part around the position, not all of it.
func TestCompileErrorLongExpression(t *testing.T) {
	long := `claims[?"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"].orValue([]).first().orValue("") + " " + claims[?"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"].orValue([]).first().orValue("") +`
	got := compileClaim(t, long)
	want := `column 222: the expression ends too early: a value is missing after "+" (near …"claims/surname\"].orValue([]).first().orValue(\"\") +")`
	if len(got) != 1 || got[0] != want {
		t.Errorf("problems %q, want %q", got, want)
	}
}

// TestCompileErrorsFirstSyntaxErrorOnly: the parser's follow-on errors
// (after "@" it also complains about the "1") are not reported; errors in
// other expressions still are, all at once.
func TestCompileErrorsFirstSyntaxErrorOnly(t *testing.T) {
	if got := compileClaim(t, `claims.x @ 1 +`); len(got) != 1 {
		t.Errorf("problems %q, want only the first", got)
	}
	_, ps := Compile(Spec{
		Require: []Rule{{Expr: `claims.a ==`, Message: "m"}},
		Claims:  map[string]ClaimSpec{"x": {Expr: `clams.x + clams.y`}},
	}, CompileOptions{})
	var paths []string
	for _, p := range ps {
		paths = append(paths, p.Path)
	}
	// Two unknown names are two problems; the checker is not the parser.
	if strings.Join(paths, " ") != "require[0].expr claims.x claims.x" {
		t.Errorf("problems %v, want one at require[0].expr and two at claims.x", ps)
	}
}

// TestCompileAcceptsDynamicClaims: the load-time check refuses only what
// cannot work for any JSON value; everything a claim of the right shape
// makes work still compiles.
func TestCompileAcceptsDynamicClaims(t *testing.T) {
	for _, expr := range []string{
		`claims.groups.exists(g, g == "x")`,
		`claims.email.endsWith("@x")`,
		`claims.a + claims.b`,
		`claims.name + " (" + claims.email + ")"`,
		`claims.age + 1.0`,
		`claims.age * 2.0 > 10.0`,
		`claims.exp > 1700000000`,
		`claims.exp - 60.0`,
		`int(claims.exp) - 60`,
		`size(claims.groups) + 1`,
		`claims.groups[0]`,
		`claims.groups + ["x"]`,
		`["a", "b"][claims.i]`,
		`-claims.n`,
		`claims.?n.orValue(0) + 1`,
		`timestamp(claims.updated_at) + duration("1h")`,
		`lookup("t", "k") + 1`,
		`[1, 2].map(claims, claims + 1)`,
		`string(claims.n) + "x"`,
		`claims.email_verified == true`,
	} {
		m, ps := Compile(Spec{
			Tables: map[string]map[string]any{"t": {"k": 1}},
			Claims: map[string]ClaimSpec{"x": {Expr: expr}},
		}, CompileOptions{})
		if m == nil {
			t.Errorf("Compile(%q) = %v, want it to compile", expr, ps)
		}
	}
}

// TestRefusedArithmeticAlwaysFails backs the load-time check: each
// expression the check refuses fails at run time for every JSON value the
// claim could hold. It is evaluated here without the check.
func TestRefusedArithmeticAlwaysFails(t *testing.T) {
	values := []any{"text", 42.0, 1.5, true, nil, []any{"a"}, []any{}, map[string]any{"k": "v"}}
	for _, expr := range []string{
		`claims.v + 1`, `1 + claims.v`, `claims.v - 1`, `claims.v * 2`, `claims.v / 2`, `claims.v % 2`,
		`claims.v % claims.v`, `claims.v + 1u`, `claims.v + duration("1h")`, `claims.v - timestamp("2024-01-01T00:00:00Z")`,
		`claims.l.map(g, g + 1)`, `cel.bind(t, claims.v, t * 3)`, `claims.v + b"x"`,
	} {
		if got := compileClaim(t, expr); len(got) != 1 || !strings.Contains(got[0], "a claim never is") {
			t.Errorf("Compile(%q) = %q, want it refused by the JSON check", expr, got)
		}
		env, err := newEnv(nil)
		if err != nil {
			t.Fatal(err)
		}
		a, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%q does not check in plain CEL: %v", expr, iss.Err())
		}
		prg, err := env.Program(a)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			act, err := newActivation(Input{Claims: map[string]any{"v": v, "l": []any{v}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if out, _, err := prg.Eval(act); err == nil {
				t.Errorf("%q with claims.v = %#v = %v, want a run-time error", expr, v, out)
			}
		}
	}
}

// TestDynamicClaimErrorsAtSignIn: what the load-time check cannot know
// (the shape of one person's claims) still fails cleanly at sign-in.
func TestDynamicClaimErrorsAtSignIn(t *testing.T) {
	m := mustCompile(t, Spec{Claims: map[string]ClaimSpec{"x": {Expr: `claims.email + "!"`}}}, CompileOptions{})
	_, err := m.Evaluate(context.Background(), Input{Claims: map[string]any{"email": 1.0}})
	var ee *EvalError
	if !errors.As(err, &ee) || ee.Path != "claims.x" {
		t.Errorf("Evaluate = %v, want an EvalError at claims.x", err)
	}
}

// TestBrokenExpressionsInWords compiles every prefix of real expressions,
// and each with one character dropped: every problem is in words, with a
// position, and none carries the parser's raw text.
func TestBrokenExpressionsInWords(t *testing.T) {
	sources := []string{
		`claims.?email.or(claims.?preferred_username).optMap(e, e.lowerAscii())`,
		`has(claims.hd) && claims.hd == "acme.com" && emailDomain(claims.email) == "acme.com"`,
		`claims.groups.filter(g, ["eng-", "ops-"].exists(p, g.startsWith(p))).map(g, {"name": g, "n": [1, 2.5]})`,
		`cel.bind(k, lookup("t", claims[?"urn:oid:1"].orValue([]).first().orValue("")), k == null ? "" : string(k))`,
		"claims.email_verified == true\n  ? claims.email.lowerAscii()\n  : ''",
		`r"raw\d" + '''triple 'quoted' ''' + b"\x00".size().string()`,
	}
	raw := []string{"mismatched input", "extraneous input", "no viable alternative", "token recognition", "<EOF>", "Syntax error", "ERROR:", "<input>", "IDENTIFIER", "in container", "found no matching overload"}
	seen := map[string]bool{}
	for _, src := range sources {
		rs := []rune(src)
		var variants []string
		for i := 1; i < len(rs); i++ {
			variants = append(variants, string(rs[:i]), string(rs[:i-1])+string(rs[i:]))
		}
		for _, expr := range variants {
			if seen[expr] || strings.TrimSpace(expr) == "" {
				continue
			}
			seen[expr] = true
			_, ps := Compile(Spec{Tables: map[string]map[string]any{"t": {}}, Claims: map[string]ClaimSpec{"x": {Expr: expr}}}, CompileOptions{})
			for _, p := range ps {
				for _, r := range raw {
					if strings.Contains(p.Message, r) {
						t.Errorf("Compile(%q): %q contains the raw %q", expr, p.Message, r)
					}
				}
				if !strings.HasPrefix(p.Message, "column ") && !strings.HasPrefix(p.Message, "line ") && !strings.HasPrefix(p.Message, "expression ") {
					t.Errorf("Compile(%q): %q does not start with its position", expr, p.Message)
				}
			}
		}
	}
}
