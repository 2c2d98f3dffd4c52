package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestJSONDiff(t *testing.T) {
	for _, tc := range []struct {
		name, want, got, diff string
	}{
		{"equal despite layout and key order",
			`{"a": 1, "b": {"x": [1, 2], "y": "z"}}`,
			`{"b":{"y":"z","x":[1,2]},"a":1.0}`,
			""},
		{"changed claim",
			`{"access_token": {"roles": ["superuser"]}, "subject": "s"}`,
			`{"access_token": {"roles": ["user"]}, "subject": "s"}`,
			"  access_token.roles[0]:\n  - \"superuser\"\n  + \"user\""},
		{"missing and extra claims",
			`{"id_token": {"email": "a@b", "name": ""}}`,
			`{"id_token": {"email": "a@b", "groups": ["x"]}}`,
			"  id_token.groups:\n  - (absent)\n  + [\"x\"]\n  id_token.name:\n  - \"\"\n  + (absent)"},
		{"longer array and odd key",
			`{"c": {"https://acme.com/g": [1]}}`,
			`{"c": {"https://acme.com/g": [1, 2]}}`,
			"  c[\"https://acme.com/g\"][1]:\n  - (absent)\n  + 2"},
		{"type change",
			`{"rule": 1}`,
			`{"rule": "1"}`,
			"  rule:\n  - 1\n  + \"1\""},
		{"whole document",
			`[]`,
			`{}`,
			"  (whole document):\n  - []\n  + {}"},
		{"expected not JSON",
			`{`,
			`{}`,
			"expected output is not JSON: unexpected end of JSON input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := jsonDiff([]byte(tc.want), []byte(tc.got)); d != tc.diff {
				t.Errorf("jsonDiff =\n%s\nwant\n%s", d, tc.diff)
			}
		})
	}
}

// sampleReport is the JSON `mapping test` prints for one sample.
type sampleReport struct {
	Connector, Decision, Subject string
	LinkKey                      string `json:"link_key"`
	Linking                      *struct {
		Connectors   []string `json:"connectors"`
		SubjectShown string   `json:"subject_shown"`
		Note         string   `json:"note"`
	} `json:"linking"`
}

func parseReport(t *testing.T, out string) sampleReport {
	t.Helper()
	var r sampleReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, out)
	}
	return r
}

