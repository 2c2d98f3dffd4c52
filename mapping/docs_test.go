package mapping

import (
	"context"
	"errors"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// docBlock is one fenced code block of docs/mappings.md.
type docBlock struct {
	lang, text string
	line       int // of the opening fence
}

func docBlocks(t *testing.T) []docBlock {
	t.Helper()
	b, err := os.ReadFile("../docs/mappings.md")
	if err != nil {
		t.Fatalf("read docs: %v", err)
	}
	var out []docBlock
	var cur *docBlock
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(l, "```"):
			cur = &docBlock{lang: strings.TrimPrefix(l, "```"), line: i + 1}
		case cur != nil && l == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("docs/mappings.md: the block at line %d is not closed", cur.line)
	}
	return out
}

// docMappings returns every mapping of the docs' yaml blocks by name.
func docMappings(t *testing.T) map[string]Spec {
	t.Helper()
	out := map[string]Spec{}
	for _, blk := range docBlocks(t) {
		if blk.lang != "yaml" {
			continue
		}
		var doc struct {
			Mappings map[string]Spec `yaml:"mappings"`
		}
		if err := yaml.Unmarshal([]byte(blk.text), &doc); err != nil {
			t.Errorf("docs/mappings.md:%d: %v", blk.line, err)
			continue
		}
		for name, s := range doc.Mappings {
			if _, dup := out[name]; dup {
				t.Errorf("docs/mappings.md:%d: mapping %s is defined twice", blk.line, name)
			}
			out[name] = s
		}
	}
	return out
}

// docSamples are upstream identities for each mapping of the docs, as its
// connector would send them: complete, so that the test below can take
// each claim away in turn.
var docSamples = map[string]Input{
	"acme-google": {ConnectorID: "google", UpstreamSubject: "1", Claims: map[string]any{
		"sub": "1", "email": "Pat@acme.com", "email_verified": true, "hd": "acme.com", "groups": []any{"eng"}}},
	"google-eng": {ConnectorID: "google", UpstreamSubject: "1",
		Claims:  map[string]any{"sub": "1", "email": "pat@acme.com", "email_verified": true, "hd": "acme.com", "name": "Pat Lee"},
		Sources: map[string]any{"groups": []any{"eng-platform@acme.com", "sales@acme.com"}}},
	"entra": {ConnectorID: "entra", UpstreamSubject: "2",
		Claims: map[string]any{"tid": "9188040d-6c67-4c5b-b112-36a304b66dad", "preferred_username": "Pat@Acquired.com", "name": "Pat Lee",
			"roles": []any{"Reader"}, "groups": []any{"3f2504e0-4f89-11d3-9a0c-0305e82c3301", "00000000-0000-0000-0000-000000000000"}}},
	"okta-saml": {ConnectorID: "okta", UpstreamSubject: "3", Claims: map[string]any{
		"nameid": "3",
		"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress": []any{"Pat@Partner.example"},
		"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname":    []any{"Pat"},
		"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname":      []any{"Lee"},
		"http://schemas.microsoft.com/ws/2008/06/identity/claims/groups":     []any{"partners"},
		"department": []any{"Logistics"}}},
	"google-link": {ConnectorID: "google", UpstreamSubject: "1", Claims: map[string]any{
		"sub": "1", "email": "Pat@acme.com", "email_verified": true, "name": "Pat Lee"}},
	"entra-link": {ConnectorID: "entra", UpstreamSubject: "2", Claims: map[string]any{
		"tid": "9188040d-6c67-4c5b-b112-36a304b66dad", "preferred_username": "Pat@Acquired.com", "name": "Pat Lee"}},
}

