package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAliasCycles: an alias inside the value it refers to is refused with
// its line. A merge key pointing at its own mapping used to recurse until
// the stack overflowed, which killed the process (on SIGHUP, the serving
// broker).
func TestAliasCycles(t *testing.T) {
	for _, tc := range []struct{ yml, want string }{
		{"issuer: https://a.example\ntokens: &t {<<: *t}\n", "line 2: alias *t is inside the value it refers to"},
		{"issuer: https://a.example\ntokens: &t\n  session: 1h\n  <<: [*t]\n", "line 4: alias *t is inside the value it refers to"},
		{"issuer: https://a.example\nhttp: &h {tls: *h}\n", "line 2: alias *h is inside the value it refers to"},
		{"issuer: https://a.example\nlinks: {groups: &g [*g]}\n", "line 2: alias *g is inside the value it refers to"},
	} {
		cfg, err := Parse([]byte(tc.yml), noEnv)
		if cfg != nil || err == nil || err.Error() != SyntaxPath+": "+tc.want {
			t.Errorf("Parse(%q) = %v, want %q", tc.yml, err, tc.want)
		}
	}
}

// TestAliasBomb: aliases that multiply what the loader walks (a "billion
// laughs") are refused with a line, in time proportional to the file. A
// 12 KB file of this shape used to take seconds, and a 100 KB one minutes.
func TestAliasBomb(t *testing.T) {
	bomb := func(n int) []byte {
		var b strings.Builder
		b.WriteString("issuer: https://sso.example.com\nmappings:\n  m0: &s {require: [&r {expr: 'true', message: m}")
		for range n {
			b.WriteString(", *r")
		}
		b.WriteString("]}\n")
		for i := 1; i < n; i++ {
			fmt.Fprintf(&b, "  m%d: *s\n", i)
		}
		return []byte(b.String())
	}
	start := time.Now()
	_, err := Parse(bomb(2000), noEnv)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Parse of a %d-byte alias bomb took %s", len(bomb(2000)), d)
	}
	const want = "YAML aliases (here *s) expand the file by more than 100000 values"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), SyntaxPath+": line ") {
		t.Errorf("Parse(bomb) = %v, want a line and %q", err, want)
	}
	// A file that uses aliases modestly still loads.
	if _, err := Parse(fill(`
issuer: https://sso.example.com
mappings:
  base: &base
    subject: claims.sub
    require: [&verified {expr: 'claims.email_verified == true', message: verify your email}]
  staff: *base
  contractors: {subject: claims.sub, require: [*verified, {expr: 'true', message: m}]}
clients:
  - &web {id: a, public: true, redirect_uris: &uris ["http://127.0.0.1/cb", "https://a.example/cb"]}
  - {id: b, public: true, redirect_uris: *uris}
`), noEnv); err != nil {
		t.Errorf("modest aliases: %v", err)
	}
}

// TestSyntaxErrorLines: every YAML syntax error names its line, also on
// the first line and for an unknown anchor, where the YAML parser gives
// none.
func TestSyntaxErrorLines(t *testing.T) {
	for yml, want := range map[string]string{
		"\t\tissuer: tab\n":                                         "line 1: found character that cannot start any token",
		"issuer: *undefined\n":                                      "line 1: unknown anchor 'undefined' referenced",
		"issuer: https://a.example\nhttp: {<<: *nope}\n":            "line 2: unknown anchor 'nope' referenced",
		"issuer: https://a.example\nx: '*b'\nhttp:\n  addr: [*b]\n": "line 4: unknown anchor 'b' referenced",
		"issuer: [unclosed\n":                                       "line 1: did not find expected ',' or ']'",
		// The YAML parser counts the lines of these from 0.
		"issuer: a\nclients:\n  - id: [unclosed\n":                     "line 3: did not find expected ',' or ']'",
		"issuer: a\nhttp: {addr: x\n":                                  "line 2: did not find expected ',' or '}'",
		"issuer: a\nhttp:\n  addr: x\n - y\n":                          "line 4: did not find expected key",
		"clients:\n  - id: app\n    public: true\n   secret_hash: x\n": "line 4: did not find expected '-' indicator",
		"issuer: a\nhttp: !x!y z\n":                                    "line 2: found undefined tag handle",
		"issuer: a\nb: 'unterminated\n\n":                              "line 2: found unexpected end of stream",
	} {
		_, err := Parse([]byte(yml), noEnv)
		if err == nil || err.Error() != SyntaxPath+": "+want {
			t.Errorf("Parse(%q) = %v, want %q", yml, err, want)
		}
	}
}
