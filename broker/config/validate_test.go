package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// localConn is a valid local connector entry to build broken configs on.
const localConn = `
  - id: local
    type: local
    config:
      users: [{username: alice, password_hash: "PWHASH"}]
`

func TestParseBroken(t *testing.T) {
	const iss = "issuer: https://sso.example.com\n"
	tests := []struct {
		name string
		yml  string
		want []string
	}{
		{"empty file", ``, []string{"issuer"}},
		{"issuer relative", "issuer: /sso\n", []string{"issuer"}},
		{"issuer http public", "issuer: http://sso.example.com\n", []string{"issuer"}},
		{"issuer query", "issuer: https://sso.example.com?a=b\n", []string{"issuer"}},
		{"issuer fragment", "issuer: https://sso.example.com#x\n", []string{"issuer"}},
		{"issuer trailing slash", "issuer: https://sso.example.com/\n", []string{"issuer"}},
		{"issuer ftp", "issuer: ftp://sso.example.com\n", []string{"issuer"}},
		{"issuer http loopback ok", "issuer: http://127.3.4.5:80/sso\n", nil},
		{"issuer http ipv6 loopback ok", "issuer: http://[::1]:5556\n", nil},
		{"issuer http localhost ok", "issuer: http://localhost:5556\n", nil},
		{"issuer http lookalike", "issuer: http://localhost.evil.com\n", []string{"issuer"}},
		{"unknown top-level key", iss + "isuser: x\n", []string{"isuser"}},
		{"unknown nested key", iss + "tokens: {acces_token: 5m}\n", []string{"tokens.acces_token"}},
		{"duplicate key", iss + "tokens: {session: 1h, session: 2h}\n", []string{"tokens.session"}},
		{"bad duration", iss + "tokens: {access_token: 5 minutes}\n", []string{"tokens.access_token"}},
		{"bool type error", iss + "clients:\n  - id: a\n    public: maybe\n    redirect_uris: [https://a.example.com/cb]\n", []string{"clients[0].public", "clients[0].secret_hash"}},
		{"list where mapping", iss + "http: [a]\n", []string{"http"}},
		{"scalar where list", iss + "http: {trusted_proxies: 10.0.0.0/8}\n", []string{"http.trusted_proxies"}},
		{"trusted proxy garbage", iss + "http: {trusted_proxies: [nope]}\n", []string{"http.trusted_proxies[0]"}},
		{"addr without port", iss + "http: {addr: localhost}\n", []string{"http.addr"}},
		{"tls half", iss + "http: {tls: {cert_file: c.pem}}\n", []string{"http.tls.key_file"}},
		{"storage type", iss + "storage: {type: etcd}\n", []string{"storage.type"}},
		{"redis without url", iss + "storage: {type: redis}\n", []string{"storage.redis.url"}},
		{"redis bad url", iss + "storage: {type: redis, redis: {url: 'http://x'}}\n", []string{"storage.redis.url"}},
		{"eviction policy", iss + "storage: {redis: {eviction_policy: ignore}}\n", []string{"storage.redis.eviction_policy"}},
		{"sqlite empty path", iss + "storage: {type: sqlite, sqlite: {path: ' '}}\n", []string{"storage.sqlite.path"}},
		{"sqlite default path", iss + "storage: {type: sqlite}\n", nil},
		{"postgres without url", iss + "storage: {type: postgres}\n", []string{"storage.postgres.url"}},
		{"postgres bad url", iss + "storage: {type: postgres, postgres: {url: 'mysql://x'}}\n", []string{"storage.postgres.url"}},
		{"postgres ok", iss + "storage: {type: postgres, postgres: {url: 'postgres://fedbroker@db:5432/fedbroker?sslmode=disable'}}\n", nil},
		{"algorithm", iss + "signing: {algorithm: HS256, algorithms: [RS256, none]}\n", []string{"signing.algorithm", "signing.algorithms[1]"}},
		{"kek not base64", iss + "signing: {key_encryption_key: '!!!'}\n", []string{"signing.key_encryption_key"}},
		{"kek short", iss + "signing: {key_encryption_key: AAECAwQFBgcICQoLDA0ODw==}\n", []string{"signing.key_encryption_key"}},
		{"kek url-safe ok", iss + "signing: {key_encryption_key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8}\n", nil},
		{"static key without file", iss + "signing: {static_keys: [{kid: a}]}\n", []string{"signing.static_keys[0].file"}},
		{"negative lifetime", iss + "tokens: {id_token: -5m}\n", []string{"tokens.id_token"}},
		{"access token too long", iss + "tokens: {access_token: 25h}\n", []string{"tokens.access_token"}},
		{"auth code too long", iss + "tokens: {auth_code: 1h}\n", []string{"tokens.auth_code"}},
		{"refresh idle over absolute", iss + "tokens: {refresh_idle: 48h, refresh_absolute: 24h}\n", []string{"tokens.refresh_idle"}},
		{"connector without id", iss + "connectors:\n  - type: local\n    config: {users: [{username: a, password_hash: PWHASH}]}\n", []string{"connectors[0].id"}},
		{"connector bad id", iss + "connectors:\n  - id: Local!\n    type: local\n    config: {users: [{username: a, password_hash: PWHASH}]}\n", []string{"connectors[0].id"}},
		{"connector duplicate id", iss + "connectors:" + localConn + localConn, []string{"connectors[1].id"}},
		{"connector missing type", iss + "connectors:\n  - id: x\n", []string{"connectors[0].type"}},
		{"connector unknown mapping", iss + "connectors:\n  - id: x\n    type: local\n    mapping: nope\n    config: {users: [{username: a, password_hash: PWHASH}]}\n", []string{"connectors[0].mapping"}},
		{"connector bad domains", iss + "connectors:\n  - id: x\n    type: local\n    domains: [example.com, '@example.org', nodot, -bad.com]\n    config: {users: [{username: a, password_hash: PWHASH}]}\n", []string{"connectors[0].domains[1]", "connectors[0].domains[2]", "connectors[0].domains[3]"}},
		{"mapping unknown key", iss + "mappings:\n  m: {subjet: claims.sub}\n", []string{"mappings.m.subjet"}},
		{"mapping claim unknown key", iss + "mappings:\n  m: {claims: {email: {expr: claims.email, inn: id_token}}}\n", []string{"mappings.m.claims.email.inn"}},
		{"client without id", iss + "clients:\n  - public: true\n    redirect_uris: [https://a.example.com/cb]\n", []string{"clients[0].id"}},
		{"client duplicate id", iss + "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb]}\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb]}\n", []string{"clients[1].id"}},
		{"confidential without secret", iss + "clients:\n  - {id: a, redirect_uris: [https://a.example.com/cb]}\n", []string{"clients[0].secret_hash"}},
		{"public with secret", iss + "clients:\n  - {id: a, public: true, secret_hash: SECRETHASH, redirect_uris: [https://a.example.com/cb]}\n", []string{"clients[0].secret_hash"}},
		{"secret in clear", iss + "clients:\n  - {id: a, secret_hash: hunter2, redirect_uris: [https://a.example.com/cb]}\n", []string{"clients[0].secret_hash"}},
		{"no redirect uris", iss + "clients:\n  - {id: a, public: true}\n", []string{"clients[0].redirect_uris"}},
		{"client credentials needs none", iss + "clients:\n  - {id: a, secret_hash: SECRETHASH, grant_types: [client_credentials]}\n", nil},
		{"redirect uris", iss + `clients:
  - id: a
    public: true
    redirect_uris:
      - https://ok.example.com/cb
      - /relative
      - http://app.example.com/cb
      - https://app.example.com/cb#frag
      - javascript:alert(1)
      - com.example.app:/cb
      - http://127.0.0.1:9999/cb
      - https://*.example.com/cb
      - "http://localhost@evil.com/cb"
`, []string{"clients[0].redirect_uris[1]", "clients[0].redirect_uris[2]", "clients[0].redirect_uris[3]", "clients[0].redirect_uris[4]", "clients[0].redirect_uris[7]", "clients[0].redirect_uris[8]"}},
		{"private-use scheme confidential", iss + "clients:\n  - {id: a, secret_hash: SECRETHASH, redirect_uris: ['com.example.app:/cb']}\n", []string{"clients[0].redirect_uris[0]"}},
		{"post logout uris", iss + "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], post_logout_redirect_uris: [https://a.example.com/, http://a.example.com/]}\n", []string{"clients[0].post_logout_redirect_uris[1]"}},
		{"grant types", iss + "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], grant_types: [authorization_code, password, client_credentials, authorization_code]}\n", []string{"clients[0].grant_types[1]", "clients[0].grant_types[2]", "clients[0].grant_types[3]"}},
		{"client unknown connector", iss + "connectors:" + localConn + "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], connectors: [local, ldap]}\n", []string{"clients[0].connectors[1]"}},
		{"client alg not configured", iss + "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], id_token_signed_response_alg: RS256}\n", []string{"clients[0].id_token_signed_response_alg"}},
		{"client alg configured", iss + "signing: {algorithms: [RS256]}\nclients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], id_token_signed_response_alg: RS256}\n", nil},
		{"client lifetime", iss + "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], access_token_lifetime: 48h, id_token_lifetime: -1s}\n", []string{"clients[0].access_token_lifetime", "clients[0].id_token_lifetime"}},
		{"client scope with space", iss + "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], scopes: [openid, 'a b']}\n", []string{"clients[0].scopes[1]"}},
		{"links unknown connector", iss + "connectors:" + localConn + "links:\n  groups: [[local, nope]]\n", []string{"links.groups[0][1]"}},
		{"links single", iss + "connectors:" + localConn + "links:\n  groups: [[local]]\n", []string{"links.groups[0]"}},
		{"admin", iss + "admin: {addr: nope, token: short, tls: {client_ca_file: ca.pem}}\n", []string{"admin.addr", "admin.tls.cert_file", "admin.tls.key_file", "admin.token"}},
		{"admin ok", iss + "admin: {addr: '127.0.0.1:5557', token: 0123456789abcdef0123}\n", nil},
		{"workload unknown", iss + "clients:\n  - {id: a, secret_hash: SECRETHASH, grant_types: ['urn:ietf:params:oauth:grant-type:token-exchange'], workloads: [gh]}\n", []string{"clients[0].workloads[0]"}},
		{"workload unknown mapping", iss + "workloads:\n  - id: gh\n    mapping: nope\n    config: {audiences: [x]}\n", []string{"workloads[0].mapping"}},
		{"workload bad id", iss + "workloads:\n  - id: GH\n    config: {issuer: https://x.example.com, audiences: [x]}\n", []string{"workloads[0].id"}},
		{"connector type unknown to config", iss + "connectors:\n  - id: x\n    type: ldap\n    config: {anything: [goes, here]}\n", nil},
		{"workload config not checked by config", iss + "workloads:\n  - id: gh\n    config: {anything: [goes, here]}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(fill(tt.yml), noEnv)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Parse = %v, want no error", err)
				}
				if cfg == nil {
					t.Fatal("Parse returned nil config and nil error")
				}
				return
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with errors")
			}
			if diff := cmp.Diff(tt.want, paths(t, err)); diff != "" {
				t.Errorf("problem paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
}

// TestTypeErrorsNameLine checks that type errors carry the line.
func TestTypeErrorsNameLine(t *testing.T) {
	_, err := Parse([]byte("issuer: https://a.example.com\n\ntokens:\n  session: forever\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "tokens.session: line 4: invalid duration") {
		t.Errorf("Parse = %v, want tokens.session: line 4: invalid duration", err)
	}
}

// TestValidateDirect covers Validate on a Config built in Go, as the broker
// does after changing one.
func TestValidateDirect(t *testing.T) {
	cfg, err := Parse(fill(goodYAML), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Clients[0].RedirectURIs = append(cfg.Clients[0].RedirectURIs, "http://evil.example.com/cb")
	cfg.Tokens.Session = 0
	got := cfg.Validate()
	want := []Problem{
		{Path: "tokens.session", Message: "must be positive, not 0s"},
		{Path: "clients[0].redirect_uris[3]", Message: "http is only allowed for localhost and loopback addresses; use https"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Validate (-want +got):\n%s", diff)
	}
}

func TestClientAuthMethod(t *testing.T) {
	sh, _ := HashSecret("s3cr3t-s3cr3t-s3cr3t-s3cr3t")
	for _, tc := range []struct {
		client string
		want   string // the path of the one problem, or ""
	}{
		{`{id: a, token_endpoint_auth_method: private_key_jwt, jwks_uri: "https://a.example/jwks", grant_types: [client_credentials]}`, ""},
		{`{id: a, token_endpoint_auth_method: private_key_jwtt, jwks_uri: "https://a.example/jwks", grant_types: [client_credentials]}`, "clients[0].token_endpoint_auth_method"},
		{`{id: a, token_endpoint_auth_method: private_key_jwt, grant_types: [client_credentials]}`, "clients[0].jwks"},
		{`{id: a, token_endpoint_auth_method: private_key_jwt, secret_hash: "SECRET", grant_types: [client_credentials]}`, "clients[0].jwks"},
		{`{id: a, public: true, token_endpoint_auth_method: private_key_jwt, jwks_uri: "https://a.example/jwks", redirect_uris: ["http://127.0.0.1/cb"]}`, "clients[0].token_endpoint_auth_method"},
	} {
		yml := "issuer: https://sso.example.com\nclients:\n  - " + strings.ReplaceAll(tc.client, "SECRET", sh) + "\n"
		_, err := Parse([]byte(yml), func(string) string { return "" })
		var got string
		if ps, ok := err.(Errors); ok && len(ps) > 0 {
			got = ps[0].Path // the first problem is the one that matters here
		} else if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s: problems %v, want the first at %q", tc.client, err, tc.want)
		}
	}
}
