package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fuzzEnv stands in for the environment: the variables the example
// configurations use, with values that pass validation, plus a huge one.
func fuzzEnv() func(string) string {
	pw, sh := testHashes()
	vars := map[string]string{
		"FEDBROKER_KEK":         "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
		"FEDBROKER_REDIS_URL":   "redis://redis:6379/0",
		"FEDBROKER_CONFIG_DIR":  "/etc/fedbroker",
		"FEDBROKER_ADMIN_TOKEN": strings.Repeat("t", 40),
		"ISSUER":                "https://sso.example.com",
		"PORT":                  "5556",
		"HUGE":                  strings.Repeat("A", 1<<16),
		"DOLLAR":                "${ISSUER}", // never expanded twice
		"NEWLINE":               "a\nb: c",
	}
	return func(name string) string {
		switch {
		case strings.HasSuffix(name, "_SECRET_HASH"):
			return sh
		case strings.HasSuffix(name, "_PASSWORD_HASH"):
			return pw
		}
		if v, ok := vars[name]; ok {
			return v
		}
		if strings.HasPrefix(name, "SET_") {
			return "value-of-" + name
		}
		return ""
	}
}

// hostileYAML are seeds that attack the loader rather than the schema.
func hostileYAML() []string {
	var bomb strings.Builder
	bomb.WriteString("issuer: https://sso.example.com\nmappings:\n  m0: &s {require: [")
	for range 40 {
		bomb.WriteString("&r {expr: 'true', message: m},")
	}
	bomb.WriteString("]}\n")
	for i := 1; i < 40; i++ {
		fmt.Fprintf(&bomb, "  m%d: *s\n", i)
	}
	laughs := "issuer: https://sso.example.com\n" +
		"x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" +
		"x1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n" +
		"x2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n" +
		"x3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n" +
		"links: {groups: [*a3, *a3, *a3, *a3]}\n"
	return []string{
		``, `{}`, `[]`, `null`, `~`, `---`, "--- \n...\n", "issuer: https://a.example\n---\nissuer: https://b.example\n",
		"issuer: [unclosed\n", "\t\tissuer: tab\n", "issuer: \"\\xff\"\n", "\xff\xfe", "issuer: !!binary aGVsbG8=\n",
		laughs, bomb.String(),
		"issuer: https://sso.example.com\nclients: &c [{id: a, public: true, redirect_uris: ['http://127.0.0.1/cb'], connectors: *c}]\n",
		"a: &a {b: *a}\n", "issuer: https://a.example\ntokens: &t {<<: *t}\n", "issuer: https://a.example\nhttp: &h {tls: *h}\n",
		"issuer: https://a.example\ntokens: &t\n  session: 1h\n  <<: [*t]\n", "issuer: https://a.example\nlinks: {groups: &g [*g]}\n", "issuer: &i https://sso.example.com\nhttp: {addr: *i}\n", "issuer: *undefined\n",
		"issuer: https://sso.example.com\ntokens: {<<: {session: 1h}, <<: [{id_token: 1m}, {access_token: 2m}]}\n",
		"issuer: https://sso.example.com\nhttp: {<<: *nope}\n",
		strings.Repeat("[", 5000) + strings.Repeat("]", 5000),
		strings.Repeat("- ", 3000) + "x\n",
		"issuer: https://sso.example.com\nlinks: {groups: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "}\n",
		"issuer: " + strings.Repeat("x", 1<<17) + "\n",
		"issuer: https://sso.example.com\nclients:\n  - id: " + strings.Repeat("é", 5000) + "\n",
		"issuer: 5\ntokens: {session: true}\nclients: {id: a}\nconnectors: hello\nsigning: [1, 2]\n",
		"issuer: https://sso.example.com\ntokens: {session: 99999999999999999999h, auth_code: -0s, id_token: 1e9}\n",
		"issuer: ${ISSUER}\nhttp: {addr: \"127.0.0.1:${PORT}\"}\n",
		"issuer: ${ISSUER}${HUGE}\n", "issuer: ${DOLLAR}\n", "issuer: ${NEWLINE}\n", "issuer: ${UNSET}\n",
		"issuer: ${UNSET:-https://sso.example.com}\n", "issuer: ${", "issuer: ${1BAD}\n", "issuer: $${ISSUER}\n",
		"${ISSUER}: key\n", "issuer: https://sso.example.com\nsigning: {key_encryption_key: ${FEDBROKER_KEK}}\n",
		"issuer: https://sso.example.com\nclients:\n  - {id: a, public: true, redirect_uris: ['http://127.0.0.1:0/cb', 'http://127.0.0.1:/cb', 'http://[::1]:99999/cb']}\n",
		"issuer: https://sso.example.com\nclients:\n  - {id: a, secret_hash: ${WIKI_SECRET_HASH}, redirect_uris: ['http://127.0.0.1:8080/cb']}\n",
		"issuer: https://sso.example.com\nmappings: {m: {claims: {x: {expr: 1, in: [a]}}, tables: {t: [1]}}}\n",
		"issuer: https://sso.example.com\nconnectors:\n  - {id: a, type: local, config: [1, 2]}\n  - {id: a, type: nope}\n",
		"issuer: https://sso.example.com\nworkloads: [{id: w, config: {x: *y}}]\n",
		"issuer: https://sso.example.com\n? [complex, key]\n: value\n", "issuer: https://sso.example.com\n!!null : x\n",
		"issuer: https://sso.example.com\nhttp: !!map {addr: !!int 5}\n", "%YAML 1.1\n---\nissuer: yes\n",
	}
}

