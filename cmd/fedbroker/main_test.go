package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
)

// run runs the real command line in-process.
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

const goodConfig = `
issuer: http://127.0.0.1:5556
storage:
  type: memory
connectors:
  - id: local
    type: local
    config:
      users:
        - username: alice
          password_hash: "$2a$04$vN63dHRpceNF65FBm.G9PuSPRbGX7H9NB8yrsSpPChg56H./A3Dzi"
          email: alice@acme.com
clients:
  - id: app
    public: true
    redirect_uris: ["http://127.0.0.1:5555/callback"]
`

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		config   string
		args     []string
		wantCode int
		wantOut  []string // in stdout on success, stderr on failure
	}{
		{"good", goodConfig, nil, 0, []string{": OK", "issuer:     http://127.0.0.1:5556", "- local (local)", "- app (public)"}},
		{"good with --config", goodConfig, []string{"--config"}, 0, []string{": OK"}},
		{"confidential loopback note", goodConfig + `  - id: cli
    secret_hash: "$2a$04$vN63dHRpceNF65FBm.G9PuSPRbGX7H9NB8yrsSpPChg56H./A3Dzi"
    redirect_uris: ["http://127.0.0.1:8400/cb"]
`, nil, 0, []string{": OK", "- cli (confidential)", "note: clients[1].redirect_uris[0]: ", "port included"}},
		{"many problems", `
issuer: ftp://broker.example.com
storage:
  type: etcd
admin:
  token: short
connectors:
  - id: local
    type: nosuchtype
  - id: local2
    type: local
    mapping: missing
    config:
      users:
        - username: alice
          password_hash: plaintext
clients:
  - id: app
    redirect_uris: ["http://127.0.0.1:5555/callback"]
`, nil, 1, []string{"7 problem(s):", "  issuer: ", "  storage.type: ", "  admin.token: ", "  connectors[0].type: ", "  connectors[1].mapping: ", "  connectors[1].config.users[0].password_hash: ", "  clients[0]"}},
		{"block problems", `
issuer: http://127.0.0.1:5556
connectors:
  - id: local
    type: nosuchtype
  - id: local2
    type: local
    config:
      users:
        - username: alice
          password_hash: plaintext
          pasword: x
workloads:
  - id: gh
    config: {audiences: [x]}
`, []string{"--offline"}, 1, []string{"4 problem(s):", "  connectors[0].type: line 5: unknown connector type \"nosuchtype\" (known: azuread, google, ldap, local, oidc, saml)", "  connectors[1].config.users[0].pasword: line 12: unknown key", "  connectors[1].config.users[0].password_hash: line 11: not a bcrypt hash", "  workloads[0].config.issuer: line 15: required"}},
		{"not YAML", "issuer: [unclosed\n", nil, 1, []string{"bad.yaml: 1 problem(s):\n  (yaml): line 1: did not find expected ',' or ']'\n"}},
		{"unknown key", goodConfig + "tokenz: {}\n", nil, 1, []string{"tokenz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "bad.yaml"
			if tt.wantCode == 0 {
				name = "good.yaml"
			}
			path := writeFile(t, t.TempDir(), name, tt.config)
			args := append([]string{"check"}, append(tt.args, path)...)
			code, out, errOut := run(t, "", args...)
			if code != tt.wantCode {
				t.Fatalf("check exit = %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			where := out
			if tt.wantCode != 0 {
				where = errOut
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(where, want) {
					t.Errorf("output lacks %q:\n%s", want, where)
				}
			}
		})
	}
	if code, _, errOut := run(t, "", "check", filepath.Join(dir, "absent.yaml")); code != 1 || !strings.Contains(errOut, "absent.yaml") {
		t.Errorf("check of a missing file = %d %q, want 1 naming the file", code, errOut)
	}
	if code, _, _ := run(t, "", "check"); code != 1 {
		t.Errorf("check without a file = %d, want 1", code)
	}
}

// TestCheckOffline: an OpenID Connect connector whose issuer does not
// answer fails a full check (discovery) but passes --offline.
func TestCheckOffline(t *testing.T) {
	cfg := strings.Replace(goodConfig, "\nclients:\n", `
  - id: corp
    type: oidc
    config:
      issuer: http://`+freeAddr(t)+`
      client_id: fedbroker
      client_secret: upstream-secret
clients:
`, 1)
	path := writeFile(t, t.TempDir(), "oidc.yaml", cfg)
	code, out, errOut := run(t, "", "check", path)
	if code != 1 || !strings.Contains(errOut, "connectors[1].config") {
		t.Errorf("check = %d, want 1 with connectors[1].config\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, out, errOut = run(t, "", "check", "--offline", path)
	if code != 0 || !strings.Contains(out, "- corp (oidc)") {
		t.Errorf("check --offline = %d, want 0 listing corp\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

func TestHashSecret(t *testing.T) {
	tests := []struct {
		name, stdin, secret, prefix string
	}{
		{"short secret: bcrypt", "a-short-secret\n", "a-short-secret", "$2a$"},
		{"long secret: sha256", strings.Repeat("L0ng-", 8) + "\r\n", strings.Repeat("L0ng-", 8), "sha256$"},
		{"no trailing newline", strings.Repeat("x", 40), strings.Repeat("x", 40), "sha256$"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.stdin, "hash-secret")
			if code != 0 {
				t.Fatalf("hash-secret = %d: %s", code, errOut)
			}
			hash := strings.TrimSpace(out)
			if !strings.HasPrefix(hash, tt.prefix) {
				t.Errorf("hash %q, want prefix %q", hash, tt.prefix)
			}
			if !config.VerifySecret(hash, tt.secret) {
				t.Errorf("VerifySecret(%q, %q) = false", hash, tt.secret)
			}
			if config.VerifySecret(hash, tt.secret+"x") || config.VerifySecret(hash, "") {
				t.Errorf("hash %q verifies a different secret", hash)
			}
		})
	}
	for _, stdin := range []string{"", "\n"} {
		if code, _, _ := run(t, stdin, "hash-secret"); code != 1 {
			t.Errorf("hash-secret with stdin %q = %d, want 1", stdin, code)
		}
	}

	code, out, errOut := run(t, "", "hash-secret", "--generate")
	if code != 0 {
		t.Fatalf("hash-secret --generate = %d: %s", code, errOut)
	}
	m := regexp.MustCompile(`(?m)^secret:\s+(\S+)\nsecret_hash:\s+(\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("hash-secret --generate printed %q, want secret: and secret_hash: lines", out)
	}
	if len(m[1]) < 32 || !strings.HasPrefix(m[2], "sha256$") || !config.VerifySecret(m[2], m[1]) {
		t.Errorf("generated secret %q / hash %q: want >= 32 characters, a sha256$ hash that verifies it", m[1], m[2])
	}
	_, out2, _ := run(t, "", "hash-secret", "--generate")
	if strings.Contains(out2, m[1]) {
		t.Error("two --generate runs printed the same secret")
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "", "version")
	if code != 0 || !regexp.MustCompile(`^fedbroker \S+\n$`).MatchString(out) {
		t.Errorf("version = %d %q, want 0 and one line \"fedbroker VERSION\"", code, out)
	}
	if code, _, _ := run(t, "", "version", "extra"); code != 1 {
		t.Errorf("version with an argument = %d, want 1", code)
	}
	if code, _, _ := run(t, "", "no-such-command"); code != 1 {
		t.Errorf("unknown command = %d, want 1", code)
	}
}

const mappingConfig = "testdata/mapping.yaml"

func TestMappingTestClaims(t *testing.T) {
	dir := t.TempDir()
	bare := writeFile(t, dir, "bare.json", `{"sub": "alice", "email": "alice@acme.com", "email_verified": true, "groups": ["admins"]}`)
	outsider := writeFile(t, dir, "outsider.json", `{"sub": "eve", "email": "eve@evil.example", "email_verified": true}`)
	full := writeFile(t, dir, "full.json", `{"connector": "backup", "claims": {"sub": "bob", "email": "bob@acme.com", "email_verified": true}}`)
	ci := writeFile(t, dir, "ci.json", `{"sub": "repo:acme/api:ref:refs/heads/main", "repository": "acme/api", "repository_owner": "acme", "ref": "refs/heads/main"}`)
	unknown := writeFile(t, dir, "unknown.json", `{"connector": "corp", "claims": {}, "bogus": 1}`)
	type report struct {
		Connector, Decision, Message, Subject string
		LinkKey                               string `json:"link_key"`
		Rule                                  *int
		AccessToken                           map[string]any `json:"access_token"`
		Steps                                 []map[string]any
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		check    func(t *testing.T, r report)
	}{
		{"accepted", []string{"--connector", "corp", "--claims", bare}, 0, func(t *testing.T, r report) {
			if r.Decision != "accepted" || r.LinkKey != "alice@acme.com" || r.Subject == "" || len(r.Steps) != 0 {
				t.Errorf("report = %+v", r)
			}
			if roles, _ := r.AccessToken["roles"].([]any); len(roles) != 1 || roles[0] != "admin" {
				t.Errorf("access_token roles = %v, want [admin]", r.AccessToken["roles"])
			}
		}},
		{"explained", []string{"--connector", "corp", "--claims", bare, "--explain"}, 0, func(t *testing.T, r report) {
			if r.Decision != "accepted" || len(r.Steps) == 0 {
				t.Fatalf("report = %+v, want accepted with steps", r)
			}
			var sawRule bool
			for _, s := range r.Steps {
				if s["path"] == "require[1].expr" && s["value"] == true {
					sawRule = true
				}
			}
			if !sawRule {
				t.Errorf("steps %v lack require[1].expr = true", r.Steps)
			}
		}},
		{"rejected", []string{"--connector", "corp", "--claims", outsider}, 2, func(t *testing.T, r report) {
			if r.Decision != "rejected" || r.Rule == nil || *r.Rule != 1 || r.Message != "Only Acme staff may sign in here." || r.Subject != "" {
				t.Errorf("report = %+v, want rejected by rule 1 with its message", r)
			}
		}},
		{"workload", []string{"--workload", "github", "--claims", ci}, 0, func(t *testing.T, r report) {
			if r.Connector != "github" || r.Decision != "accepted" || r.Subject != "github:acme/api" {
				t.Errorf("report = %+v, want github accepted as github:acme/api", r)
			}
		}},
		{"workload id is not a connector", []string{"--connector", "github", "--claims", ci}, 1, nil},
		{"object form and a disagreeing flag", []string{"--claims", full, "--connector", "corp"}, 1, nil},
		{"object form names its connector", []string{"--claims", full}, 0, func(t *testing.T, r report) {
			if r.Connector != "backup" || r.Decision != "accepted" {
				t.Errorf("report = %+v, want backup accepted", r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"mapping", "test", "--config", mappingConfig}, tt.args...)
			code, out, errOut := run(t, "", args...)
			if code != tt.wantCode {
				t.Fatalf("exit = %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			if tt.check == nil {
				return
			}
			var r report
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("output is not a JSON report: %v\n%s", err, out)
			}
			tt.check(t, r)
		})
	}
	for _, args := range [][]string{
		{"--connector", "nope", "--claims", bare},
		{"--claims", bare},
		{"--connector", "corp"},
		{"--connector", "corp", "--claims", unknown},
		{"--connector", "corp", "--claims", filepath.Join(dir, "absent.json")},
	} {
		if code, out, _ := run(t, "", append([]string{"mapping", "test", "--config", mappingConfig}, args...)...); code != 1 {
			t.Errorf("mapping test %v = %d, want 1; stdout %s", args, code, out)
		}
	}
}

// TestLinksNeedsRedis: the links command reads shared storage; with the
// memory store it points at the admin API instead.
func TestLinksNeedsRedis(t *testing.T) {
	path := writeFile(t, t.TempDir(), "memory.yaml", goodConfig)
	code, _, errOut := run(t, "", "links", "list", "--config", path)
	if code != 1 || !strings.Contains(errOut, "/admin/links") {
		t.Errorf("links list on a memory config = %d %q, want 1 pointing at the admin API", code, errOut)
	}
}

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dst, e.Name(), string(b))
	}
	return dst
}

func TestMappingTestGolden(t *testing.T) {
	golden := func(dir string, extra ...string) (int, string) {
		t.Helper()
		code, out, errOut := run(t, "", append([]string{"mapping", "test", "--config", mappingConfig, "--golden", dir}, extra...)...)
		return code, out + errOut
	}
	// The samples in the repository pass.
	code, out := golden("testdata/golden")
	if code != 0 || strings.Count(out, "ok   ") != 7 {
		t.Fatalf("--golden testdata/golden = %d, want 0 and 7 ok:\n%s", code, out)
	}

	// A changed expectation fails with a diff naming the sample.
	dir := copyDir(t, "testdata/golden")
	orig, _ := os.ReadFile(filepath.Join(dir, "user.golden"))
	writeFile(t, dir, "user.golden", strings.Replace(string(orig), `"user"`, `"superuser"`, 1))
	code, out = golden(dir)
	if code != 1 || !strings.Contains(out, "FAIL user") || !strings.Contains(out, `-`) || !strings.Contains(out, "superuser") || !strings.Contains(out, "1 of 7 samples differ") {
		t.Fatalf("--golden with a changed expectation = %d, want 1 with a diff:\n%s", code, out)
	}
	// A missing golden fails too.
	if err := os.Remove(filepath.Join(dir, "admin.golden")); err != nil {
		t.Fatal(err)
	}
	if code, out = golden(dir); code != 1 || !strings.Contains(out, "FAIL admin") || !strings.Contains(out, "--update") {
		t.Fatalf("--golden with a missing expectation = %d:\n%s", code, out)
	}

	// --update rewrites every expectation; they then pass and equal the
	// repository's.
	if code, out = golden(dir, "--update"); code != 0 || strings.Count(out, "wrote ") != 7 {
		t.Fatalf("--update = %d:\n%s", code, out)
	}
	for _, name := range []string{"user.golden", "admin.golden", "github-main.golden"} {
		got, _ := os.ReadFile(filepath.Join(dir, name))
		want, _ := os.ReadFile(filepath.Join("testdata/golden", name))
		if !bytes.Equal(got, want) {
			t.Errorf("%s after --update:\n%s\nwant:\n%s", name, got, want)
		}
	}
	if code, out = golden(dir); code != 0 {
		t.Fatalf("--golden after --update = %d:\n%s", code, out)
	}

	// A sample that does not name its connector is refused.
	writeFile(t, dir, "anonymous.json", `{"claims": {"sub": "x"}}`)
	if code, out = golden(dir); code != 1 || !strings.Contains(out, "anonymous.json") {
		t.Errorf("--golden with an anonymous sample = %d:\n%s", code, out)
	}
	if code, _ = golden(t.TempDir()); code != 1 {
		t.Errorf("--golden on an empty directory = %d, want 1", code)
	}
}

// TestServeReloadThroughAdminAPI runs `serve` and reloads it through the
// admin listener: a broken file is refused (422) and the old configuration
// keeps serving; a fixed file is applied.
func TestServeReloadThroughAdminAPI(t *testing.T) {
	dir := t.TempDir()
	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	const token = "serve-test-admin-token-0123456789"
	base := strings.Replace(goodConfig, "issuer: http://127.0.0.1:5556", "issuer: http://"+httpAddr, 1) +
		"http:\n  addr: " + httpAddr + "\n  drain_period: 0s\nadmin:\n  addr: " + adminAddr + "\n  token: " + token + "\n"
	path := writeFile(t, dir, "config.yaml", base)

	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncWriter
	done := make(chan int, 1)
	go func() { done <- Main(ctx, []string{"serve", "--config", path}, strings.NewReader(""), &out, &errOut) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})

	issuer := "http://" + httpAddr
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(issuer + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d:\n%s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not answer /healthz: %v\n%s", err, errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	authorize := func(clientID, redirect string) int {
		t.Helper()
		q := url.Values{"client_id": {clientID}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"openid"},
			"state": {"s"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		resp, err := noRedirect.Get(issuer + "/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	adminReload := func(tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/admin/reload", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const newRedirect = "http://127.0.0.1:7777/cb"
	if got := authorize("app", "http://127.0.0.1:5555/callback"); got != http.StatusFound {
		t.Fatalf("authorize app = %d, want 302", got)
	}
	if got := authorize("new", newRedirect); got != http.StatusBadRequest {
		t.Fatalf("authorize new before reload = %d, want 400", got)
	}
	if code, _ := adminReload("wrong-token-wrong-token"); code != http.StatusUnauthorized {
		t.Errorf("reload with a wrong token = %d, want 401", code)
	}

	// A broken file: refused with its problems, the old one keeps serving.
	writeFile(t, dir, "config.yaml", strings.Replace(base, "  - id: app\n", "  - id: new\n    public: true\n    redirect_uris: [\""+newRedirect+"\"]\n  - id: \"\"\n", 1))
	code, body := adminReload(token)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "clients[1]") {
		t.Fatalf("reload of a broken file = %d %s, want 422 naming clients[1]", code, body)
	}
	if got := authorize("app", "http://127.0.0.1:5555/callback"); got != http.StatusFound {
		t.Errorf("authorize app after a refused reload = %d, want 302", got)
	}
	if got := authorize("new", newRedirect); got != http.StatusBadRequest {
		t.Errorf("authorize new after a refused reload = %d, want 400", got)
	}

	// The fixed file is applied.
	writeFile(t, dir, "config.yaml", strings.Replace(base, "  - id: app\n", "  - id: new\n    public: true\n    redirect_uris: [\""+newRedirect+"\"]\n  - id: app\n", 1))
	if code, body := adminReload(token); code != http.StatusOK {
		t.Fatalf("reload of the fixed file = %d %s, want 200", code, body)
	}
	if got := authorize("new", newRedirect); got != http.StatusFound {
		t.Errorf("authorize new after reload = %d, want 302", got)
	}
	if got := authorize("app", "http://127.0.0.1:5555/callback"); got != http.StatusFound {
		t.Errorf("authorize app after reload = %d, want 302", got)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited with %d after cancel, want 0:\n%s", code, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after cancel")
	}
	done <- 0 // for the cleanup
	logs := errOut.String()
	for _, want := range []string{"reload refused", "reload applied", "admin API listening"} {
		if !strings.Contains(logs, want) {
			t.Errorf("serve log lacks %q", want)
		}
	}
	if strings.Contains(logs, token) {
		t.Error("serve log contains the admin token")
	}
	// Audit lines are JSON on stderr, marked as audit (docs/operations.md).
	var audited []string
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("serve log line is not JSON: %q", line)
			continue
		}
		if rec["msg"] == "admin_reload" || rec["msg"] == "admin_auth_failed" {
			if rec["log"] != "audit" || rec["audit"] != true {
				t.Errorf("audit line %q lacks \"log\":\"audit\" and \"audit\":true", line)
			}
			audited = append(audited, rec["msg"].(string))
		}
	}
	if want := []string{"admin_auth_failed", "admin_reload", "admin_reload"}; !slices.Equal(audited, want) {
		t.Errorf("audit events = %v, want %v", audited, want)
	}
}

// syncWriter is a writer safe for the serving goroutine and the test.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