// TestDocsExamples compiles every mapping in docs/mappings.md and
// evaluates it on its sample and on the sample with each claim (and each
// source) taken away: the examples must accept or reject, never fail on a
// missing claim ("no such key"), and never issue a string with a stray
// space ("Pat " without a surname).
func TestDocsExamples(t *testing.T) {
	specs := docMappings(t)
	if len(specs) < 6 {
		t.Errorf("found %d mappings in docs, want at least 6", len(specs))
	}
	ctx := context.Background()
	for name, s := range specs {
		m, errs := Compile(s, CompileOptions{})
		if errs != nil {
			t.Errorf("mapping %s: %v", name, errs)
			continue
		}
		sample, ok := docSamples[name]
		if !ok {
			t.Errorf("mapping %s of the docs has no sample in docSamples", name)
			continue
		}
		res, err := m.Evaluate(ctx, sample)
		if err != nil {
			t.Errorf("mapping %s on its sample: %v", name, err)
		}
		checkNoStraySpace(t, name, "sample", res)
		for _, v := range without(sample) {
			res, err := m.Evaluate(ctx, v.in)
			var rej *Rejection
			if err != nil && !errors.As(err, &rej) {
				t.Errorf("mapping %s %s: %v; want accepted or rejected by a rule", name, v.name, err)
			}
			checkNoStraySpace(t, name, v.name, res)
		}
	}
}

type variant struct {
	name string
	in   Input
}

// without returns in with each claim and each source taken away, and with
// none at all.
func without(in Input) []variant {
	out := []variant{{"without any claim", Input{ConnectorID: in.ConnectorID, UpstreamSubject: in.UpstreamSubject}}}
	drop := func(m map[string]any, k string) map[string]any {
		c := map[string]any{}
		for kk, v := range m {
			if kk != k {
				c[kk] = v
			}
		}
		return c
	}
	keys := func(m map[string]any) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return ks
	}
	for _, k := range keys(in.Claims) {
		v := in
		v.Claims = drop(in.Claims, k)
		out = append(out, variant{"without claims." + k, v})
	}
	for _, k := range keys(in.Sources) {
		v := in
		v.Sources = drop(in.Sources, k)
		out = append(out, variant{"without sources." + k, v})
	}
	return out
}

func checkNoStraySpace(t *testing.T, name, what string, res Result) {
	t.Helper()
	for _, tok := range []map[string]any{res.IDToken, res.AccessToken} {
		for k, v := range tok {
			if s, ok := v.(string); ok && s != strings.TrimSpace(s) {
				t.Errorf("mapping %s %s: claim %s = %q has a stray space", name, what, k, s)
			}
		}
	}
}

// TestDocsSAMLName: the SAML example's name is "given surname", or just the
// one that is there, or no claim at all.
func TestDocsSAMLName(t *testing.T) {
	m := mustCompile(t, docMappings(t)["okta-saml"], CompileOptions{})
	const given, surname = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"
	const email = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
	for _, tt := range []struct {
		claims map[string]any
		want   any
	}{
		{map[string]any{given: []any{"Pat"}, surname: []any{"Lee"}}, "Pat Lee"},
		{map[string]any{given: []any{"Pat"}}, "Pat"},
		{map[string]any{surname: []any{"Lee"}}, "Lee"},
		{map[string]any{given: []any{""}, surname: []any{}}, nil},
		{map[string]any{}, nil},
	} {
		tt.claims[email] = []any{"pat@partner.example"}
		res, err := m.Evaluate(context.Background(), Input{ConnectorID: "okta", UpstreamSubject: "3", Claims: tt.claims})
		if err != nil {
			t.Errorf("%v: %v", tt.claims, err)
			continue
		}
		if got, ok := res.IDToken["name"]; got != tt.want || ok != (tt.want != nil) {
			t.Errorf("%v: name = %#v, want %#v", tt.claims, got, tt.want)
		}
	}
}

// TestDocsLinkExample evaluates the two-company example from the docs.
func TestDocsLinkExample(t *testing.T) {
	specs := docMappings(t)
	google := mustCompile(t, specs["google-link"], CompileOptions{})
	entra := mustCompile(t, specs["entra-link"], CompileOptions{})
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
	for _, claims := range []map[string]any{
		{"email": "pat@acme.c\u03bfm", "email_verified": true},
		{"email": "pat@evil.com@acme.com", "email_verified": true},
		{"email": "pat@acme.com", "email_verified": false},
		{"email": "pat@acme.com", "email_verified": "true"},
		{"email": "pat@acme.com"}, // no email_verified: no link, and no error
	} {
		r, err := google.Evaluate(ctx, Input{ConnectorID: "google", UpstreamSubject: "3", Claims: claims})
		if err != nil || r.LinkKey != "" {
			t.Errorf("google %v: LinkKey = %q, err %v, want no link", claims, r.LinkKey, err)
		}
	}
}

