package workbench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

// A password hash for users nobody signs in as here.
const unusedHash = "$2a$04$J4oZ5bWvX1JvS7mLr7cQnOe0l3HZ2c3Xx0rEJxq3Zo4iG0gk1n5tK"

const testConfig = `
issuer: https://broker.test
storage: {type: memory}
connectors:
  - id: corp
    type: local
    name: Corp directory
    mapping: corp
    config:
      users:
        - {username: bob, password_hash: %[1]q, email: bob@acme.com, name: Bob, groups: [eng]}
  - id: partner
    type: local
    mapping: corp
    config:
      users:
        - {username: pat, password_hash: %[1]q, email: pat@acme.com}
  - id: plain
    type: local
    config:
      users:
        - {username: zed, password_hash: %[1]q, email: zed@acme.com}
mappings:
  corp:
    require:
      - expr: 'emailDomain(claims.?email.orValue("")) == "acme.com"'
        message: Sign in with your acme.com account.
    link: 'claims.?email_verified.orValue(false) == true ? claims.email.lowerAscii() : ""'
    claims:
      email: claims.?email
      name: claims.?name
      groups: claims.?groups
      dept:
        expr: claims.?dept
        in: access_token
links:
  groups: [[corp, partner]]
clients:
  - id: app
    name: App
    public: true
    redirect_uris: ["http://127.0.0.1:9999/cb"]
    scopes: [openid, profile, email]
    audiences: [api.acme.com]
  - id: full
    name: Full
    public: true
    redirect_uris: ["http://127.0.0.1:9998/cb"]
    connectors: [plain]
`

type fixture struct {
	wb    *Workbench
	cfg   *config.Config
	rt    *runtime.Runtime
	store storage.Storage
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, testConfig, unusedHash), func(string) string { return "" })
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	rt, err := runtime.Compile(context.Background(), cfg, runtime.Deps{Issuer: cfg.Issuer})
	if err != nil {
		t.Fatalf("runtime.Compile: %v", err)
	}
	t.Cleanup(rt.Close)
	store := memory.New()
	now := time.Now().UTC().Truncate(time.Second) // the memory store expires records by the real clock
	wb := New(Deps{Issuer: cfg.Issuer, Runtime: func() *runtime.Runtime { return rt }, Config: func() *config.Config { return cfg }, Store: store, Now: func() time.Time { return now }})
	return &fixture{wb: wb, cfg: cfg, rt: rt, store: store}
}

func bobClaims() map[string]any {
	return map[string]any{"sub": "bob", "email": "Bob@acme.com", "email_verified": true, "name": "Bob", "groups": []any{"eng"}, "dept": "R&D"}
}

