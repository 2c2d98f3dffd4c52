package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// marks returns the line of each "#@name" comment in yml, by name.
func marks(t *testing.T, yml string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i, l := range strings.Split(yml, "\n") {
		for _, m := range regexp.MustCompile(`#@([\w.-]+)`).FindAllStringSubmatch(l, -1) {
			if _, dup := out[m[1]]; dup {
				t.Fatalf("mark %s twice", m[1])
			}
			out[m[1]] = i + 1
		}
	}
	return out
}

const linesYAML = `# A comment before the first key.
issuer: https://a.example #@issuer
defaults: &d
  session: 1h #@anchored
  id_token: 1m
tokens: #@tokens
  <<: *d
  id_token: 5m #@own
items:
  - &item {id: c} #@anchor
clients: #@clients
  - id: app #@app
    redirect_uris:
      - https://a.example/cb
      - https://a.example/cb2 #@cb2
  - {id: b, scopes: [x, y]} #@flow
  - *item #@alias
links:
  groups:
    - [a, b] #@group
mappings:
  m.v2:
    claims:
      https://acme.com/roles: claims.roles #@dotted
      email: | #@block
        claims.email
  m:
    subject: claims.sub #@short
`

func TestLine(t *testing.T) {
	at := marks(t, linesYAML)
	l := LinesOf([]byte(linesYAML))
	for _, tt := range []struct {
		path string
		want int
	}{
		{"", at["issuer"]}, // the file as a whole: its first key
		{"issuer", at["issuer"]},
		{"issuer.scheme", at["issuer"]}, // below a value: the value
		{"tokens", at["tokens"]},
		{"tokens.session", at["anchored"]}, // merged: where it is written
		{"tokens.id_token", at["own"]},     // a key of its own wins over a merged one
		{"tokens.refresh_idle", at["tokens"]},
		{"clients[0]", at["app"]},
		{"clients[0].id", at["app"]},
		{"clients[0].redirect_uris[1]", at["cb2"]},
		{"clients[0].secret_hash", at["app"]}, // missing: its parent mapping
		{"clients[1].scopes[1]", at["flow"]},
		{"clients[2]", at["alias"]},      // an alias: where it is used
		{"clients[2].id", at["anchor"]},  // and inside it: where the value is written
		{"clients[9].id", at["clients"]}, // no such item: the list
		{"clients[x].id", at["clients"]}, // not an index
		{"links.groups[0][1]", at["group"]},
		{"mappings.m.v2.claims.https://acme.com/roles", at["dotted"]},
		{"mappings.m.v2.claims.email", at["block"]},
		{"mappings.m.subject", at["short"]},
		{"nosuchkey.below", at["issuer"]}, // missing at the top: the file
	} {
		if got := l.Line(tt.path); got != tt.want {
			t.Errorf("Line(%q) = %d, want %d", tt.path, got, tt.want)
		}
	}
	for data, want := range map[string]int{"": 1, "# only a comment\n": 1, "---": 1, "issuer: [unclosed\n": 0} {
		if got := LinesOf([]byte(data)).Line("issuer"); got != want {
			t.Errorf("Line in %q = %d, want %d", data, got, want)
		}
	}
	var none *Lines
	if got := none.Line("issuer"); got != 0 {
		t.Errorf("nil Lines: Line = %d, want 0", got)
	}
}

// badLines is a configuration with problems of every kind config finds,
// each marked where its line should point.
const badLines = `issuer: https://sso.example.com/ #@issuer
tokenz: {} #@unknown
tokens:
  session: forever #@duration
storage:
  type: redis #@storage
  redis:
    url: ${NO_SUCH_VARIABLE_FOR_LINES} #@env
connectors:
  - id: Bad_ID #@connid
    type: local
    mapping: nope #@mapping
  - id: other #@conn1
clients:
  - id: app #@client0
    redirect_uris: ["https://app.example.com/cb#frag"] #@redirect
  - id: app #@dupid
    public: true
    redirect_uris: ["http://127.0.0.1:99999/cb"] #@port
`

// TestInspectLines: every problem Inspect and Load report names its line:
// the key's, or for a missing key its parent mapping's.
func TestInspectLines(t *testing.T) {
	at := marks(t, badLines)
	want := map[string]int{
		"issuer":                      at["issuer"],
		"tokenz":                      at["unknown"],
		"tokens.session":              at["duration"],
		"storage.redis.url":           at["env"],
		"connectors[0].id":            at["connid"],
		"connectors[0].mapping":       at["mapping"],
		"connectors[1].type":          at["conn1"], // missing
		"clients[0].secret_hash":      at["client0"],
		"clients[0].redirect_uris[0]": at["redirect"],
		"clients[1].id":               at["dupid"],
		"clients[1].redirect_uris[0]": at["port"],
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(badLines), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, load := range map[string]func(string) (*Config, error){"Inspect": Inspect, "Load": Load} {
		_, err := load(path)
		ps := problemsOf(t, err)
		seen := map[string]bool{}
		for _, p := range ps {
			seen[p.Path] = true
			if p.Line() == 0 {
				t.Errorf("%s: %s has no line", name, p.Error())
				continue
			}
			if w, ok := want[p.Path]; ok && p.Line() != w {
				t.Errorf("%s: %s: line %d, want %d", name, p.Error(), p.Line(), w)
			}
			if _, rest, _ := strings.Cut(p.Message, ": "); (Problem{Message: rest}).Line() != 0 {
				t.Errorf("%s: %s names its line twice", name, p.Error())
			}
		}
		for path := range want {
			if !seen[path] {
				t.Errorf("%s: no problem at %s in:\n%v", name, path, err)
			}
		}
	}
}

// TestSyntaxErrorPath: a file that is not YAML is one problem at "(yaml)"
// with its line.
func TestSyntaxErrorPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("issuer: https://a.example\nclients:\n  - id: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, load := range map[string]func(string) (*Config, error){"Inspect": Inspect, "Load": Load} {
		_, err := load(path)
		ps := problemsOf(t, err)
		if len(ps) != 1 || ps[0].Path != SyntaxPath || ps[0].Line() != 3 {
			t.Errorf("%s = %#v, want one problem at %s on line 3", name, ps, SyntaxPath)
		}
	}
}

func problemsOf(t *testing.T, err error) Errors {
	t.Helper()
	ps, ok := err.(Errors)
	if !ok {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	return ps
}
