package oidc

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

func ptr[T any](v T) *T { return &v }

// TestPromptConsentWithOfflineAccess: OpenID Connect Core §11 — an RP
// asking for offline_access sends prompt=consent, and a strict provider
// then issues a refresh token.
func TestPromptConsentWithOfflineAccess(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	idp.SetStrictOfflineAccess(true)
	c := open(t, baseConfig(idp), nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	q := idp.LastAuthorize()
	if got := q.Get("prompt"); got != "consent" {
		t.Errorf("authorize prompt = %q, want consent", got)
	}
	if !hasScope(q.Get("scope"), "offline_access") {
		t.Errorf("authorize scope = %q, want offline_access", q.Get("scope"))
	}
	if rt := refreshTokenOf(t, id); rt == "" {
		t.Errorf("ConnectorData = %s, want the upstream refresh token", id.ConnectorData)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() = %q, want none", w)
	}
}

// TestPromptChoices: no prompt without offline_access; the operator's
// prompt replaces consent; an explicit empty prompt sends none; an
// extension that says so (Entra ID) gets no consent prompt.
func TestPromptChoices(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  func(*Config)
		ext  Extension
		want *string // nil: no prompt parameter at all
	}{
		{name: "offline_access", want: ptr("consent")},
		{name: "offline_access off", cfg: func(c *Config) { c.OfflineAccess = ptr(false) }},
		{name: "operator prompt", cfg: func(c *Config) { c.Prompt = ptr("login") }, want: ptr("login")},
		{name: "operator prompt list", cfg: func(c *Config) { c.Prompt = ptr("select_account consent") }, want: ptr("select_account consent")},
		{name: "explicitly none sent", cfg: func(c *Config) { c.Prompt = ptr("") }},
		{name: "extension without consent prompt", ext: Extension{NoConsentPrompt: true}},
		{name: "extension's own prompt", ext: Extension{NoOfflineScope: true, AuthParams: url.Values{"prompt": {"consent"}, "access_type": {"offline"}}}, want: ptr("consent")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t, testidp.Options{})
			cfg := baseConfig(idp)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			if errs := cfg.Validate(); len(errs) > 0 {
				t.Fatalf("Validate() = %v", errs)
			}
			c, err := Open(context.Background(), "up", cfg, connectors.Options{HTTPClient: &http.Client{}, CallbackURL: callbackURL}, tt.ext)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := login(t, c); err != nil {
				t.Fatalf("login error = %v", err)
			}
			q := idp.LastAuthorize()
			switch {
			case tt.want == nil && q.Has("prompt"):
				t.Errorf("authorize prompt = %q, want none", q["prompt"])
			case tt.want != nil && !cmp.Equal(q["prompt"], []string{*tt.want}):
				t.Errorf("authorize prompt = %q, want %q", q["prompt"], *tt.want)
			}
		})
	}
}

// TestExtraAuthParams: domain_hint, acr_values and auth_params reach the
// upstream; the protocol parameters stay the connector's.
func TestExtraAuthParams(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	cfg := baseConfig(idp)
	cfg.DomainHint = "contoso.com"
	cfg.ACRValues = []string{"urn:acr:mfa", "phr"}
	cfg.AuthParams = map[string]string{"ui_locales": "de-CH fr", "claims": `{"id_token":{"acr":{"essential":true}}}`, "resource": "https://api.example"}
	c := open(t, cfg, nil)
	if _, err := login(t, c); err != nil {
		t.Fatalf("login error = %v", err)
	}
	q := idp.LastAuthorize()
	for k, want := range map[string]string{
		"domain_hint": "contoso.com", "acr_values": "urn:acr:mfa phr", "ui_locales": "de-CH fr",
		"claims": `{"id_token":{"acr":{"essential":true}}}`, "resource": "https://api.example",
		"client_id": idp.ClientID(), "response_type": "code", "redirect_uri": callbackURL, "prompt": "consent",
		"scope": "openid profile email offline_access", "state": "state-1",
	} {
		if !cmp.Equal(q[k], []string{want}) {
			t.Errorf("authorize %s = %q, want [%q]", k, q[k], want)
		}
	}
}

