package broker_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/xml"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/connectors/registry"
)

// checkHash is a real bcrypt hash for the PWHASH placeholder.
var checkHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// checkConfig runs what `fedbroker check --offline` runs on yml: it parses
// the file, then compiles it offline. It returns the problems of the first
// step that found any.
func checkConfig(t *testing.T, yml string, offline bool) error {
	t.Helper()
	yml = strings.ReplaceAll(yml, "PWHASH", checkHash())
	path := filepath.Join(t.TempDir(), "fedbroker.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	return broker.Check(context.Background(), cfg, broker.Options{}, offline)
}

// problems returns the problems in err, which must be config.Errors.
func problems(t *testing.T, err error) config.Errors {
	t.Helper()
	var ps config.Errors
	if !errors.As(err, &ps) {
		t.Fatalf("error %v (%T) is not config.Errors", err, err)
	}
	return ps
}

const checkIssuer = "issuer: https://sso.example.com\n"

// TestCheckBlocks checks that the problems inside connector and workload
// `config:` blocks are reported by the config.Load + broker.Check pair,
// each at its YAML path, with every other problem of the same block.
func TestCheckBlocks(t *testing.T) {
	known := strings.Join(registry.Names(), ", ")
	tests := []struct {
		name string
		yml  string
		want []config.Problem // in any order; nil: no problem
	}{
		{"good", checkIssuer + `
connectors:
  - id: local
    type: local
    config: {users: [{username: a, password_hash: PWHASH}]}
workloads:
  - id: gh
    config: {issuer: https://token.actions.githubusercontent.com, audiences: [https://sso.example.com], max_lifetime: 1h}
`, nil},
		{"connector unknown type", checkIssuer + "connectors:\n  - id: x\n    type: kerberos\n    config: {realm: X}\n", []config.Problem{
			{Path: "connectors[0].type", Message: `unknown connector type "kerberos" (known: ` + known + ")"},
		}},
		{"connector type in wrong case", checkIssuer + "connectors:\n  - id: x\n    type: Local\n", []config.Problem{
			{Path: "connectors[0].type", Message: `unknown connector type "Local" (known: ` + known + ")"},
		}},
		{"connector config unknown key", checkIssuer + "connectors:\n  - id: x\n    type: local\n    config: {users: [{username: a, password_hash: PWHASH, pasword: x}]}\n", []config.Problem{
			{Path: "connectors[0].config.users[0].pasword", Message: "line 5: unknown key"},
		}},
		{"connector config unknown top key", checkIssuer + "connectors:\n  - id: x\n    type: local\n    config:\n      users: [{username: a, password_hash: PWHASH}]\n      user: []\n", []config.Problem{
			{Path: "connectors[0].config.user", Message: "line 7: unknown key (did you mean users?)"},
		}},
		{"connector config type error", checkIssuer + "connectors:\n  - id: x\n    type: local\n    config: {users: [{username: a, password_hash: PWHASH, email_verified: sometimes}]}\n", []config.Problem{
			{Path: "connectors[0].config.users[0].email_verified", Message: "line 5: cannot unmarshal !!str `sometimes` into bool"},
		}},
		{"connector config unknown key and invalid together", checkIssuer + "connectors:\n  - id: x\n    type: local\n    config: {users: [{username: a, pasword_hash: x}]}\n", []config.Problem{
			{Path: "connectors[0].config.users[0].pasword_hash", Message: "line 5: unknown key (did you mean password_hash?)"},
			{Path: "connectors[0].config.users[0].password_hash", Message: "required (a bcrypt hash, e.g. from fedbroker hash-secret --password)"},
		}},
		{"connector config invalid", checkIssuer + "connectors:\n  - id: x\n    type: local\n    config: {users: [{username: a, password_hash: plain}, {username: A, password_hash: PWHASH, email: nope}]}\n", []config.Problem{
			{Path: "connectors[0].config.users[0].password_hash", Message: "not a bcrypt hash"},
			{Path: "connectors[0].config.users[1].username", Message: "duplicate of users[0].username (usernames are case-insensitive)"},
			{Path: "connectors[0].config.users[1].email", Message: `not an email address: "nope"`},
		}},
		{"connector config missing", checkIssuer + "connectors:\n  - id: x\n    type: local\n", []config.Problem{
			{Path: "connectors[0].config.users", Message: "at least one user is required"},
		}},
		{"connector config not a mapping", checkIssuer + "connectors:\n  - id: x\n    type: local\n    config: [a]\n", []config.Problem{
			{Path: "connectors[0].config", Message: "line 5: expected a mapping, got a list"},
		}},
		{"second connector", checkIssuer + `
connectors:
  - id: a
    type: local
    config: {users: [{username: a, password_hash: PWHASH}]}
  - id: b
    type: oidc
    config: {issuer: https://idp.example.com, client_id: b, client_secret: s, scope: [openid]}
`, []config.Problem{
			{Path: "connectors[1].config.scope", Message: "line 9: unknown key (did you mean scopes?)"},
		}},
		{"workload invalid", checkIssuer + "workloads:\n  - id: gh\n    config: {audiences: [x]}\n", []config.Problem{
			{Path: "workloads[0].config.issuer", Message: "required"},
		}},
		{"workload config missing", checkIssuer + "workloads:\n  - id: gh\n", []config.Problem{
			{Path: "workloads[0].config.issuer", Message: "required"},
			{Path: "workloads[0].config.audiences", Message: "at least one accepted audience is required"},
		}},
		{"workload unknown key", checkIssuer + "workloads:\n  - id: gh\n    config:\n      issuer: https://x.example.com\n      audience: [x]\n", []config.Problem{
			{Path: "workloads[0].config.audience", Message: "line 6: unknown key (did you mean audiences?)"},
			{Path: "workloads[0].config.audiences", Message: "at least one accepted audience is required"},
		}},
		{"workload type error", checkIssuer + "workloads:\n  - id: gh\n    config: {issuer: https://x.example.com, audiences: [x], max_lifetime: forever, one_time_jti: sometimes}\n", []config.Problem{
			{Path: "workloads[0].config.max_lifetime", Message: `line 4: invalid duration "forever" (use Go syntax such as 90s, 5m or 1h30m)`},
			{Path: "workloads[0].config.one_time_jti", Message: "line 4: cannot unmarshal !!str `sometimes` into bool"},
		}},
		{"workload config not a mapping", checkIssuer + "workloads:\n  - id: gh\n    config: https://x.example.com\n", []config.Problem{
			{Path: "workloads[0].config", Message: `line 4: expected a mapping, got "https://x.example.com"`},
		}},
		{"second workload", checkIssuer + `
workloads:
  - id: a
    config: {issuer: https://a.example.com, audiences: [x]}
  - id: b
    config: {issuer: https://b.example.com, audiences: [x], algorithms: [HS256]}
`, []config.Problem{
			{Path: "workloads[1].config.algorithms[0]", Message: `"HS256" is not an asymmetric signing algorithm`},
		}},
		{"connector and workload together", checkIssuer + `
connectors:
  - id: x
    type: local
    config: {users: [{username: a, password_hash: PWHASH, pasword: x}]}
workloads:
  - id: gh
    config: {audiences: [x]}
`, []config.Problem{
			{Path: "connectors[0].config.users[0].pasword", Message: "line 6: unknown key"},
			{Path: "workloads[0].config.issuer", Message: "required"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkConfig(t, tt.yml, true)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("check = %v, want no problem", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("check = nil, want %v", tt.want)
			}
			got := problems(t, err)
			byPath := func(a, b config.Problem) bool { return a.Path < b.Path }
			sort.SliceStable(got, func(i, j int) bool { return byPath(got[i], got[j]) })
			want := append([]config.Problem(nil), tt.want...)
			sort.SliceStable(want, func(i, j int) bool { return byPath(want[i], want[j]) })
			if diff := cmp.Diff(want, []config.Problem(got)); diff != "" {
				t.Errorf("check problems (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
}

// TestCheckConfigFirst checks that problems config itself finds (ids,
// references, a missing type) stop the check before the blocks are
// compiled, as `fedbroker check` prints them.
func TestCheckConfigFirst(t *testing.T) {
	yml := checkIssuer + `
connectors:
  - id: x
    config: {users: [{username: a, password_hash: PWHASH}]}
workloads:
  - id: gh
    mapping: nope
    config: {issuer: https://x.example.com, audiences: [x]}
`
	_, err := config.Parse([]byte(strings.ReplaceAll(yml, "PWHASH", checkHash())), func(string) string { return "" })
	want := config.Errors{
		{Path: "connectors[0].type", Message: "required"},
		{Path: "workloads[0].mapping", Message: `no mapping "nope" under mappings`},
	}
	if diff := cmp.Diff(want, problems(t, err)); diff != "" {
		t.Errorf("Parse problems (-want +got):\n%s", diff)
	}
}

// TestCheckDirectConfig checks Check on a Config built in Go, which no
// Parse has validated: a missing connector type is still reported, with
// the known types.
func TestCheckDirectConfig(t *testing.T) {
	cfg := &config.Config{Issuer: "https://sso.example.com", Connectors: []config.Connector{{ID: "x"}}}
	cfg.SetDefaults()
	err := broker.Check(context.Background(), cfg, broker.Options{}, true)
	want := config.Errors{{Path: "connectors[0].type", Message: "required (one of " + strings.Join(registry.Names(), ", ") + ")"}}
	if diff := cmp.Diff(want, problems(t, err)); diff != "" {
		t.Errorf("Check problems (-want +got):\n%s", diff)
	}
}

// TestCheckOpensSAML checks that Check, online, opens a SAML connector
// although it has no storage to take a replay cache from.
func TestCheckOpensSAML(t *testing.T) {
	md := filepath.Join(t.TempDir(), "idp.xml")
	if err := os.WriteFile(md, samlIdPMetadata(t), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := checkIssuer + "connectors:\n  - id: fab\n    type: saml\n    config: {idp_metadata_file: " + md + "}\n"
	if err := checkConfig(t, yml, false); err != nil {
		t.Fatalf("check (online) = %v, want no problem", err)
	}
}

// samlIdPMetadata returns the metadata of a SAML IdP with a fresh key.
func samlIdPMetadata(t *testing.T) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "check SAML IdP"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse("https://idp.example.com/saml")
	idp := saml.IdentityProvider{
		Key:         key,
		Certificate: cert,
		MetadataURL: *base.JoinPath("metadata"),
		SSOURL:      *base.JoinPath("sso"),
	}
	out, err := xml.Marshal(idp.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCheckRedisURL: config checks only a Redis URL's scheme (host lists
// are not RFC 3986 URLs); Check runs the storage's own parser, so every
// form Open accepts passes and a bad one is reported at its path.
func TestCheckRedisURL(t *testing.T) {
	for url, want := range map[string]string{
		"redis-sentinel://s1:26379,s2:26380,s3/mymaster":     "",
		"redis-cluster://n1:7000,[::1]:7002?dial_timeout=3s": "",
		"rediss://cache.internal:6380/2":                     "",
		"redis://cache.internal:99999":                       "storage.redis.url",
		"redis://cache.internal?no_such_option=1":            "storage.redis.url",
		"memcached://cache.internal":                         "storage.redis.url",
	} {
		err := checkConfig(t, "issuer: https://sso.example.com\nstorage:\n  type: redis\n  redis:\n    url: "+url+"\n", true)
		if want == "" {
			if err != nil {
				t.Errorf("url %s: %v", url, err)
			}
			continue
		}
		ps := problems(t, err)
		if len(ps) != 1 || ps[0].Path != want {
			t.Errorf("url %s: problems %v, want one at %s", url, ps, want)
		}
	}
}