func TestCompileDraftPositions(t *testing.T) {
	for _, tc := range []struct {
		name, text    string
		path          string
		line, col     int
		messageSubstr string
	}{
		{
			name:          "yaml syntax",
			text:          "claims:\n  email: claims.email\n   name: x\n",
			line:          3,
			col:           4,
			messageSubstr: "mapping values are not allowed",
		},
		{
			name:          "unknown key",
			text:          "claims:\n  email: claims.email\nclams:\n  x: y\n",
			path:          "clams",
			line:          3,
			col:           1,
			messageSubstr: "unknown key (did you mean claims?)",
		},
		{
			name:          "unknown key in a rule",
			text:          "require:\n  - expr: 'true'\n    mesage: hi\n",
			path:          "require[0].mesage",
			line:          3,
			col:           5,
			messageSubstr: "unknown key (did you mean message?)",
		},
		{
			name: "cel error in a plain scalar",
			// column 1 of the expression: the unknown name clams.
			text:          "claims:\n  email: claims.email\n  groups: clams.?groups.orValue([])\n",
			path:          "claims.groups",
			line:          3,
			col:           11,
			messageSubstr: `unknown name "clams"`,
		},
		{
			name:          "cel error in a single-quoted scalar",
			text:          "require:\n  - expr: 'claims.hd = \"acme.com\"'\n    message: no\n",
			path:          "require[0].expr",
			line:          2,
			col:           22,
			messageSubstr: `"=" is not an operator`,
		},
		{
			name:          "cel error in a long-form claim",
			text:          "claims:\n  groups:\n    expr: claims.uid + 1\n    in: access_token\n",
			path:          "claims.groups",
			line:          3,
			col:           22,
			messageSubstr: `"+" needs claims.uid to be an int`,
		},
		{
			name:          "cel error on the second line of a block scalar",
			text:          "link: |\n  claims.?email_verified.orValue(false) == true\n    && clams.email != \"\" ? \"x\" : \"\"\n",
			path:          "link",
			line:          3,
			col:           8,
			messageSubstr: `unknown name "clams"`,
		},
		{
			name:          "cel error in a double-quoted scalar with escapes",
			text:          "claims:\n  hd: \"claims.hd == \\\"x\\\" && clams\"\n",
			path:          "claims.hd",
			line:          2,
			col:           30,
			messageSubstr: `unknown name "clams"`,
		},
		{
			name:          "cel error in a folded block",
			text:          "claims:\n  name: >-\n    claims.?name.orValue(\"\")\n    + clams.x\n",
			path:          "claims.name",
			line:          4,
			col:           7,
			messageSubstr: `unknown name "clams"`,
		},
		{
			name:          "reserved claim",
			text:          "claims:\n  email: claims.email\n  sub: claims.sub\n",
			path:          "claims.sub",
			line:          3,
			col:           3,
			messageSubstr: "registered claim",
		},
		{
			name:          "missing message",
			text:          "require:\n  - expr: 'true'\n",
			path:          "require[0].message",
			line:          2,
			col:           5,
			messageSubstr: "a message is required",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := CompileDraft(tc.text)
			if d.OK() {
				t.Fatalf("CompileDraft(%q) compiled", tc.text)
			}
			var found *Problem
			for i, p := range d.Problems {
				if strings.Contains(p.Message, tc.messageSubstr) {
					found = &d.Problems[i]
				}
			}
			if found == nil {
				t.Fatalf("no problem with %q in %v", tc.messageSubstr, d.Problems)
			}
			if found.Path != tc.path || found.Line != tc.line || found.Column != tc.col {
				t.Errorf("problem = %s (path %q), want path %q at %d:%d", found, found.Path, tc.path, tc.line, tc.col)
			}
			if strings.HasPrefix(found.Message, "line ") || strings.HasPrefix(found.Message, "column ") {
				t.Errorf("message still names its position: %q", found.Message)
			}
		})
	}
}

