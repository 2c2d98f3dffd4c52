package mapping

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// typicalSpec is a mapping of the size the issue calls typical: 10 claims,
// 2 requires, 1 table lookup.
func typicalSpec() Spec {
	return Spec{
		Require: []Rule{
			{Expr: `claims.email_verified == true`, Message: "Verify your email address first."},
			{Expr: `emailDomain(claims.email) == "acme.com"`, Message: "Sign in with your acme.com account."},
		},
		Link: `claims.email_verified == true ? claims.email.lowerAscii() : ""`,
		Claims: map[string]ClaimSpec{
			"email":              {Expr: `claims.email.lowerAscii()`},
			"email_verified":     {Expr: `claims.email_verified`},
			"name":               {Expr: `claims.?name`},
			"preferred_username": {Expr: `claims.email.split("@")[0]`},
			"groups":             {Expr: `claims.groups.filter(g, g.startsWith("eng-"))`, In: InAccessToken},
			"roles":              {Expr: `claims.groups.map(g, lookup("groupToRole", g)).filter(r, r != null)`},
			"department":         {Expr: `claims.?department`, In: InIDToken},
			"domain":             {Expr: `emailDomain(claims.email)`},
			"connector":          {Expr: `connector.id`, In: InAccessToken},
			"tenant":             {Expr: `claims.?tid.orValue("none")`},
		},
		Tables: map[string]map[string]any{"groupToRole": {"eng-admins": "admin", "eng-oncall": "oncall"}},
	}
}

func typicalClaims() map[string]any {
	return map[string]any{
		"email": "Pat@ACME.com", "email_verified": true, "name": "Pat Lee",
		"groups":     []any{"eng-admins", "eng-oncall", "sales", "eng-web"},
		"department": "R&D",
	}
}

func mustCompile(t testing.TB, s Spec, o CompileOptions) *Mapping {
	t.Helper()
	m, errs := Compile(s, o)
	if errs != nil {
		t.Fatalf("Compile: %v", errs)
	}
	return m
}

