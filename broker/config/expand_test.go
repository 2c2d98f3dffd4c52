package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestExpand(t *testing.T) {
	env := envOf(map[string]string{"HOST": "sso.example.com", "NESTED": "${HOST}", "DOLLAR": "a$$b"})
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "https://${HOST}", want: "https://sso.example.com"},
		{in: "${HOST}${HOST}", want: "sso.example.comsso.example.com"},
		{in: "${UNSET:-fallback}", want: "fallback"},
		{in: "${UNSET:-}", want: ""},
		{in: "${HOST:-fallback}", want: "sso.example.com"},
		{in: "$${HOST}", want: "${HOST}"},
		{in: "cost$$", want: "cost$"},
		{in: "${NESTED}", want: "${HOST}"}, // values from the environment are not expanded again
		{in: "${DOLLAR}", want: "a$$b"},
		{in: "$2a$12$abc", want: "$2a$12$abc"},
		{in: "trailing$", want: "trailing$"},
		{in: "${UNSET}", wantErr: "UNSET is not set"},
		{in: "${HOST", wantErr: "unterminated"},
		{in: "${}", wantErr: "invalid environment variable name"},
		{in: "${1A}", wantErr: "invalid environment variable name"},
		{in: "${A-B}", wantErr: "invalid environment variable name"},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, env)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("expand(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseExpansion(t *testing.T) {
	yml := `
issuer: ${ISSUER}
storage:
  type: ${STORE:-redis}
  redis: {url: "${REDIS_URL}"}
tokens:
  access_token: ${TTL}
clients:
  - id: app
    public: ${PUBLIC}
    name: "${INJECT}"
    scopes:
      - openid
      - "${NUM}"
      - ${NUM}
    audiences: ["$${literal}"]
    redirect_uris: ["${APP}/cb"]
`
	env := envOf(map[string]string{
		"ISSUER":    "https://sso.example.com",
		"REDIS_URL": "redis://r:6379",
		"TTL":       "2m",
		"PUBLIC":    "true",
		"INJECT":    "${ISSUER}",
		"APP":       "https://app.example.com",
		"NUM":       "123",
	})
	cfg, err := Parse([]byte(yml), env)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := []string{cfg.Issuer, cfg.Storage.Type, cfg.Storage.Redis.URL, cfg.Clients[0].Audiences[0], cfg.Tokens.AccessToken.String(), cfg.Clients[0].Name, cfg.Clients[0].RedirectURIs[0]}
	want := []string{"https://sso.example.com", "redis", "redis://r:6379", "${literal}", "2m0s", "${ISSUER}", "https://app.example.com/cb"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("expanded values (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"openid", "123", "123"}, cfg.Clients[0].Scopes); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
	if !cfg.Clients[0].Public {
		t.Errorf("public: ${PUBLIC}=true decoded as false")
	}
}

func TestParseExpansionErrors(t *testing.T) {
	yml := `
issuer: https://sso.example.com
storage:
  type: redis
  redis: {url: "${REDIS_URL}"}
clients:
  - id: app
    secret_hash: ${APP_SECRET_HASH}
    redirect_uris: ["https://app.example.com/cb"]
`
	_, err := Parse([]byte(yml), noEnv)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse = %v, want Errors", err)
	}
	want := Errors{
		{Path: "storage.redis.url", Message: "line 5: environment variable REDIS_URL is not set (write ${REDIS_URL:-default} for a default)"},
		{Path: "clients[0].secret_hash", Message: "line 8: environment variable APP_SECRET_HASH is not set (write ${APP_SECRET_HASH:-default} for a default)"},
	}
	if diff := cmp.Diff(want, es); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestExpansionNotInKeys checks that mapping keys are left alone.
func TestExpansionNotInKeys(t *testing.T) {
	_, err := Parse([]byte("issuer: https://a.example.com\n${KEY}: x\n"), envOf(map[string]string{"KEY": "issuer"}))
	if err == nil || !strings.Contains(err.Error(), "${KEY}: line 2: unknown key") {
		t.Errorf("Parse = %v, want ${KEY} reported as an unknown key", err)
	}
}
