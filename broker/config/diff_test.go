package config

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// diffBase is a configuration touching every section. Its secrets are
// recognisable so that a test can prove they never reach Diff's output.
const diffBase = `
issuer: https://sso.example.com
http:
  addr: 127.0.0.1:5556
  trusted_proxies: [10.0.0.1]
storage:
  type: memory
signing:
  algorithm: ES256
  key_encryption_key: S0VLLXNlY3JldC1TMEVMTFMwRUtLLXNlY3JldC0xMjM=
tokens:
  access_token: 5m
mappings:
  corp:
    subject: claims.sub
    claims:
      email: claims.email
connectors:
  - id: local
    type: local
    config:
      users:
        - username: alice
          password_hash: "$2a$04$ALICEHASHALICEHASHALICEHASHALICEHASHALICEHASHALICEHAS"
  - id: corp
    type: oidc
    mapping: corp
    config:
      issuer: https://idp.example.com
      client_id: broker
      client_secret: CORP-SECRET-VALUE
workloads:
  - id: ci
    config:
      issuer: https://ci.example.com
      audiences: [https://sso.example.com]
links:
  groups:
    - [local, corp]
clients:
  - id: app
    name: App
    public: true
    redirect_uris: ["https://app.example.com/cb"]
  - id: other
    name: Other
    public: true
    redirect_uris: ["https://other.example.com/cb"]
admin:
  token: ADMIN-TOKEN-VALUE-0123456789abcdef
`

// secretValues are the values diffBase and its edits use for secrets.
var secretValues = []string{
	"S0VLLXNlY3JldC1TMEVMTFMwRUtLLXNlY3JldC0xMjM=", "S0VLLXNlY3JldC1TMEVMTFMwRUtLLXNlY3JldC00NTY=",
	"ALICEHASH", "BOBHASH", "CORP-SECRET-VALUE", "CORP-SECRET-ROTATED",
	"ADMIN-TOKEN-VALUE", "ADMIN-TOKEN-ROTATED", "redispass",
}

func parseDiffConfig(t *testing.T, yml string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(yml), func(string) string { return "" })
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func replaceOnce(t *testing.T, s, old, repl string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("test configuration has no %q", old)
	}
	return strings.Replace(s, old, repl, 1)
}

func changeStrings(cs []Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Path + " " + c.Kind
	}
	return out
}