func TestEvaluateTypical(t *testing.T) {
	m := mustCompile(t, typicalSpec(), CompileOptions{})
	got, err := m.Evaluate(context.Background(), Input{ConnectorID: "google", ConnectorType: "google", UpstreamSubject: "1234", Claims: typicalClaims()})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	want := Result{
		Subject: DefaultSubject("google", "1234"),
		LinkKey: "pat@acme.com",
		IDToken: map[string]any{
			"email": "pat@acme.com", "email_verified": true, "name": "Pat Lee", "preferred_username": "Pat",
			"roles": []any{"admin", "oncall"}, "department": "R&D", "domain": "acme.com", "tenant": "none",
		},
		AccessToken: map[string]any{
			"email": "pat@acme.com", "email_verified": true, "name": "Pat Lee", "preferred_username": "Pat",
			"roles": []any{"admin", "oncall"}, "groups": []any{"eng-admins", "eng-oncall", "eng-web"},
			"domain": "acme.com", "connector": "google", "tenant": "none",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Evaluate mismatch (-want +got):\n%s", diff)
	}
}

func manyGroups(n int, prefix string) []any {
	g := make([]any, n)
	for i := range g {
		g[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	return g
}

func TestEvaluateHostileClaims(t *testing.T) {
	m := mustCompile(t, typicalSpec(), CompileOptions{})
	with := func(k string, v any) map[string]any {
		c := typicalClaims()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	type want int
	const (
		ok want = iota
		rejected
		evalErr
	)
	tests := []struct {
		name     string
		claims   map[string]any
		want     want
		wantRule int
		wantPath string
	}{
		{name: "nil claims", claims: nil, want: evalErr, wantPath: "require[0].expr"},
		{name: "missing email", claims: with("email", nil), want: evalErr, wantPath: "require[1].expr"},
		{name: "missing groups", claims: with("groups", nil), want: evalErr, wantPath: "claims.groups"},
		{name: "groups as string", claims: with("groups", "eng-admins"), want: evalErr, wantPath: "claims.groups"},
		{name: "groups of numbers", claims: with("groups", []any{1.0, 2.0}), want: evalErr, wantPath: "claims.groups"},
		{name: "groups of maps", claims: with("groups", []any{map[string]any{"id": "x"}}), want: evalErr, wantPath: "claims.groups"},
		{name: "email as number", claims: with("email", 42.0), want: evalErr, wantPath: "require[1].expr"},
		{name: "email as list", claims: with("email", []any{"pat@acme.com"}), want: evalErr, wantPath: "require[1].expr"},
		{name: "verified as string", claims: with("email_verified", "true"), want: rejected, wantRule: 0},
		{name: "unverified", claims: with("email_verified", false), want: rejected, wantRule: 0},
		{name: "double at", claims: with("email", "a@evil.com@acme.com"), want: rejected, wantRule: 1},
		{name: "suffix trick", claims: with("email", "a@evil-acme.com"), want: rejected, wantRule: 1},
		{name: "subdomain", claims: with("email", "a@evil.acme.com"), want: rejected, wantRule: 1},
		{name: "cyrillic o in domain", claims: with("email", "a@acme.cоm"), want: rejected, wantRule: 1},
		{name: "kelvin sign is not k", claims: with("email", "a@acme.com\u212A"), want: rejected, wantRule: 1},
		{name: "trailing space", claims: with("email", "a@acme.com "), want: rejected, wantRule: 1},
		{name: "trailing dot", claims: with("email", "a@acme.com."), want: rejected, wantRule: 1},
		{name: "empty local part", claims: with("email", "@acme.com"), want: rejected, wantRule: 1},
		{name: "upper-case domain", claims: with("email", "A@ACME.COM"), want: ok},
		{name: "unicode local part", claims: with("email", "zoë@acme.com"), want: ok},
		{name: "10,000 groups", claims: with("groups", manyGroups(10000, "team-")), want: ok},
		{name: "10,000 eng groups overflow output", claims: with("groups", manyGroups(10000, "eng-")), want: evalErr, wantPath: "claims"},
		{name: "go types the decoder never makes", claims: with("department", struct{ X chan int }{}), want: evalErr, wantPath: "claims.department"},
		{name: "nested non-string keys", claims: with("department", map[int]any{1: "x"}), want: evalErr, wantPath: "claims.department"},
		{name: "typed string slice", claims: with("groups", []string{"eng-admins"}), want: ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := m.Evaluate(context.Background(), Input{ConnectorID: "g", UpstreamSubject: "s", Claims: tt.claims})
			var rej *Rejection
			var ee *EvalError
			switch tt.want {
			case ok:
				if err != nil {
					t.Fatalf("Evaluate error = %v, want none", err)
				}
				if res.Subject == "" {
					t.Errorf("Subject is empty")
				}
			case rejected:
				if !errors.As(err, &rej) {
					t.Fatalf("Evaluate error = %v, want *Rejection", err)
				}
				if rej.Rule != tt.wantRule || rej.Message != typicalSpec().Require[tt.wantRule].Message {
					t.Errorf("Rejection = %+v, want rule %d with its message", rej, tt.wantRule)
				}
			case evalErr:
				if !errors.As(err, &ee) {
					t.Fatalf("Evaluate error = %v, want *EvalError", err)
				}
				if ee.Path != tt.wantPath {
					t.Errorf("EvalError.Path = %q, want %q (err %v)", ee.Path, tt.wantPath, err)
				}
			}
		})
	}
}

func nest(n int) any {
	var v any = "x"
	for i := 0; i < n; i++ {
		v = []any{v}
	}
	return v
}

func TestEmailDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a@acme.com", "acme.com"},
		{"A@ACME.COM", "acme.com"},
		{"a@evil.com@acme.com", ""},
		{"a@", ""},
		{"@acme.com", ""},
		{"acme.com", ""},
		{"a@ac me.com", ""},
		{"a@ACME.CÖM", "acme.cÖm"},
		{"a@\u212Acme.com", "\u212Acme.com"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := EmailDomain(tt.in); got != tt.want {
			t.Errorf("EmailDomain(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEvaluateCost(t *testing.T) {
	ctx := context.Background()
	t.Run("runtime cost cap", func(t *testing.T) {
		m := mustCompile(t, Spec{Claims: map[string]ClaimSpec{"g": {Expr: `claims.groups.filter(g, g.startsWith("x"))`}}}, CompileOptions{MaxCost: 20000})
		_, err := m.Evaluate(ctx, Input{Claims: map[string]any{"groups": manyGroups(10000, "y")}})
		var ee *EvalError
		if !errors.As(err, &ee) || ee.Path != "claims.g" || !strings.Contains(err.Error(), "cost") {
			t.Fatalf("Evaluate error = %v, want cost limit *EvalError at claims.g", err)
		}
	})
	t.Run("input beyond the size hints", func(t *testing.T) {
		m := mustCompile(t, Spec{Claims: map[string]ClaimSpec{"g": {Expr: `claims.groups`}}}, CompileOptions{})
		for name, in := range map[string]Input{
			"long list":      {Claims: map[string]any{"groups": manyGroups(10001, "y")}},
			"long string":    {Claims: map[string]any{"name": strings.Repeat("x", 70000)}},
			"deep nesting":   {Claims: map[string]any{"groups": nest(40)}},
			"sources list":   {Sources: map[string]any{"groups": manyGroups(20000, "y")}},
			"typed []string": {Claims: map[string]any{"groups": make([]string, 10001)}},
		} {
			_, err := m.Evaluate(ctx, in)
			var ee *EvalError
			if !errors.As(err, &ee) || ee.Path != "input" {
				t.Errorf("%s: Evaluate error = %v, want *EvalError at input", name, err)
			}
			// The message names the claim or source that is too large.
			if want := "s.groups: "; name != "long string" && !strings.Contains(err.Error(), want) {
				t.Errorf("%s: Evaluate error = %v, want it to name the claim (%q)", name, err, want)
			}
			if name == "long string" && !strings.Contains(err.Error(), "claims.name: ") {
				t.Errorf("%s: Evaluate error = %v, want it to name claims.name", name, err)
			}
		}
	})
	t.Run("connector changes between evaluations", func(t *testing.T) {
		m := mustCompile(t, Spec{Claims: map[string]ClaimSpec{"c": {Expr: `connector.id + "/" + connector.type`}}}, CompileOptions{})
		for _, in := range []Input{
			{ConnectorID: "google", ConnectorType: "google"},
			{ConnectorID: "google", ConnectorType: "google"},
			{ConnectorID: "entra", ConnectorType: "oidc"},
			{ConnectorID: "entra", ConnectorType: "saml"},
			{ConnectorID: "google", ConnectorType: "google"},
		} {
			got, err := m.Evaluate(ctx, in)
			if want := in.ConnectorID + "/" + in.ConnectorType; err != nil || got.IDToken["c"] != want {
				t.Fatalf("Evaluate(%s/%s) = %v, %v; want %s", in.ConnectorID, in.ConnectorType, got.IDToken["c"], err, want)
			}
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		m := mustCompile(t, typicalSpec(), CompileOptions{})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		c := typicalClaims()
		c["groups"] = manyGroups(10000, "team-")
		_, err := m.Evaluate(cctx, Input{Claims: c})
		var ee *EvalError
		if !errors.As(err, &ee) {
			t.Fatalf("Evaluate error = %v, want *EvalError", err)
		}
	})
}

func TestEvaluateValues(t *testing.T) {
	m := mustCompile(t, Spec{Claims: map[string]ClaimSpec{
		"null":    {Expr: `null`},
		"none":    {Expr: `optional.none()`},
		"some":    {Expr: `optional.of("x")`},
		"int":     {Expr: `1 + 2`},
		"uint":    {Expr: `3u`},
		"double":  {Expr: `1.5`},
		"list":    {Expr: `[1, "a", true, null]`},
		"map":     {Expr: `{"a": [1], "b": {"c": "d"}}`},
		"idonly":  {Expr: `"i"`, In: InIDToken},
		"atonly":  {Expr: `"a"`, In: InAccessToken},
		"passmap": {Expr: `claims.obj`},
	}}, CompileOptions{})
	got, err := m.Evaluate(context.Background(), Input{Claims: map[string]any{"obj": map[string]any{"k": []any{1.0, "v"}}}})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	common := map[string]any{
		"some": "x", "int": int64(3), "uint": int64(3), "double": 1.5,
		"list": []any{int64(1), "a", true, nil}, "map": map[string]any{"a": []any{int64(1)}, "b": map[string]any{"c": "d"}},
		"passmap": map[string]any{"k": []any{1.0, "v"}},
	}
	wantID, wantAT := map[string]any{"idonly": "i"}, map[string]any{"atonly": "a"}
	for k, v := range common {
		wantID[k], wantAT[k] = v, v
	}
	if diff := cmp.Diff(wantID, got.IDToken); diff != "" {
		t.Errorf("IDToken mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantAT, got.AccessToken); diff != "" {
		t.Errorf("AccessToken mismatch (-want +got):\n%s", diff)
	}

	bad := []string{`0.0 / 0.0`, `{1: "a"}`, `timestamp("2020-01-01T00:00:00Z")`}
	for _, e := range bad {
		m := mustCompile(t, Spec{Claims: map[string]ClaimSpec{"x": {Expr: e}}}, CompileOptions{})
		_, err := m.Evaluate(context.Background(), Input{})
		var ee *EvalError
		if !errors.As(err, &ee) || ee.Path != "claims.x" {
			t.Errorf("Evaluate(%s) error = %v, want *EvalError at claims.x", e, err)
		}
	}
}

func TestEvaluateSubject(t *testing.T) {
	tests := []struct {
		name, expr string
		claims     map[string]any
		want       string
		wantErr    bool
	}{
		{"expression", `connector.id + ":" + claims.employee_id`, map[string]any{"employee_id": "E42"}, "c1:E42", false},
		{"empty", `claims.employee_id`, map[string]any{"employee_id": ""}, "", true},
		{"null", `claims.employee_id`, map[string]any{"employee_id": nil}, "", true},
		{"wrong type", `claims.employee_id`, map[string]any{"employee_id": 42.0}, "", true},
		{"too long", `claims.employee_id`, map[string]any{"employee_id": strings.Repeat("x", 256)}, "", true},
		{"missing", `claims.employee_id`, map[string]any{}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, Spec{Subject: tt.expr}, CompileOptions{})
			got, err := m.Evaluate(context.Background(), Input{ConnectorID: "c1", UpstreamSubject: "u", Claims: tt.claims})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Evaluate error = %v, wantErr %v", err, tt.wantErr)
			}
			if got.Subject != tt.want {
				t.Errorf("Subject = %q, want %q", got.Subject, tt.want)
			}
		})
	}
}

func TestDefaultSubject(t *testing.T) {
	a := DefaultSubject("google", "pat@acme.com")
	if a != DefaultSubject("google", "pat@acme.com") {
		t.Errorf("DefaultSubject is not stable")
	}
	if strings.Contains(a, "pat") || strings.Contains(a, "@") || len(a) != 43 {
		t.Errorf("DefaultSubject = %q, want 43 opaque base64url characters", a)
	}
	pairs := [][2]string{{"ab", "c"}, {"a", "bc"}, {"", "abc"}, {"abc", ""}, {"google", "pat@acme.com"}, {"entra", "pat@acme.com"}}
	seen := map[string][2]string{}
	for _, p := range pairs {
		s := DefaultSubject(p[0], p[1])
		if prev, dup := seen[s]; dup {
			t.Errorf("DefaultSubject%v = DefaultSubject%v = %q", p, prev, s)
		}
		seen[s] = p
	}
}

// TestLinkAcrossConnectors: one person from acme.com (Google) and
// acquired.com (Entra) computes one link key; unverified or look-alike
// identities do not.
func TestLinkAcrossConnectors(t *testing.T) {
	google := mustCompile(t, Spec{
		Link: `claims.email_verified == true && emailDomain(claims.email) == "acme.com" ? claims.email.lowerAscii() : ""`,
	}, CompileOptions{})
	entra := mustCompile(t, Spec{
		Require: []Rule{{Expr: `claims.tid == "9188040d-6c67-4c5b-b112-36a304b66dad"`, Message: "Wrong tenant."}},
		Link:    `cel.bind(acme, lookup("acquiredToAcme", claims.preferred_username.lowerAscii()), acme == null ? "" : string(acme))`,
		Tables:  map[string]map[string]any{"acquiredToAcme": {"pat@acquired.com": "pat@acme.com"}},
	}, CompileOptions{})
	const tid = "9188040d-6c67-4c5b-b112-36a304b66dad"
	tests := []struct {
		name   string
		m      *Mapping
		claims map[string]any
		want   string
	}{
		{"google verified", google, map[string]any{"email": "Pat@Acme.com", "email_verified": true}, "pat@acme.com"},
		{"entra mapped", entra, map[string]any{"preferred_username": "PAT@acquired.com", "tid": tid}, "pat@acme.com"},
		{"google unverified", google, map[string]any{"email": "pat@acme.com", "email_verified": false}, ""},
		{"google verified string", google, map[string]any{"email": "pat@acme.com", "email_verified": "true"}, ""},
		{"google look-alike domain", google, map[string]any{"email": "pat@acme.cоm", "email_verified": true}, ""},
		{"google double at", google, map[string]any{"email": "pat@evil.com@acme.com", "email_verified": true}, ""},
		{"entra unmapped", entra, map[string]any{"preferred_username": "sam@acquired.com", "tid": tid}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.m.Evaluate(context.Background(), Input{ConnectorID: "c", UpstreamSubject: "s", Claims: tt.claims})
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if got.LinkKey != tt.want {
				t.Errorf("LinkKey = %q, want %q", got.LinkKey, tt.want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	m := mustCompile(t, typicalSpec(), CompileOptions{})
	c := typicalClaims()
	c["email_verified"] = false
	_, steps, err := m.Explain(context.Background(), Input{ConnectorID: "g", UpstreamSubject: "s", Claims: c})
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Rule != 0 {
		t.Fatalf("Explain error = %v, want rejection by rule 0", err)
	}
	got := map[string]any{}
	for _, s := range steps {
		got[s.Path] = s.Value
	}
	for path, want := range map[string]any{
		"require[0].expr": false, "require[1].expr": true, "link": "",
		"claims.email": "pat@acme.com", "claims.roles": []any{"admin", "oncall"},
	} {
		if diff := cmp.Diff(want, got[path]); diff != "" {
			t.Errorf("step %s mismatch (-want +got):\n%s", path, diff)
		}
	}
	if len(steps) != 2+1+10 {
		t.Errorf("Explain gave %d steps, want 13", len(steps))
	}
	ok := typicalClaims()
	in := Input{ConnectorID: "g", UpstreamSubject: "s", Claims: ok}
	res, _, err := m.Explain(context.Background(), in)
	if err != nil {
		t.Fatalf("Explain: %v", err)
	}
	want, _ := m.Evaluate(context.Background(), in)
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Explain result differs from Evaluate (-want +got):\n%s", diff)
	}
}

func TestEvaluateConcurrent(t *testing.T) {
	m := mustCompile(t, typicalSpec(), CompileOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				c := typicalClaims()
				c["email"] = fmt.Sprintf("u%d-%d@acme.com", w, i)
				c["groups"] = []any{fmt.Sprintf("eng-%d", w)}
				got, err := m.Evaluate(context.Background(), Input{ConnectorID: "g", UpstreamSubject: c["email"].(string), Claims: c})
				if err != nil {
					errs <- err
					return
				}
				if got.LinkKey != c["email"] || !cmp.Equal(got.AccessToken["groups"], []any{fmt.Sprintf("eng-%d", w)}) {
					errs <- fmt.Errorf("worker %d: got %v / %v", w, got.LinkKey, got.AccessToken["groups"])
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
