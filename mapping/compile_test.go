package mapping

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		// want lists (path, message substring) pairs, all of which must be
		// reported.
		want [][2]string
	}{
		{
			name: "syntax error has position",
			spec: Spec{Require: []Rule{{Expr: `true`, Message: "m"}, {Expr: `claims.hd ==`, Message: "m"}}},
			want: [][2]string{{"require[1].expr", `column 13: the expression ends too early`}, {"require[1].expr", `(in "claims.hd ==")`}},
		},
		{
			// cel-go panicked planning this (FuzzCompileMapping).
			name: "bytes map key",
			spec: Spec{Claims: map[string]ClaimSpec{"x": {Expr: `{b"": {"": ""}}`}}},
			want: [][2]string{{"claims.x", "a map key must be an int, uint, bool or string, not bytes"}},
		},
		{
			name: "double map key",
			spec: Spec{Claims: map[string]ClaimSpec{"x": {Expr: `{"a": {1.5: true}}`}}},
			want: [][2]string{{"claims.x", "a map key must be an int, uint, bool or string, not double"}},
		},
		{
			name: "undeclared variable on line 2",
			spec: Spec{Claims: map[string]ClaimSpec{"x": {Expr: "true &&\n  clams.x"}}},
			want: [][2]string{{"claims.x", `line 2 of the expression, column 3: unknown name "clams"`}},
		},
		{
			name: "require not bool",
			spec: Spec{Require: []Rule{{Expr: `"yes"`, Message: "m"}}},
			want: [][2]string{{"require[0].expr", "want bool"}},
		},
		{
			name: "require without message",
			spec: Spec{Require: []Rule{{Expr: `true`}}},
			want: [][2]string{{"require[0].message", "message is required"}},
		},
		{
			name: "subject not string",
			spec: Spec{Subject: `1 + 2`},
			want: [][2]string{{"subject", "want string"}},
		},
		{
			name: "reserved claims",
			spec: Spec{Claims: map[string]ClaimSpec{"sub": {Expr: `"x"`}, "iss": {Expr: `"x"`}, "cnf": {Expr: `"x"`}, "aud": {Expr: `"x"`}, "typ": {Expr: `"x"`}, "fb_fam": {Expr: `"x"`}}},
			want: [][2]string{{"claims.sub", "registered claim"}, {"claims.iss", "registered claim"}, {"claims.cnf", "registered claim"}, {"claims.aud", "registered claim"}, {"claims.typ", "registered claim"}, {"claims.fb_fam", "registered claim"}},
		},
		{
			name: "bad in",
			spec: Spec{Claims: map[string]ClaimSpec{"x": {Expr: `"x"`, In: "refresh_token"}}},
			want: [][2]string{{"claims.x.in", "refresh_token"}},
		},
		{
			name: "empty expression",
			spec: Spec{Claims: map[string]ClaimSpec{"x": {}}},
			want: [][2]string{{"claims.x", "empty"}},
		},
		{
			name: "undeclared table",
			spec: Spec{Claims: map[string]ClaimSpec{"role": {Expr: `lookup("nope", "k")`}}},
			want: [][2]string{{"claims.role", `undeclared table "nope"`}},
		},
		{
			name: "computed table name",
			spec: Spec{Tables: map[string]map[string]any{"t": {"a": "b"}}, Claims: map[string]ClaimSpec{"role": {Expr: `lookup(claims.t, "k")`}}},
			want: [][2]string{{"claims.role", "string literal"}},
		},
		{
			name: "link reads email without verified",
			spec: Spec{Link: `claims.email.lowerAscii()`},
			want: [][2]string{{"link", "without claims.email_verified"}},
		},
		{
			name: "link reads email via index",
			spec: Spec{Link: `claims["email"].lowerAscii()`},
			want: [][2]string{{"link", "without claims.email_verified"}},
		},
		{
			name: "link reads email via optional",
			spec: Spec{Link: `claims.?email.orValue("")`},
			want: [][2]string{{"link", "without claims.email_verified"}},
		},
		{
			name: "link reads claims by computed key",
			spec: Spec{Link: `claims["em" + "ail"]`},
			want: [][2]string{{"link", "computed key"}},
		},
		{
			name: "link binds claims whole",
			spec: Spec{Link: `cel.bind(c, claims, c.email)`},
			want: [][2]string{{"link", "as a whole"}},
		},
		{
			name: "nested loop over groups refused",
			spec: Spec{Claims: map[string]ClaimSpec{"x": {Expr: `claims.groups.filter(a, claims.groups.exists(b, a == b))`}}},
			want: [][2]string{{"claims.x", "column 45: a loop over data inside another loop"}},
		},
		{
			name: "expensive single loop refused",
			spec: Spec{Claims: map[string]ClaimSpec{"x": {Expr: `claims.groups.filter(g, claims.text.contains(g))`}}},
			want: [][2]string{{"claims.x", "may cost up to"}},
		},
		{
			name: "triple nesting refused",
			spec: Spec{Require: []Rule{{Message: "m", Expr: `claims.groups.all(a, claims.groups.all(b, claims.groups.all(c, a != b || b != c)))`}}},
			want: [][2]string{{"require[0].expr", "inside another loop"}},
		},
		{
			name: "cheap nested loop refused",
			spec: Spec{Claims: map[string]ClaimSpec{"x": {Expr: `claims.?groups.orValue([]).exists(a, claims.?groups.orValue([]).exists(b, false))`}}},
			want: [][2]string{{"claims.x", "a loop over data inside another loop"}},
		},
		{
			name: "nested loop over sources refused",
			spec: Spec{Claims: map[string]ClaimSpec{"x": {Expr: `sources.groups.map(a, sources.groups.filter(b, true))`}}},
			want: [][2]string{{"claims.x", "inside another loop"}},
		},
		{
			name: "all problems at once",
			spec: Spec{
				Require: []Rule{{Expr: `)`, Message: "m"}},
				Subject: `1`,
				Link:    `claims.email`,
				Claims:  map[string]ClaimSpec{"exp": {Expr: `1`}, "ok": {Expr: `claims.nope(`}},
			},
			want: [][2]string{{"require[0].expr", ""}, {"subject", ""}, {"link", ""}, {"claims.exp", ""}, {"claims.ok", ""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, errs := Compile(tt.spec, CompileOptions{})
			if m != nil {
				t.Errorf("Compile returned a mapping despite errors")
			}
			for _, w := range tt.want {
				found := false
				for _, e := range errs {
					if e.Path == w[0] && strings.Contains(e.Message, w[1]) {
						found = true
					}
				}
				if !found {
					t.Errorf("Compile errors = %v, want one at %q containing %q", errs, w[0], w[1])
				}
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"link with verified check", Spec{Link: `claims.email_verified == true ? claims.email.lowerAscii() : ""`}},
		{"link optional verified", Spec{Link: `claims.?email_verified.orValue(false) == true ? claims.?email.orValue("").lowerAscii() : ""`}},
		{"link opt-out", Spec{Link: `claims.email`, AllowUnverifiedEmailLink: true}},
		{"link employee id", Spec{Link: `claims.employee_id`}},
		{"single loop over groups", Spec{Claims: map[string]ClaimSpec{"g": {Expr: `claims.groups.filter(g, g.startsWith("eng-")).map(g, g.substring(4))`}}}},
		{"table lookup in loop", Spec{
			Tables: map[string]map[string]any{"roles": {"11111111-2222": "admin", "n": 3, "l": []any{"a"}}},
			Claims: map[string]ClaimSpec{"roles": {Expr: `claims.groups.map(g, lookup("roles", g)).filter(r, r != null)`}},
		}},
		{"custom functions", Spec{Claims: map[string]ClaimSpec{
			"d": {Expr: `emailDomain(claims.email)`},
			"u": {Expr: `sets.union(claims.groups, ["x"])`},
			"i": {Expr: `sets.intersection(claims.groups, ["x"])`},
			"r": {Expr: `regex.replace(claims.name, "\\s+", " ")`},
			"e": {Expr: `regex.extract(claims.name, "^(\\w+)")`},
			"s": {Expr: `claims.name.split(" ").join("-")`},
		}}},
		{"nested loop over a literal list", Spec{Claims: map[string]ClaimSpec{"g": {Expr: `claims.groups.filter(g, ["eng-", "ops-"].exists(p, g.startsWith(p)))`}}}},
		{"bind inside a loop", Spec{Claims: map[string]ClaimSpec{"g": {Expr: `claims.groups.map(g, cel.bind(l, g.lowerAscii(), l + l))`}}}},
		{"has and optionals", Spec{Require: []Rule{{Expr: `has(claims.hd) && claims.?hd.orValue("") == "acme.com"`, Message: "m"}}}},
		{"connector variable", Spec{Subject: `connector.id + ":" + claims.sub`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, errs := Compile(tt.spec, CompileOptions{}); errs != nil {
				t.Errorf("Compile errors = %v, want none", errs)
			}
		})
	}
}

func TestSpecYAML(t *testing.T) {
	src := `
require:
  - expr: claims.hd == "acme.com"
    message: Use your acme.com account.
link: 'claims.email_verified == true ? claims.email.lowerAscii() : ""'
claims:
  email: claims.email
  groups:
    expr: claims.groups
    in: access_token
tables:
  entraGroupToRole:
    "4b1d0c5e-0000": admin
`
	var s Spec
	if err := yaml.Unmarshal([]byte(src), &s); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if got, want := s.Claims["email"], (ClaimSpec{Expr: "claims.email"}); got != want {
		t.Errorf("claims.email = %+v, want %+v", got, want)
	}
	if got, want := s.Claims["groups"], (ClaimSpec{Expr: "claims.groups", In: InAccessToken}); got != want {
		t.Errorf("claims.groups = %+v, want %+v", got, want)
	}
	if got := s.Tables["entraGroupToRole"]["4b1d0c5e-0000"]; got != "admin" {
		t.Errorf("table value = %v, want admin", got)
	}
	if _, errs := Compile(s, CompileOptions{}); errs != nil {
		t.Errorf("Compile errors = %v", errs)
	}
	var bad Spec
	if err := yaml.Unmarshal([]byte("claims:\n  x: [1, 2]\n"), &bad); err == nil {
		t.Errorf("Unmarshal of a list claim succeeded, want error")
	}
}