func TestCompileDraftOK(t *testing.T) {
	f := newFixture(t)
	text, err := f.wb.RunningText(Target{ID: "corp"})
	if err != nil {
		t.Fatal(err)
	}
	d := CompileDraft(text)
	if !d.OK() {
		t.Fatalf("the running mapping's text does not compile: %v\n%s", d.Problems, text)
	}
	if !reflect.DeepEqual(d.Spec, f.cfg.Mappings["corp"]) {
		t.Errorf("round trip changed the mapping:\n%s\ngot  %#v\nwant %#v", text, d.Spec, f.cfg.Mappings["corp"])
	}
	// A connector on its type's default mapping starts from that default.
	text, err = f.wb.RunningText(Target{ID: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	if d := CompileDraft(text); !d.OK() || len(d.Spec.Claims) == 0 {
		t.Errorf("default mapping text: ok=%v claims=%d problems=%v\n%s", d.OK(), len(d.Spec.Claims), d.Problems, text)
	}
}

// The workbench's report is `fedbroker mapping test --explain`'s: the
// command compiles the connector's mapping with runtime.CompileMapping
// and runs runtime.RunMapping.
func TestEvaluateMatchesMappingTest(t *testing.T) {
	f := newFixture(t)
	in := runtime.MappingInput{Claims: bobClaims()}
	ev, err := f.wb.Evaluate(context.Background(), Request{Target: Target{ID: "corp"}, Input: in})
	if err != nil {
		t.Fatal(err)
	}
	m, typ, err := runtime.CompileMapping(f.cfg, "corp")
	if err != nil {
		t.Fatal(err)
	}
	in.Connector = "corp"
	want := runtime.RunMapping(context.Background(), m, typ, in, true)
	got, _ := json.Marshal(ev.Report)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Errorf("report\n got %s\nwant %s", got, exp)
	}
	if ev.Report.Decision != "accepted" || ev.Report.LinkKey != "bob@acme.com" {
		t.Errorf("decision %s link key %q", ev.Report.Decision, ev.Report.LinkKey)
	}
	// Every expression has its row.
	if len(ev.Rules) != len(want.Steps) || ev.Rules[0].Path != "require[0].expr" || ev.Rules[0].Result != "passed" {
		t.Errorf("rules = %+v", ev.Rules)
	}
}

func TestEvaluateRefusedShowsRuleMessage(t *testing.T) {
	f := newFixture(t)
	claims := bobClaims()
	claims["email"] = "bob@evil.com"
	ev, err := f.wb.Evaluate(context.Background(), Request{Target: Target{ID: "corp"}, Input: runtime.MappingInput{Claims: claims}, Client: "app", Scopes: []string{"openid"}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Report.Decision != "rejected" || ev.Rules[0].Result != "refused" || !strings.Contains(ev.Rules[0].Message, "Sign in with your acme.com account.") {
		t.Errorf("decision %s, rule %+v", ev.Report.Decision, ev.Rules[0])
	}
	if ev.Tokens != nil || ev.Linking != nil {
		t.Errorf("a refused sign-in has tokens %+v / linking %+v", ev.Tokens, ev.Linking)
	}
}

func TestTokenPreviewRespectsScopesAndClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	in := runtime.MappingInput{Claims: bobClaims()}
	// app may not ask for groups: groups are withheld from both tokens,
	// and asking for the scope is a warning.
	ev, err := f.wb.Evaluate(ctx, Request{Target: Target{ID: "corp"}, Input: in, Client: "app", Scopes: []string{"openid", "email"}})
	if err != nil {
		t.Fatal(err)
	}
	tp := ev.Tokens
	if tp == nil || tp.IDToken == nil {
		t.Fatalf("tokens = %+v", tp)
	}
	if _, ok := tp.IDToken.Claims["groups"]; ok {
		t.Errorf("ID token has groups without the groups scope: %v", tp.IDToken.Claims)
	}
	if !strings.Contains(tp.AccessToken.Withheld["groups"], "groups scope") {
		t.Errorf("withheld = %v", tp.AccessToken.Withheld)
	}
	if _, ok := tp.IDToken.Claims["name"]; ok {
		t.Errorf("name released without profile: %v", tp.IDToken.Claims)
	}
	if tp.IDToken.Claims["email"] != "Bob@acme.com" || tp.IDToken.Claims["aud"] != "app" || tp.AccessToken.Claims["aud"] != "api.acme.com" {
		t.Errorf("id token %v access token %v", tp.IDToken.Claims, tp.AccessToken.Claims)
	}
	if _, ok := tp.IDToken.Claims["dept"]; ok {
		t.Errorf("dept is access_token only: %v", tp.IDToken.Claims)
	}
	if tp.AccessToken.Claims["dept"] != "R&D" {
		t.Errorf("access token lacks dept: %v", tp.AccessToken.Claims)
	}
	var groupsRule *Rule
	for i := range ev.Rules {
		if ev.Rules[i].Path == "claims.groups" {
			groupsRule = &ev.Rules[i]
		}
	}
	if groupsRule == nil || !strings.Contains(groupsRule.Message, "withheld from the ID token: needs the groups scope") {
		t.Errorf("groups rule = %+v", groupsRule)
	}

	ev, err = f.wb.Evaluate(ctx, Request{Target: Target{ID: "corp"}, Input: in, Client: "app", Scopes: []string{"openid", "groups"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ev.Tokens.Warnings, func(w string) bool { return strings.Contains(w, `scope "groups"`) }) {
		t.Errorf("warnings = %v", ev.Tokens.Warnings)
	}
	// app lists no connectors: it offers them all.
	if slices.ContainsFunc(ev.Tokens.Warnings, func(w string) bool { return strings.Contains(w, "does not offer") }) {
		t.Errorf("app offers every connector, warnings = %v", ev.Tokens.Warnings)
	}
	if got := ev.Tokens.IDToken.Claims["groups"]; !reflect.DeepEqual(got, []any{"eng"}) {
		t.Errorf("groups with the groups scope = %v", got)
	}

	// full lists only connector plain; no openid: no ID token.
	ev, err = f.wb.Evaluate(ctx, Request{Target: Target{ID: "corp"}, Input: in, Client: "full", Scopes: []string{"profile"}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Tokens.IDToken != nil {
		t.Errorf("ID token without openid: %v", ev.Tokens.IDToken.Claims)
	}
	if !slices.ContainsFunc(ev.Tokens.Warnings, func(w string) bool { return strings.Contains(w, "does not offer connector corp") }) {
		t.Errorf("warnings = %v", ev.Tokens.Warnings)
	}
}

func TestLinkingDecisionReadsWithoutWriting(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	in := runtime.MappingInput{Claims: bobClaims()}
	ev, err := f.wb.Evaluate(ctx, Request{Target: Target{ID: "corp"}, Input: in})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Linking.Decision != "new" {
		t.Errorf("linking = %+v", ev.Linking)
	}
	if links, _ := f.store.ListLinks(ctx); len(links) != 0 {
		t.Errorf("the evaluation wrote links: %v", links)
	}
	// Pat of partner holds the key: Bob of corp gets Pat's subject.
	if _, _, err := f.store.CreateLink(ctx, storage.Link{Key: "bob@acme.com", Subject: "pat-subject", ConnectorID: "partner", UpstreamSubject: "pat", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ev, err = f.wb.Evaluate(ctx, Request{Target: Target{ID: "corp"}, Input: in, Client: "app", Scopes: []string{"openid"}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Linking.Decision != "existing" || ev.Linking.Subject != "pat-subject" || ev.Tokens.IDToken.Claims["sub"] != "pat-subject" {
		t.Errorf("linking = %+v, sub %v", ev.Linking, ev.Tokens.IDToken.Claims["sub"])
	}
	// Another corp identity with the same key is a conflict.
	other := bobClaims()
	other["sub"] = "bob2"
	if _, _, err := f.store.CreateLink(ctx, storage.Link{Key: "x@acme.com", Subject: "s", ConnectorID: "corp", UpstreamSubject: "x", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	other["email"] = "x@acme.com"
	ev, err = f.wb.Evaluate(ctx, Request{Target: Target{ID: "corp"}, Input: runtime.MappingInput{Claims: other}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Linking.Decision != "conflict" {
		t.Errorf("linking = %+v", ev.Linking)
	}
	// A connector in no links group links nothing.
	ev, err = f.wb.Evaluate(ctx, Request{Target: Target{ID: "plain"}, Input: in, Draft: CompileDraft("link: '\"k\"'\n")})
	if err != nil {
		t.Fatal(err)
	}
	if !ev.Draft || ev.Linking.Decision != "not_linked" {
		t.Errorf("draft %v linking = %+v", ev.Draft, ev.Linking)
	}
}

func TestParseInputSAML(t *testing.T) {
	attrs := `[{"name": "urn:oid:0.9.2342.19200300.100.1.3", "values": ["bob@acme.com"]},
	           {"name": "groups", "values": ["eng"]}, {"name": "groups", "values": ["ops"]}]`
	in, form, err := ParseInput(attrs)
	if err != nil || form != FormAttributes {
		t.Fatalf("ParseInput(attributes) = %v, %q, %v", in, form, err)
	}
	if !reflect.DeepEqual(in.Claims["groups"], []any{"eng", "ops"}) || !reflect.DeepEqual(in.Claims["urn:oid:0.9.2342.19200300.100.1.3"], []any{"bob@acme.com"}) {
		t.Errorf("claims = %v", in.Claims)
	}

	assertion := `<?xml version="1.0"?>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">
  <saml:Assertion ID="a1">
    <saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">bob-123</saml:NameID></saml:Subject>
    <saml:AttributeStatement>
      <saml:Attribute Name="urn:oid:0.9.2342.19200300.100.1.3"><saml:AttributeValue>bob@acme.com</saml:AttributeValue></saml:Attribute>
      <saml:Attribute Name="groups"><saml:AttributeValue>eng</saml:AttributeValue><saml:AttributeValue>R&amp;D</saml:AttributeValue></saml:Attribute>
    </saml:AttributeStatement>
  </saml:Assertion>
</samlp:Response>`
	in, form, err = ParseInput(assertion)
	if err != nil || form != FormAssertion {
		t.Fatalf("ParseInput(assertion) = %v, %q, %v", in, form, err)
	}
	want := map[string]any{
		"urn:oid:0.9.2342.19200300.100.1.3": []any{"bob@acme.com"},
		"groups":                            []any{"eng", "R&D"},
		"nameid":                            "bob-123",
		"nameid_format":                     "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
	}
	if !reflect.DeepEqual(in.Claims, want) || in.UpstreamSubject != "bob-123" {
		t.Errorf("claims = %v, sub %q", in.Claims, in.UpstreamSubject)
	}

	// The SAML claims run through a mapping written for them.
	f := newFixture(t)
	d := CompileDraft("claims:\n  email: 'claims[?\"urn:oid:0.9.2342.19200300.100.1.3\"][?0]'\n  groups: claims[?\"groups\"]\n")
	if !d.OK() {
		t.Fatal(d.Problems)
	}
	ev, err := f.wb.Evaluate(context.Background(), Request{Target: Target{ID: "plain"}, Input: in, Draft: d})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Report.IDToken["email"] != "bob@acme.com" || !reflect.DeepEqual(ev.Report.IDToken["groups"], []any{"eng", "R&D"}) {
		t.Errorf("report = %+v", ev.Report)
	}

	for _, bad := range []string{
		`<!DOCTYPE x [<!ENTITY a "b">]><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">&a;</saml:Assertion>`,
		`<samlp:Response xmlns:samlp="p"><saml:EncryptedAssertion xmlns:saml="a"/></samlp:Response>`,
		`<x/>`,
		`[{"name": "a", "values": [1]}]`,
		`{"a": `,
	} {
		if _, _, err := ParseInput(bad); err == nil {
			t.Errorf("ParseInput(%q) accepted", bad)
		}
	}
}

func TestCompareDetectsChangedClaim(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name string, v any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bob.json", map[string]any{"connector": "corp", "claims": bobClaims()})
	write("pat.json", map[string]any{"connector": "partner", "claims": map[string]any{"sub": "pat", "email": "pat@acme.com", "email_verified": true}})
	write("zed.json", map[string]any{"connector": "plain", "claims": map[string]any{"sub": "zed"}})
	write("bare.json", map[string]any{"sub": "nobody"})
	if err := os.WriteFile(filepath.Join(dir, "bob.golden"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	samples, problems, err := LoadSamples(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 3 || len(problems) != 1 || !strings.HasPrefix(problems[0], "bare:") {
		t.Fatalf("samples %v problems %v", samples, problems)
	}
	running, _ := f.wb.RunningText(Target{ID: "corp"})
	draft := CompileDraft(strings.Replace(running, "groups: claims.?groups", "groups: claims.?groups.orValue([]).map(g, \"acme-\" + g)", 1))
	if !draft.OK() {
		t.Fatalf("draft: %v\n%s", draft.Problems, draft.Text)
	}
	samples = append(samples, Sample{Name: "session-bob", Origin: "session", Input: runtime.MappingInput{Connector: "corp", Claims: map[string]any{"sub": "b", "email": "b@acme.com"}}})
	cs, err := f.wb.Compare(ctx, Target{ID: "corp"}, draft, samples)
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, c := range cs {
		status[c.Sample.Name] = c.Status
		if c.Sample.Name == "bob" {
			if len(c.Diff) != 2 || c.Diff[0].Path != "access_token.groups[0]" || c.Diff[0].Running != `"eng"` || c.Diff[0].Draft != `"acme-eng"` {
				t.Errorf("bob diff = %+v", c.Diff)
			}
		}
	}
	// pat runs the same named mapping through partner: compared too. zed's
	// connector runs another mapping. The session sample has no groups:
	// the draft gives it an empty list.
	want := map[string]string{"bob": "differs", "pat": "differs", "zed": "skipped", "session-bob": "differs"}
	if !reflect.DeepEqual(status, want) {
		t.Errorf("statuses = %v, want %v", status, want)
	}
	same := CompileDraft(running)
	cs, err = f.wb.Compare(ctx, Target{ID: "corp"}, same, samples[:1])
	if err != nil || cs[0].Status != "same" {
		t.Errorf("the running mapping's own text: %+v, %v", cs, err)
	}
}

func TestTestSignInRecords(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, _, err := f.wb.StartTestSignIn(ctx, "nope", nil); err == nil {
		t.Error("started a test sign-in with an unknown connector")
	}
	handle, loginURL, err := f.wb.StartTestSignIn(ctx, "corp", []string{"openid", "groups"})
	if err != nil {
		t.Fatal(err)
	}
	if len(handle) < 43 || loginURL != "https://broker.test/login/corp?req="+handle {
		t.Errorf("handle %q url %q", handle, loginURL)
	}
	rec, err := f.store.GetAuthRequest(ctx, handle)
	if err != nil || rec.Test == nil || !rec.Test.Start || rec.ClientID != "" || rec.RedirectURI != "" || rec.BrowserBinding != "" {
		t.Fatalf("start record %+v, %v", rec, err)
	}
	if _, err := f.wb.TestSignInResult(ctx, handle); err != ErrTestPending {
		t.Errorf("result before sign-in: %v", err)
	}
	if _, err := f.wb.TestSignInResult(ctx, "unknown"); err != ErrTestPending && err != ErrTestGone {
		t.Errorf("unknown handle: %v", err)
	}
}