// TestValidateAuthParams: protocol parameters cannot be overridden, and
// every new option is checked, each problem at its YAML path.
func TestValidateAuthParams(t *testing.T) {
	good := Config{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s"}
	for _, key := range []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
		"code_challenge", "code_challenge_method", "response_mode", "request", "request_uri", "Client_ID", "SCOPE",
		"prompt", "domain_hint", "acr_values", "client_secret"} {
		t.Run("auth_params "+key, func(t *testing.T) {
			c := good
			c.AuthParams = map[string]string{key: "x", "ui_locales": "de"}
			errs := c.Validate()
			if len(errs) != 1 || errs[0].Path != "auth_params."+key {
				t.Fatalf("Validate() = %v, want one problem at auth_params.%s", errs, key)
			}
			if !strings.Contains(errs[0].Message, "connector") && !strings.Contains(errs[0].Message, "option") && !strings.Contains(errs[0].Message, "browser") {
				t.Errorf("message %q does not say why", errs[0].Message)
			}
		})
	}
	tests := []struct {
		name  string
		mod   func(*Config)
		paths []string
	}{
		{"all good", func(c *Config) {
			c.Prompt, c.DomainHint, c.ACRValues = ptr("login consent"), "contoso.com", []string{"a", "b"}
			c.AuthParams = map[string]string{"ui_locales": "de", "access_type": "offline", "empty": ""}
			c.OfflineAccessMissing, c.UpstreamSessionLifetime = OfflineMissingCap, 8*time.Hour
		}, nil},
		{"empty prompt", func(c *Config) { c.Prompt = ptr("") }, nil},
		{"refuse", func(c *Config) { c.OfflineAccessMissing = OfflineMissingRefuse }, nil},
		{"unknown prompt", func(c *Config) { c.Prompt = ptr("bogus") }, []string{"prompt"}},
		{"prompt none with another", func(c *Config) { c.Prompt = ptr("none login") }, []string{"prompt"}},
		{"prompt repeated", func(c *Config) { c.Prompt = ptr("login login") }, []string{"prompt"}},
		{"domain_hint with a space", func(c *Config) { c.DomainHint = "a b" }, []string{"domain_hint"}},
		{"bad acr_values", func(c *Config) { c.ACRValues = []string{"ok", "", "a b"} }, []string{"acr_values[1]", "acr_values[2]"}},
		{"empty auth_params name", func(c *Config) { c.AuthParams = map[string]string{"": "x"} }, []string{"auth_params"}},
		{"unknown policy", func(c *Config) { c.OfflineAccessMissing = "allow" }, []string{"offline_access_missing"}},
		{"lifetime with refuse", func(c *Config) {
			c.OfflineAccessMissing, c.UpstreamSessionLifetime = OfflineMissingRefuse, time.Hour
		}, []string{"upstream_session_lifetime"}},
		{"lifetime out of range", func(c *Config) { c.UpstreamSessionLifetime = time.Second }, []string{"upstream_session_lifetime"}},
		{"policy with offline_access off", func(c *Config) {
			c.OfflineAccess, c.OfflineAccessMissing, c.UpstreamSessionLifetime = ptr(false), OfflineMissingCap, time.Hour
		}, []string{"offline_access_missing", "upstream_session_lifetime"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			var paths []string
			for _, e := range c.Validate() {
				paths = append(paths, e.Path)
			}
			if diff := cmp.Diff(tt.paths, paths); diff != "" {
				t.Errorf("Validate() paths (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAuthParamsYAML: the documented YAML decodes into the options.
func TestAuthParamsYAML(t *testing.T) {
	src := `
issuer: https://idp.example
client_id: c
client_secret: s
prompt: select_account
domain_hint: contoso.com
acr_values: [urn:acr:mfa]
auth_params:
  ui_locales: de
offline_access_missing: refuse_refresh
`
	var c Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	want := Config{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s", Prompt: ptr("select_account"),
		DomainHint: "contoso.com", ACRValues: []string{"urn:acr:mfa"}, AuthParams: map[string]string{"ui_locales": "de"},
		OfflineAccessMissing: OfflineMissingRefuse}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("yaml decode (-want +got):\n%s", diff)
	}
	var empty Config
	if err := yaml.Unmarshal([]byte("prompt: \"\"\n"), &empty); err != nil || empty.Prompt == nil || *empty.Prompt != "" {
		t.Errorf(`prompt: "" decodes to %v (%v), want a pointer to ""`, empty.Prompt, err)
	}
	if errs := c.Validate(); len(errs) > 0 {
		t.Errorf("Validate() = %v", errs)
	}
}

func hasScope(scope, want string) bool { return slices.Contains(strings.Fields(scope), want) }