// exampleLine is one line of a ```cel block: an expression, optionally a
// claim (`name: expr`), with a comment saying whether it is refused.
var exampleLine = regexp.MustCompile(`^(?:([a-z_]+): )?(.*?)(?:\s+#\s*(.*))?$`)

// TestDocsExpressionSnippets compiles every expression of the ```cel blocks
// of the docs. One whose comment starts with "refused" must not compile;
// every other one must compile and, on an identity with no claims at all,
// give a value or an empty optional rather than fail.
func TestDocsExpressionSnippets(t *testing.T) {
	n := 0
	for _, blk := range docBlocks(t) {
		if blk.lang != "cel" {
			continue
		}
		for i, l := range strings.Split(strings.TrimSpace(blk.text), "\n") {
			m := exampleLine.FindStringSubmatch(strings.TrimSpace(l))
			name, expr, comment := m[1], m[2], m[3]
			if name == "" {
				name = "x"
			}
			where := "docs/mappings.md:" + strconv.Itoa(blk.line+1+i)
			n++
			mp, ps := Compile(Spec{Claims: map[string]ClaimSpec{name: {Expr: expr}}}, CompileOptions{})
			if strings.HasPrefix(comment, "refused") {
				if ps == nil {
					t.Errorf("%s: %q compiles, but the docs say it is refused", where, expr)
				}
				continue
			}
			if ps != nil {
				t.Errorf("%s: %q: %v", where, expr, ps)
				continue
			}
			if _, err := mp.Evaluate(context.Background(), Input{ConnectorID: "c", UpstreamSubject: "s"}); err != nil {
				t.Errorf("%s: %q with no claims: %v", where, expr, err)
			}
		}
	}
	if n < 7 {
		t.Errorf("found %d expressions in ```cel blocks, want at least 7", n)
	}
}

// TestDocsProblemOutput: the problems shown in ```text blocks of the docs
// ("mappings.NAME.claims.X: MESSAGE (in "EXPR")") are what Compile says
// for that expression at that path.
func TestDocsProblemOutput(t *testing.T) {
	// The YAML line `fedbroker check` may put after the path is not
	// Compile's to give.
	line := regexp.MustCompile(`^mappings\.[^.]+\.(claims\.[a-z_]+|require\[0\]\.expr|link|subject): (?:line \d+: )?(.*\(in ("(?:[^"\\]|\\.)*")\))$`)
	n := 0
	for _, blk := range docBlocks(t) {
		if blk.lang != "text" {
			continue
		}
		for _, l := range strings.Split(strings.TrimSpace(blk.text), "\n") {
			m := line.FindStringSubmatch(strings.TrimSpace(l))
			if m == nil {
				t.Errorf("docs/mappings.md:%d: %q is not a problem line this test understands", blk.line, l)
				continue
			}
			n++
			path, want := m[1], m[2]
			expr, err := strconv.Unquote(m[3])
			if err != nil {
				t.Fatalf("%q: %v", m[3], err)
			}
			var s Spec
			switch {
			case strings.HasPrefix(path, "claims."):
				s.Claims = map[string]ClaimSpec{strings.TrimPrefix(path, "claims."): {Expr: expr}}
			case path == "link":
				s.Link = expr
			case path == "subject":
				s.Subject = expr
			default:
				s.Require = []Rule{{Expr: expr, Message: "m"}}
			}
			_, ps := Compile(s, CompileOptions{})
			if len(ps) != 1 || ps[0].Path != path || ps[0].Message != want {
				t.Errorf("docs show\n  %s: %s\nCompile says\n  %v", path, want, ps)
			}
		}
	}
	if n < 4 {
		t.Errorf("found %d problem lines in ```text blocks of the docs, want at least 4", n)
	}
}