func TestDiffNoChanges(t *testing.T) {
	if got := Diff(parseDiffConfig(t, diffBase), parseDiffConfig(t, diffBase)); len(got) != 0 {
		t.Errorf("Diff of the same file = %v, want nothing", changeStrings(got))
	}
	// Comments, quoting and key order are not changes.
	restyled := replaceOnce(t, diffBase, "      client_id: broker\n      client_secret: CORP-SECRET-VALUE\n",
		"      # rotated yearly\n      client_secret: \"CORP-SECRET-VALUE\"\n      client_id: 'broker'\n")
	if got := Diff(parseDiffConfig(t, diffBase), parseDiffConfig(t, restyled)); len(got) != 0 {
		t.Errorf("Diff after restyling = %v, want nothing", changeStrings(got))
	}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, yml string) string
		want []string
	}{
		{"issuer", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "issuer: https://sso.example.com", "issuer: https://login.example.com")
		}, []string{"issuer changed"}},
		{"http.addr", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "addr: 127.0.0.1:5556", "addr: 0.0.0.0:5556")
		}, []string{"http.addr changed"}},
		{"http list and pointer", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "  trusted_proxies: [10.0.0.1]\n", "  trusted_proxies: [10.0.0.2]\n  hsts_max_age: 0s\n  sign_in_limit: {burst: 5, every: 1s}\n")
		}, []string{"http.trusted_proxies changed", "http.hsts_max_age added", "http.sign_in_limit added"}},
		{"storage", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "  type: memory\n", "  type: redis\n  redis:\n    url: redis://:redispass@redis:6379/0\n")
		}, []string{"storage.type changed", "storage.redis.url changed"}},
		{"signing", func(t *testing.T, y string) string {
			y = replaceOnce(t, y, "algorithm: ES256", "algorithm: RS256")
			return replaceOnce(t, y, "S0VLLXNlY3JldC1TMEVMTFMwRUtLLXNlY3JldC0xMjM=", "S0VLLXNlY3JldC1TMEVMTFMwRUtLLXNlY3JldC00NTY=")
		}, []string{"signing.algorithm changed", "signing.key_encryption_key changed"}},
		{"tokens", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "access_token: 5m", "access_token: 10m")
		}, []string{"tokens.access_token changed"}},
		{"client field", func(t *testing.T, y string) string {
			return replaceOnce(t, y, `["https://app.example.com/cb"]`, `["https://app.example.com/cb", "https://app.example.com/cb2"]`)
		}, []string{"clients[app].redirect_uris changed"}},
		{"client added and removed", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "  - id: other\n    name: Other\n", "  - id: new\n    name: Other\n")
		}, []string{"clients[other] removed", "clients[new] added"}},
		{"connectors reordered", func(t *testing.T, y string) string {
			i, j := strings.Index(y, "  - id: corp\n"), strings.Index(y, "workloads:\n")
			k := strings.Index(y, "  - id: local\n")
			return y[:k] + y[i:j] + y[k:i] + y[j:]
		}, []string{"connectors reordered"}},
		{"connector secret", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "CORP-SECRET-VALUE", "CORP-SECRET-ROTATED")
		}, []string{"connectors[corp].config.client_secret changed"}},
		{"connector config list", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "          password_hash: \"$2a$04$ALICEHASHALICEHASHALICEHASHALICEHASHALICEHASHALICEHAS\"\n",
				"          password_hash: \"$2a$04$ALICEHASHALICEHASHALICEHASHALICEHASHALICEHASHALICEHAS\"\n        - username: bob\n          password_hash: \"$2a$04$BOBHASHBOBHASHBOBHASHBOBHASHBOBHASHBOBHASHBOBHASHBOBHA\"\n")
		}, []string{"connectors[local].config.users changed"}},
		{"connector config key added", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "      client_id: broker\n", "      client_id: broker\n      scopes: [openid, email]\n")
		}, []string{"connectors[corp].config.scopes added"}},
		{"mapping", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "      email: claims.email\n", "      email: claims.mail\n      name: claims.name\n")
		}, []string{"mappings[corp].claims[email] changed", "mappings[corp].claims[name] added"}},
		{"workload", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "issuer: https://ci.example.com", "issuer: https://ci2.example.com")
		}, []string{"workloads[ci].config.issuer changed"}},
		{"links", func(t *testing.T, y string) string {
			return replaceOnce(t, y, "    - [local, corp]\n", "    - [corp, local]\n")
		}, []string{"links.groups changed"}},
		{"admin", func(t *testing.T, y string) string {
			y = replaceOnce(t, y, "ADMIN-TOKEN-VALUE", "ADMIN-TOKEN-ROTATED")
			return replaceOnce(t, y, "admin:\n", "admin:\n  addr: 127.0.0.1:6000\n")
		}, []string{"admin.addr changed", "admin.token changed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, next := parseDiffConfig(t, diffBase), parseDiffConfig(t, tt.edit(t, diffBase))
			got := changeStrings(Diff(old, next))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Diff = %q, want %q", got, tt.want)
			}
			out, _ := json.Marshal(Diff(old, next))
			all := string(out) + fmt.Sprint(Diff(old, next)) + fmt.Sprintf("%+v %#v", Diff(old, next), Diff(old, next))
			for _, s := range secretValues {
				if strings.Contains(all, s) {
					t.Errorf("Diff output contains the secret value %q: %s", s, all)
				}
			}
		})
	}
}

func TestDiffSection(t *testing.T) {
	for path, want := range map[string]string{
		"issuer": "issuer", "http.addr": "http", "clients[app].redirect_uris": "clients",
		"connectors": "connectors", "mappings[a.b].claims[x]": "mappings",
	} {
		if got := (Change{Path: path}).Section(); got != want {
			t.Errorf("Change{%q}.Section() = %q, want %q", path, got, want)
		}
	}
}

// TestWithSections: the configuration a server runs after a partial
// reload takes the chosen sections from the new file and keeps the rest.
func TestWithSections(t *testing.T) {
	old := parseDiffConfig(t, diffBase)
	y := replaceOnce(t, diffBase, "addr: 127.0.0.1:5556", "addr: 0.0.0.0:5556")
	y = replaceOnce(t, y, `["https://app.example.com/cb"]`, `["https://app.example.com/cb2"]`)
	next := parseDiffConfig(t, y)
	merged := WithSections(old, next, func(section string) bool { return section == "clients" })
	if merged.HTTP.Addr != "127.0.0.1:5556" || merged.Clients[0].RedirectURIs[0] != "https://app.example.com/cb2" {
		t.Errorf("merged http.addr %q, clients[app].redirect_uris %q; want the old address and the new URIs", merged.HTTP.Addr, merged.Clients[0].RedirectURIs)
	}
	if got := changeStrings(Diff(merged, next)); !slices.Equal(got, []string{"http.addr changed"}) {
		t.Errorf("Diff(merged, next) = %q, want only http.addr", got)
	}
	if old.Clients[0].RedirectURIs[0] != "https://app.example.com/cb" {
		t.Error("WithSections modified its argument")
	}
}
