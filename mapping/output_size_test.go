package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestOutputTooLarge: the claims one evaluation issues are held to
// MaxOutputBytes per token, counted as JSON (escapes included), whether
// one claim or several make them too large; a claim issued in one token
// counts only there.
func TestOutputTooLarge(t *testing.T) {
	const limit = 300
	blob := func(n int, c string) string { return strings.Repeat(c, n) }
	for _, tt := range []struct {
		name   string
		claims map[string]ClaimSpec
		input  map[string]any
		over   bool
	}{
		{"one claim under", map[string]ClaimSpec{"a": {Expr: "claims.a"}}, map[string]any{"a": blob(200, "x")}, false},
		{"one claim over", map[string]ClaimSpec{"a": {Expr: "claims.a"}}, map[string]any{"a": blob(400, "x")}, true},
		{"two claims over together", map[string]ClaimSpec{"a": {Expr: "claims.a", In: InIDToken}, "b": {Expr: "claims.b", In: InIDToken}}, map[string]any{"a": blob(180, "x"), "b": blob(180, "y")}, true},
		{"two claims over together, access token", map[string]ClaimSpec{"a": {Expr: "claims.a", In: InAccessToken}, "b": {Expr: "claims.b"}}, map[string]any{"a": blob(180, "x"), "b": blob(180, "y")}, true},
		{"one in each token", map[string]ClaimSpec{"a": {Expr: "claims.a", In: InIDToken}, "b": {Expr: "claims.b", In: InAccessToken}}, map[string]any{"a": blob(180, "x"), "b": blob(180, "y")}, false},
		{"escaped characters count escaped", map[string]ClaimSpec{"a": {Expr: "claims.a"}}, map[string]any{"a": blob(60, "<")}, true},
		{"as many plain characters fit", map[string]ClaimSpec{"a": {Expr: "claims.a"}}, map[string]any{"a": blob(60, "a")}, false},
		{"a list", map[string]ClaimSpec{"a": {Expr: "claims.a"}}, map[string]any{"a": []any{blob(100, "x"), blob(100, "y"), blob(100, "z")}}, true},
		{"a map", map[string]ClaimSpec{"a": {Expr: "claims.a"}}, map[string]any{"a": map[string]any{"k1": blob(100, "x"), "k2": blob(100, "y")}}, false},
		{"a map over", map[string]ClaimSpec{"a": {Expr: "claims.a"}}, map[string]any{"a": map[string]any{"k1": blob(150, "x"), "k2": blob(150, "y")}}, true},
		{"long claim names count", map[string]ClaimSpec{blob(150, "n"): {Expr: "claims.a"}}, map[string]any{"a": blob(150, "x")}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, Spec{Claims: tt.claims}, CompileOptions{MaxOutputBytes: limit})
			res, err := m.Evaluate(context.Background(), Input{ConnectorID: "c", UpstreamSubject: "s", Claims: tt.input})
			if tt.over {
				var ee *EvalError
				if !errors.Is(err, ErrOutputTooLarge) || !errors.As(err, &ee) || ee.Path != "claims" {
					t.Fatalf("Evaluate = %v, want an EvalError at claims wrapping ErrOutputTooLarge", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Evaluate = %v, want the claims", err)
			}
			// The bound is never below the real encoding.
			for name, tok := range map[string]map[string]any{"ID token": res.IDToken, "access token": res.AccessToken} {
				b, err := json.Marshal(tok)
				if err != nil {
					t.Fatal(err)
				}
				if len(b) > limit {
					t.Errorf("%s: %d bytes of JSON passed a limit of %d", name, len(b), limit)
				}
			}
		})
	}
}