// TestMappingTestConnectorFromFile: a sample that names its connector (or
// workload issuer) needs no flag; a flag that agrees with it is fine; one
// that disagrees stops the command, naming both.
func TestMappingTestConnectorFromFile(t *testing.T) {
	dir := t.TempDir()
	backup := writeFile(t, dir, "backup.json", `{"connector": "backup", "claims": {"sub": "bob", "email": "bob@acme.com", "email_verified": true}}`)
	corp := writeFile(t, dir, "corp.json", `{"connector": "corp", "claims": {"sub": "carol", "email": "carol@acme.com", "email_verified": true}}`)
	ci := `{"sub": "repo:acme/api:ref:refs/heads/main", "repository": "acme/api", "repository_owner": "acme", "ref": "refs/heads/main"}`
	workload := writeFile(t, dir, "workload.json", `{"connector": "github", "workload": true, "claims": `+ci+`}`)
	bare := writeFile(t, dir, "bare.json", `{"sub": "carol", "email": "carol@acme.com", "email_verified": true}`)
	tests := []struct {
		name          string
		args          []string
		wantCode      int
		wantConnector string   // with exit 0
		wantErr       []string // with exit 1: all in stderr
	}{
		{"file names its connector", []string{"--claims", backup}, 0, "backup", nil},
		{"flag agrees", []string{"--claims", corp, "--connector", "corp"}, 0, "corp", nil},
		{"flag disagrees", []string{"--claims", backup, "--connector", "corp"}, 1, "", []string{`--connector "corp"`, `names connector "backup"`, "backup.json"}},
		{"file names a workload issuer", []string{"--claims", workload}, 0, "github", nil},
		{"workload flag agrees", []string{"--claims", workload, "--workload", "github"}, 0, "github", nil},
		{"connector flag for a workload sample", []string{"--claims", workload, "--connector", "github"}, 1, "", []string{`--connector "github"`, `names workload issuer "github"`}},
		{"workload flag for a connector sample", []string{"--claims", corp, "--workload", "github"}, 1, "", []string{`--workload "github"`, `names connector "corp"`}},
		{"bare claims need a flag", []string{"--claims", bare}, 1, "", []string{"bare.json", "--connector"}},
		{"bare claims with a flag", []string{"--claims", bare, "--connector", "corp"}, 0, "corp", nil},
		{"both flags", []string{"--claims", bare, "--connector", "corp", "--workload", "github"}, 1, "", []string{"not both"}},
		{"no claims", []string{"--connector", "corp"}, 1, "", []string{"--claims"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, "", append([]string{"mapping", "test", "--config", mappingConfig}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit = %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			if code != 0 {
				if out != "" {
					t.Errorf("stdout = %q, want nothing on a refusal", out)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(errOut, w) {
						t.Errorf("stderr %q does not contain %q", errOut, w)
					}
				}
				return
			}
			if r := parseReport(t, out); r.Connector != tt.wantConnector || r.Decision != "accepted" {
				t.Errorf("report = %+v, want %s accepted", r, tt.wantConnector)
			}
		})
	}
}

// TestMappingTestLinking: the report says whether the subject shown is
// the one issued. In a links group it is the subject before linking, and
// the report says with which connectors the key links; outside any group
// the key links nothing and the subject is final.
func TestMappingTestLinking(t *testing.T) {
	base, err := os.ReadFile(mappingConfig)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	linked := writeFile(t, dir, "linked.yaml", string(base)+"links:\n  groups:\n    - [corp, backup]\n")
	sample := writeFile(t, dir, "carol.json", `{"connector": "corp", "claims": {"sub": "carol", "email": "Carol@acme.com", "email_verified": true}}`)
	// backup runs the default local mapping, which gives no link key.
	nokey := writeFile(t, dir, "bob.json", `{"connector": "backup", "claims": {"sub": "bob", "email": "bob@acme.com", "email_verified": true}}`)

	code, out, errOut := run(t, "", "mapping", "test", "--config", linked, "--claims", sample)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	r := parseReport(t, out)
	if r.LinkKey != "carol@acme.com" || r.Linking == nil {
		t.Fatalf("report = %s, want link_key carol@acme.com and linking", out)
	}
	if got := strings.Join(r.Linking.Connectors, ","); got != "corp,backup" || r.Linking.SubjectShown != "before_linking" {
		t.Errorf("linking = %+v, want connectors corp,backup and the subject shown before linking", *r.Linking)
	}
	for _, w := range []string{`"carol@acme.com"`, "identity of backup holds it", "another corp identity", "conflict", "reads no storage"} {
		if !strings.Contains(r.Linking.Note, w) {
			t.Errorf("linking note %q does not contain %q", r.Linking.Note, w)
		}
	}

	// Outside any links group: no linking, the subject is final; said on
	// stderr so that stdout stays the report.
	code, out, errOut = run(t, "", "mapping", "test", "--config", mappingConfig, "--claims", sample)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	if r := parseReport(t, out); r.Linking != nil || r.LinkKey != "carol@acme.com" {
		t.Errorf("report = %s, want link_key and no linking", out)
	}
	if !strings.Contains(errOut, "in no links.groups entry") || !strings.Contains(errOut, "final") {
		t.Errorf("stderr = %q, want a note that the key links nothing and the subject is final", errOut)
	}

	// No link key: nothing to say.
	code, out, errOut = run(t, "", "mapping", "test", "--config", linked, "--claims", nokey)
	if r := parseReport(t, out); code != 0 || r.Linking != nil || r.LinkKey != "" || errOut != "" {
		t.Errorf("without a link key: exit %d, report %s, stderr %q; want no linking and no note", code, out, errOut)
	}
}

// TestMappingTestReportKeys: scripts read the report's keys; an accepted
// report has exactly these, in this order.
func TestMappingTestReportKeys(t *testing.T) {
	sample := writeFile(t, t.TempDir(), "carol.json", `{"connector": "corp", "claims": {"sub": "carol", "email": "carol@acme.com", "email_verified": true}}`)
	_, out, _ := run(t, "", "mapping", "test", "--config", mappingConfig, "--claims", sample)
	dec := json.NewDecoder(strings.NewReader(out))
	var keys []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		default:
			if s, ok := tok.(string); ok && depth == 1 {
				keys = append(keys, s)
				var v json.RawMessage // the key's value
				if err := dec.Decode(&v); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if got := strings.Join(keys, " "); got != "connector decision subject link_key id_token access_token" {
		t.Errorf("report keys = %s", got)
	}
}

// TestMappingTestDocsExample runs the commands of docs/mappings.md
// ("Testing a mapping") on the docs' own claims files, with a
// configuration holding the two-company example, and compares the output
// with the one the docs show.
func TestMappingTestDocsExample(t *testing.T) {
	b, err := os.ReadFile("../../docs/mappings.md")
	if err != nil {
		t.Fatal(err)
	}
	type block struct{ lang, text string }
	var blocks []block
	var cur *block
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(l, "```"):
			cur = &block{lang: strings.TrimPrefix(l, "```")}
		case cur != nil && l == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	var links, shown, bare string
	var commands []string
	for _, blk := range blocks {
		switch {
		case blk.lang == "json" && strings.Contains(blk.text, `"tid"`):
			bare = blk.text
		case blk.lang == "yaml" && strings.Contains(blk.text, "\nlinks:") || strings.HasPrefix(blk.text, "links:"):
			links = blk.text
		case blk.lang == "sh" && strings.Contains(blk.text, "fedbroker mapping test"):
			for _, l := range strings.Split(blk.text, "\n") {
				if strings.HasPrefix(l, "fedbroker mapping test ") {
					commands = append(commands, l)
				}
			}
		case blk.lang == "json" && strings.Contains(blk.text, `"decision"`) && shown == "" && commands != nil:
			shown = blk.text
		}
	}
	// The bare claims shown are the file the second command runs.
	if file, err := os.ReadFile("../../docs/examples/pat-entra.json"); err != nil || jsonDiff(file, []byte(bare)) != "" {
		t.Errorf("the bare claims shown in the docs differ from docs/examples/pat-entra.json (%v):\n%s", err, jsonDiff(file, []byte(bare)))
	}
	if links == "" || len(commands) < 2 || shown == "" {
		t.Fatalf("docs/mappings.md lacks the two-company example (%t), two mapping test commands (%d) or their output (%t)", links != "", len(commands), shown != "")
	}
	dir := t.TempDir()
	cfg := writeFile(t, dir, "fedbroker.yaml", `issuer: https://sso.acme.com
storage:
  type: memory
connectors:
  - id: google
    type: google
    mapping: google-link
    config:
      client_id: 123456789012-abc.apps.googleusercontent.com
      client_secret: GOCSPX-example
  - id: entra
    type: azuread
    mapping: entra-link
    config:
      client_id: 5f1e0c3a-8b7d-4e2f-9a6b-1c2d3e4f5a6b
      client_secret: example
      tenant: 9188040d-6c67-4c5b-b112-36a304b66dad
clients:
  - id: app
    public: true
    redirect_uris: ["http://127.0.0.1:5555/callback"]
`+links)
	var keys []string
	for i, c := range commands {
		args := strings.Fields(c)[1:]
		for j, a := range args {
			switch {
			case a == "fedbroker.yaml":
				args[j] = cfg
			case strings.HasPrefix(a, "docs/"):
				args[j] = "../../" + a
			}
		}
		code, out, errOut := run(t, "", args...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", c, code, out, errOut)
		}
		if i == 0 {
			if d := jsonDiff([]byte(shown), []byte(out)); d != "" {
				t.Errorf("%s: output differs from the docs (-docs +actual):\n%s", c, d)
			}
		}
		keys = append(keys, parseReport(t, out).LinkKey)
	}
	if keys[0] != "pat@acme.com" || keys[1] != keys[0] {
		t.Errorf("link keys %q, want pat@acme.com from both connectors", keys)
	}
}
