package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// markedLines returns the line of each "#@name" comment in yml.
func markedLines(t *testing.T, yml string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i, l := range strings.Split(yml, "\n") {
		for _, m := range regexp.MustCompile(`#@([\w.-]+)`).FindAllStringSubmatch(l, -1) {
			out[m[1]] = i + 1
		}
	}
	return out
}

// printedLine returns the line check printed for the problem at path, or
// 0 when it printed none (or no such problem).
func printedLine(out, path string) int {
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(path) + `: line (\d+): `).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

const checkTestHash = "$2a$04$vN63dHRpceNF65FBm.G9PuSPRbGX7H9NB8yrsSpPChg56H./A3Dzi"

// TestCheckLines: each problem check prints names the line it is on, for
// the key that is wrong or, for a key that is missing, the entry that
// lacks it — whichever check found it (the file's own checks, a
// connector's or workload issuer's block, the mapping compiler, the
// storage URL).
func TestCheckLines(t *testing.T) {
	tests := []struct {
		name, path, yml string
	}{
		{"bad issuer URL", "issuer", `
storage: {type: memory}
issuer: ftp://sso.example.com #@want
`},
		{"bad redirect URL", "clients[0].redirect_uris[1]", `
issuer: https://sso.example.com
clients:
  - id: app
    public: true
    redirect_uris:
      - https://app.example.com/cb
      - https://app.example.com/cb#fragment #@want
`},
		{"missing secret", "clients[1].secret_hash", `
issuer: https://sso.example.com
clients:
  - id: app
    public: true
    redirect_uris: [https://app.example.com/cb]
  - id: backend #@want
    redirect_uris: [https://backend.example.com/cb]
`},
		{"duplicate id", "clients[1].id", `
issuer: https://sso.example.com
clients:
  - id: app
    public: true
    redirect_uris: [https://app.example.com/cb]
  - public: true
    redirect_uris: [https://app.example.com/cb2]
    id: app #@want
`},
		{"bad redirect port", "clients[0].redirect_uris[0]", `
issuer: https://sso.example.com
clients:
  - id: app
    public: true
    redirect_uris: ["http://127.0.0.1:99999/cb"] #@want
`},
		{"unknown mapping", "connectors[0].mapping", `
issuer: https://sso.example.com
connectors:
  - id: local
    type: local
    mapping: nosuchmapping #@want
    config: {users: [{username: a, password_hash: "` + checkTestHash + `"}]}
`},
		{"syntax error", "(yaml)", `
issuer: https://sso.example.com
clients:
  - id: app
    redirect_uris: [https://app.example.com/cb #@want
  - id: other
`},
		{"syntax error: bad indentation", "(yaml)", `
issuer: https://sso.example.com
clients:
  - id: app
    public: true
   redirect_uris: [https://app.example.com/cb] #@want
`},
		{"bad CEL expression", "mappings.staff.claims.email", `
issuer: https://sso.example.com
mappings:
  staff:
    claims:
      name: claims.name
      email: claimz.email.lowerAscii() #@want
`},
		{"bad CEL expression in a block", "mappings.staff.require[0].expr", `
issuer: https://sso.example.com
mappings:
  staff:
    require:
      - expr: | #@want
          claims.email_verified == true &&
          claims.hd = "acme.com"
        message: no
`},
		{"connector block", "connectors[0].config.users[1].password_hash", `
issuer: https://sso.example.com
connectors:
  - id: local
    type: local
    config:
      users:
        - {username: a, password_hash: "` + checkTestHash + `"}
        - username: b
          password_hash: plaintext #@want
`},
		{"connector block: missing key", "connectors[0].config.client_id", `
issuer: https://sso.example.com
connectors:
  - id: corp
    type: oidc
    config: #@want
      issuer: https://idp.example.com
      client_secret: s
`},
		{"connector type", "connectors[0].type", `
issuer: https://sso.example.com
connectors:
  - id: corp
    type: kerberos #@want
`},
		{"workload block", "workloads[0].config.audiences[1]", `
issuer: https://sso.example.com
workloads:
  - id: ci
    config:
      issuer: https://token.actions.githubusercontent.com
      audiences:
        - a
        - " " #@want
`},
		{"storage URL", "storage.redis.url", `
issuer: https://sso.example.com
storage:
  type: redis
  redis:
    url: redis://127.0.0.1:6379/notadb #@want
`},
		{"missing issuer", "issuer", `# a configuration without an issuer

storage: {type: memory} #@want
`},
		{"unknown key", "tokenz", `
issuer: https://sso.example.com
tokenz: {} #@want
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := markedLines(t, tt.yml)["want"]
			path := writeFile(t, t.TempDir(), "bad.yaml", tt.yml)
			code, out, errOut := run(t, "", "check", "--offline", path)
			if code != 1 {
				t.Fatalf("check = %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			if got := printedLine(errOut, tt.path); got != want {
				t.Errorf("%s: printed line %d, want %d:\n%s", tt.path, got, want, errOut)
			}
		})
	}
}

// manyProblems has problems of every kind: the file's own (URLs, ids,
// secrets, references, durations, ${VAR}), those of connector and
// workload blocks, of mappings and of the storage URL.
const manyProblems = `# many problems
issuer: http://sso.example.com/
tokenz: {}
tokens:
  session: forever
  id_token: 48h
storage:
  type: redis
  redis:
    url: redis://127.0.0.1:6379/notadb
    eviction_policy: sometimes
signing:
  algorithm: HS256
  key_encryption_key: ${FEDBROKER_CHECK_TEST_UNSET_VARIABLE}
http:
  trusted_proxies: [not-an-ip]
admin:
  token: short
links:
  groups:
    - [local]
connectors:
  - id: local
    type: local
    domains: [acme.com]
    config:
      users:
        - {username: a, password_hash: plaintext, pasword: x}
        - {username: A, password_hash: "` + checkTestHash + `", email: nope}
  - id: local
    type: oidc
    domains: [acme.com]
    mapping: nope
  - id: corp
    type: oidc
    mapping: staff
    config: {issuer: ftp://idp.example.com, client_id: x}
  - id: partners
    type: saml
    config: {idp_metadata_file: /nonexistent/metadata.xml, sp_key_file: x.key}
  - type: google
workloads:
  - id: ci
    mapping: staff
    config: {audiences: [], max_lifetime: 1 day}
  - id: ci
    config: {issuer: https://token.actions.githubusercontent.com, audiences: [x], algorithms: [HS256]}
mappings:
  staff:
    require:
      - expr: claims.email_verified
    subject: 'claims.sub + 1'
    claims:
      email: claimz.email
      iss: claims.iss
      groups: {expr: claims.groups, in: refresh_token}
clients:
  - id: app
    redirect_uris: ["http://127.0.0.1:99999/cb", "https://app.example.com/cb#x", "http://evil.example.com/cb"]
    connectors: [nope]
    grant_types: [implicit]
  - id: app
    public: true
    secret_hash: x
    redirect_uris: []
    scopes: ["bad scope"]
  - id: svc
    secret_hash: "sha256$nope"
    grant_types: [client_credentials]
    workloads: [nope]
    token_endpoint_auth_method: private_key_jwt
`

// TestCheckEveryProblemHasLine: for a file with many problems of every
// kind, every problem check prints names a line of the file.
func TestCheckEveryProblemHasLine(t *testing.T) {
	path := writeFile(t, t.TempDir(), "many.yaml", manyProblems)
	for _, args := range [][]string{{"check", path}, {"check", "--offline", path}} {
		code, out, errOut := run(t, "", args...)
		if code != 1 {
			t.Fatalf("%v = %d, want 1\nstdout: %s\nstderr: %s", args, code, out, errOut)
		}
		lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
		m := regexp.MustCompile(`^\S+: (\d+) problem\(s\):$`).FindStringSubmatch(lines[0])
		if m == nil {
			t.Fatalf("%v: first line %q, want FILE: N problem(s):", args, lines[0])
		}
		count, _ := strconv.Atoi(m[1])
		if count < 30 {
			t.Errorf("%v: %d problems, want at least 30:\n%s", args, count, errOut)
		}
		last := strings.Count(manyProblems, "\n") + 1
		problemRe := regexp.MustCompile(`^  (\S+): line (\d+): \S`)
		seen := 0
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "   ") {
				continue // a message's own continuation line
			}
			seen++
			pm := problemRe.FindStringSubmatch(l)
			if pm == nil {
				t.Errorf("%v: problem without a line: %q", args, l)
				continue
			}
			if n, _ := strconv.Atoi(pm[2]); n < 1 || n > last {
				t.Errorf("%v: %q: line %d is not in the file (1-%d)", args, l, n, last)
			}
		}
		if seen != count {
			t.Errorf("%v: printed %d problems, announced %d:\n%s", args, seen, count, errOut)
		}
	}
}

// TestCheckNoteLines: the notes of a valid configuration name their line
// too.
func TestCheckNoteLines(t *testing.T) {
	yml := goodConfig + `  - id: cli
    secret_hash: "` + checkTestHash + `"
    redirect_uris: ["http://127.0.0.1:8400/cb"] #@want
`
	path := writeFile(t, t.TempDir(), "good.yaml", yml)
	code, out, errOut := run(t, "", "check", path)
	if code != 0 {
		t.Fatalf("check = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	want := "  note: clients[1].redirect_uris[0]: line " + strconv.Itoa(markedLines(t, yml)["want"]) + ": a confidential client's loopback redirect"
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

// liveConfig is a configuration whose storage and upstreams are at the
// given places: redisURL ("" for memory), an OpenID Connect issuer, a
// workload issuer (discovery) and a workload JWKS URL.
func liveConfig(redisURL, oidcIssuer, workloadIssuer, jwksURL string) string {
	storage := "storage: {type: memory}\n"
	if redisURL != "" {
		storage = "storage:\n  type: redis\n  redis: {url: \"" + redisURL + "\"}\n"
	}
	return `issuer: http://127.0.0.1:5556
` + storage + `connectors:
  - id: local
    type: local
    config: {users: [{username: a, password_hash: "` + checkTestHash + `"}]}
  - id: corp
    type: oidc
    config: {issuer: "` + oidcIssuer + `", client_id: client, client_secret: secret}
workloads:
  - id: ci
    config: {issuer: "` + workloadIssuer + `", audiences: [x]}
  - id: cluster
    config: {issuer: https://kubernetes.default.svc, jwks_url: "` + jwksURL + `", audiences: [x], algorithms: [ES256]}
clients:
  - id: app
    public: true
    redirect_uris: ["http://127.0.0.1:5555/callback"]
`
}

// TestCheckLive: check --live connects to the storage and to every
// upstream and prints each one's status; any that fails makes it exit 1.
func TestCheckLive(t *testing.T) {
	redisURL := redistest.Start(t)
	idp := testidp.New(testidp.Options{})
	t.Cleanup(idp.Close)
	down := "http://" + freeAddr(t)

	t.Run("all reachable", func(t *testing.T) {
		path := writeFile(t, t.TempDir(), "live.yaml", liveConfig(redisURL, idp.URL(), idp.URL(), idp.URL()+"/keys"))
		code, out, errOut := run(t, "", "check", "--live", path)
		if code != 0 {
			t.Fatalf("check --live = %d, want 0\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		for _, want := range []string{
			": OK\n",
			"\n  live:\n",
			"\n    storage (redis): ok\n",
			"\n    connectors[0] local (local): ok (no upstream)\n",
			"\n    connectors[1] corp (oidc): ok\n",
			"\n    workloads[0] ci: ok\n",
			"\n    workloads[1] cluster: ok\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("none reachable", func(t *testing.T) {
		path := writeFile(t, t.TempDir(), "live.yaml", liveConfig("redis://"+freeAddr(t)+"/0", down, down, down+"/keys"))
		code, out, errOut := run(t, "", "check", "--live", path)
		if code != 1 {
			t.Fatalf("check --live = %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`\n    storage \(redis\): error: .*connection refused`),
			regexp.MustCompile(`\n    connectors\[0\] local \(local\): ok \(no upstream\)\n`),
			regexp.MustCompile(`\n    connectors\[1\] corp \(oidc\): error: .*` + regexp.QuoteMeta(down[len("http://"):]) + `.*connection refused`),
			regexp.MustCompile(`\n    workloads\[0\] ci: error: .*discovery.*connection refused`),
			regexp.MustCompile(`\n    workloads\[1\] cluster: error: .*jwks.*connection refused`),
		} {
			if !want.MatchString(out) {
				t.Errorf("output does not match %s:\n%s", want, out)
			}
		}
		if !strings.Contains(errOut, "live.yaml: 4 of 5 failed the live check") {
			t.Errorf("stderr = %q, want the count of failures", errOut)
		}
	})

	t.Run("one of two upstreams", func(t *testing.T) {
		path := writeFile(t, t.TempDir(), "live.yaml", liveConfig("", down, idp.URL(), idp.URL()+"/keys"))
		code, out, errOut := run(t, "", "check", "--live", path)
		if code != 1 {
			t.Fatalf("check --live = %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		for _, want := range []string{
			"\n    storage (memory): ok (nothing to connect to)\n",
			"\n    connectors[1] corp (oidc): error: ",
			"\n    workloads[0] ci: ok\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if !strings.Contains(errOut, "1 of 5 failed the live check") {
			t.Errorf("stderr = %q, want 1 of 5 failed", errOut)
		}
	})

	t.Run("a configuration with problems is not checked live", func(t *testing.T) {
		path := writeFile(t, t.TempDir(), "bad.yaml", liveConfig(redisURL, idp.URL(), idp.URL(), idp.URL()+"/keys")+"tokenz: {}\n")
		code, out, errOut := run(t, "", "check", "--live", path)
		if code != 1 || strings.Contains(out, "live:") || !strings.Contains(errOut, "tokenz: line ") {
			t.Errorf("check --live = %d, want 1 with the problem and no live check\nstdout: %s\nstderr: %s", code, out, errOut)
		}
	})

	t.Run("not with --offline", func(t *testing.T) {
		path := writeFile(t, t.TempDir(), "live.yaml", liveConfig("", idp.URL(), idp.URL(), idp.URL()+"/keys"))
		if code, _, errOut := run(t, "", "check", "--live", "--offline", path); code != 1 || !strings.Contains(errOut, "--offline") {
			t.Errorf("check --live --offline = %d %q, want 1 naming --offline", code, errOut)
		}
	})
}

// TestLiveSAML: a SAML connector's metadata URL (https only) is fetched
// when the connector is opened; the live check reports whether that
// worked.
func TestLiveSAML(t *testing.T) {
	md, err := os.ReadFile("../../deploy/examples/okta-idp-metadata.xml")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/samlmetadata+xml")
		_, _ = w.Write(md)
	}))
	defer srv.Close()
	cfg, err := config.Parse([]byte(`issuer: https://sso.example.com
connectors:
  - id: partners
    type: saml
    config: {idp_metadata_url: "`+srv.URL+`/metadata"}
  - id: static
    type: saml
    config: {idp_metadata_file: ../../deploy/examples/okta-idp-metadata.xml}
`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	got := liveCheck(context.Background(), cfg, srv.Client())
	if len(got) != 3 || got[1].What != "connectors[0] partners (saml)" || got[1].Err != nil || got[2].Err != nil {
		t.Fatalf("liveCheck = %+v, want storage and both SAML connectors ok", got)
	}
	srv.Close()
	got = liveCheck(context.Background(), cfg, srv.Client())
	if got[1].Err == nil || !strings.Contains(got[1].Err.Error(), "metadata") {
		t.Errorf("liveCheck with the metadata server down = %+v, want an error about the metadata", got[1])
	}
	if got[2].Err != nil {
		t.Errorf("liveCheck of metadata from a file = %v, want ok", got[2].Err)
	}
}
