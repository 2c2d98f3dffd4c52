package config

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/connectors/local"
	"github.com/fedbroker/fedbroker/connectors/registry"
	"github.com/fedbroker/fedbroker/mapping/spec"
)

var testHashes = sync.OnceValues(func() (string, string) {
	pw, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	sh, err := HashSecret(strings.Repeat("x", 40))
	if err != nil {
		panic(err)
	}
	return string(pw), sh
})

// fill replaces PWHASH and SECRETHASH in a test YAML with real hashes.
func fill(yml string) []byte {
	pw, sh := testHashes()
	return []byte(strings.NewReplacer("PWHASH", pw, "SECRETHASH", sh).Replace(yml))
}

func noEnv(string) string { return "" }

// paths returns the sorted paths of the problems in err.
func paths(t *testing.T, err error) []string {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	out := make([]string, len(es))
	for i, p := range es {
		out[i] = p.Path
	}
	sort.Strings(out)
	return out
}

const goodYAML = `
issuer: https://login.example.com
http:
  addr: 0.0.0.0:5556
  trusted_proxies: [10.0.0.0/8, 192.0.2.1]
storage:
  type: redis
  redis:
    url: redis://redis:6379/0
    key_prefix: sso
signing:
  algorithm: ES256
  algorithms: [RS256]
  rotation_period: 12h
  key_encryption_key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
tokens:
  id_token: 10m
  access_token: 2m
  refresh_idle: 1h
  refresh_absolute: 48h
connectors:
  - id: local
    type: local
    name: Break-glass
    mapping: staff
    domains: [Example.com]
    config:
      users:
        - username: alice
          password_hash: "PWHASH"
          email: alice@example.com
          groups: [admins]
  - id: backup
    type: local
    config:
      users:
        - {username: bob, password_hash: "PWHASH"}
mappings:
  staff:
    subject: claims.sub
    claims:
      email: claims.email
      groups: {expr: claims.groups, in: access_token}
links:
  groups: [[local, backup]]
clients:
  - id: web
    name: Web
    public: true
    redirect_uris: [https://app.example.com/cb, "http://[::1]:8080/cb", "com.example.app:/cb"]
    post_logout_redirect_uris: [https://app.example.com/]
    connectors: [local]
  - id: svc
    secret_hash: "SECRETHASH"
    redirect_uris: [https://svc.example.com/cb]
    grant_types: [authorization_code, client_credentials]
    audiences: [api]
    scopes: [openid, api.read]
    id_token_signed_response_alg: RS256
    access_token_lifetime: 1m
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse(fill(goodYAML), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := cfg.Tokens, (Tokens{
		IDToken: 10 * time.Minute, AccessToken: 2 * time.Minute, RefreshIdle: time.Hour, RefreshAbsolute: 48 * time.Hour,
		AuthCode: DefaultAuthCode, AuthRequest: DefaultAuthRequest, Session: DefaultSession,
	}); got != want {
		t.Errorf("Tokens = %+v, want %+v", got, want)
	}
	if got, want := cfg.Storage, (Storage{Type: "redis", Redis: Redis{URL: "redis://redis:6379/0", KeyPrefix: "sso", EvictionPolicy: "refuse"}}); got != want {
		t.Errorf("Storage = %+v, want %+v", got, want)
	}
	web := cfg.Clients[0]
	if diff := cmp.Diff([]string{"web"}, web.Audiences); diff != "" {
		t.Errorf("web audiences default (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(DefaultScopes, web.Scopes); diff != "" {
		t.Errorf("web scopes default (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(DefaultGrantTypes, web.GrantTypes); diff != "" {
		t.Errorf("web grant types default (-want +got):\n%s", diff)
	}
	svc := cfg.Clients[1]
	if diff := cmp.Diff([]string{"api"}, svc.Audiences); diff != "" {
		t.Errorf("svc audiences (-want +got):\n%s", diff)
	}
	if svc.AccessTokenLifetime != time.Minute {
		t.Errorf("svc access_token_lifetime = %v, want 1m", svc.AccessTokenLifetime)
	}
	if got := cfg.Mappings["staff"].Claims["groups"]; got.Expr != "claims.groups" || got.In != "access_token" {
		t.Errorf("mapping claim groups = %+v", got)
	}
	typed, ps := cfg.Connectors[0].Decode(registry.Types())
	if len(ps) > 0 {
		t.Fatalf("Decode: %v", ps)
	}
	lc, ok := typed.(*local.Config)
	if !ok || len(lc.Users) != 1 || lc.Users[0].Email != "alice@example.com" {
		t.Errorf("Decode = %#v", typed)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte("issuer: http://localhost:5556\n"), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Config{
		Issuer:   "http://localhost:5556",
		HTTP:     HTTP{Addr: "127.0.0.1:5556"},
		Storage:  Storage{Type: "sqlite", Redis: Redis{KeyPrefix: "fb", EvictionPolicy: "refuse"}, SQLite: SQLite{Path: "fedbroker.db"}},
		Signing:  Signing{Algorithm: "ES256", RotationPeriod: 24 * time.Hour},
		Tokens:   Tokens{IDToken: 5 * time.Minute, AccessToken: 5 * time.Minute, RefreshIdle: 24 * time.Hour, RefreshAbsolute: 720 * time.Hour, AuthCode: 60 * time.Second, AuthRequest: 10 * time.Minute, Session: 12 * time.Hour},
		Mappings: map[string]spec.Spec{},
	}
	if diff := cmp.Diff(&want, cfg); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
}

func TestLoadFromEnvironment(t *testing.T) {
	t.Setenv("FB_TEST_ISSUER", "https://sso.example.org")
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("issuer: ${FB_TEST_ISSUER}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Issuer != "https://sso.example.org" {
		t.Errorf("issuer = %q", cfg.Issuer)
	}
}

func TestSyntaxError(t *testing.T) {
	_, err := Parse([]byte("issuer: [unclosed\n"), noEnv)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || !strings.Contains(es[0].Message, "line") {
		t.Errorf("Parse(bad yaml) = %v, want one problem naming the line", err)
	}
}

func TestManyProblemsAtOnce(t *testing.T) {
	yml := `
issuer: http://sso.example.com/
storage: {type: redis}
signing: {algorithm: HS256}
tokens: {access_token: 48h}
clients:
  - id: a
    redirect_uri: https://a.example.com/cb
`
	_, err := Parse([]byte(yml), noEnv)
	want := []string{"clients[0].redirect_uri", "clients[0].redirect_uris", "clients[0].secret_hash", "issuer", "signing.algorithm", "storage.redis.url", "tokens.access_token"}
	if diff := cmp.Diff(want, paths(t, err)); diff != "" {
		t.Errorf("problem paths (-want +got):\n%s\nerror:\n%v", diff, err)
	}
	if got := strings.Count(err.Error(), "\n") + 1; got != len(want) {
		t.Errorf("Error() has %d lines, want %d:\n%v", got, len(want), err)
	}
	if !strings.Contains(err.Error(), "clients[0].redirect_uri: line 8: unknown key (did you mean redirect_uris?)") {
		t.Errorf("Error() lacks the suggestion:\n%v", err)
	}
}