// lineRe finds a line number in a problem's message.
var lineRe = regexp.MustCompile(`\bline \d+\b`)

// FuzzLoadConfig feeds arbitrary bytes to the loader. Properties: it never
// panics; every problem names a YAML path or a line; a configuration that
// loads passes its own validation, and Inspect's view (decode) agrees with
// Parse; loading takes time in proportion to the file, not to what its
// aliases expand to.
func FuzzLoadConfig(f *testing.F) {
	f.Add(fill(goodYAML))
	for _, glob := range []string{"../../deploy/examples/*.yaml", "../../deploy/kubernetes/configmap.yaml", "../../cmd/fedbroker/testdata/*.yaml", "testdata/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
			}
		}
	}
	for _, s := range hostileYAML() {
		f.Add([]byte(s))
	}
	getenv := fuzzEnv()
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		cfg, err := Parse(data, getenv)
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("Parse of %d bytes took %s", len(data), d)
		}
		if err != nil {
			if cfg != nil {
				t.Fatal("Parse returned a Config together with an error")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse error %v (%T) is not Errors", err, err)
			}
			if len(es) == 0 {
				t.Fatal("Parse returned an empty Errors")
			}
			for _, p := range es {
				if p.Path == "" && !lineRe.MatchString(p.Message) {
					t.Errorf("problem %q names neither a YAML path nor a line", p.Message)
				}
				if p.Message == "" {
					t.Errorf("problem at %q has no message", p.Path)
				}
			}
		} else {
			if cfg == nil {
				t.Fatal("Parse returned neither a Config nor an error")
			}
			if ps := cfg.Validate(); len(ps) > 0 {
				t.Fatalf("a configuration that loaded fails its own validation: %v", Errors(ps))
			}
			_ = cfg.Notes()
		}

		// Inspect decodes the same way but keeps the Config.
		icfg, ips, lines := decode(data, getenv)
		switch {
		case err == nil && (len(ips) > 0 || icfg == nil):
			t.Fatalf("Parse accepted what decode refuses: %v", Errors(ips))
		case err != nil && len(ips) == 0:
			t.Fatalf("decode accepted what Parse refuses: %v", err)
		case err != nil && err.Error() != Errors(ips).Error():
			t.Fatalf("Parse and decode disagree:\n%v\n---\n%v", err, Errors(ips))
		}
		// Inspect and Load place every problem at a line of the file.
		for _, p := range lines.Locate(ips) {
			if n := p.Line(); n < 1 || n > maxLines(data) {
				t.Errorf("problem %q: line %d is not a line of the file", p.Error(), n)
			}
		}
	})
}

// maxLines is the most lines data can have: YAML also breaks lines at a
// lone CR and at NEL, LS and PS.
func maxLines(data []byte) int {
	n := 1
	for _, sep := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
		n += strings.Count(string(data), sep)
	}
	return n
}
