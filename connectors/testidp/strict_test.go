package testidp

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"golang.org/x/oauth2"
)

// TestStrictOfflineAccess: with the knob on, offline_access yields a
// refresh token only with prompt=consent; by default, always.
func TestStrictOfflineAccess(t *testing.T) {
	for _, tt := range []struct {
		name   string
		strict bool
		prompt string
		want   bool
	}{
		{"default without prompt", false, "", true},
		{"strict without prompt", true, "", false},
		{"strict with prompt=login", true, "login", false},
		{"strict with prompt=consent", true, "consent", true},
		{"strict with prompt=login consent", true, "login consent", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, oc := start(t)
			p.SetStrictOfflineAccess(tt.strict)
			v := oauth2.GenerateVerifier()
			opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(v)}
			if tt.prompt != "" {
				opts = append(opts, oauth2.SetAuthURLParam("prompt", tt.prompt))
			}
			r, err := CallbackRequest(context.Background(), oc.AuthCodeURL("st", opts...))
			if err != nil {
				t.Fatal(err)
			}
			if got := p.LastAuthorize().Get("prompt"); got != tt.prompt {
				t.Errorf("LastAuthorize prompt = %q, want %q", got, tt.prompt)
			}
			tok, err := oc.Exchange(context.Background(), r.URL.Query().Get("code"), oauth2.VerifierOption(v))
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.RefreshToken != ""; got != tt.want {
				t.Errorf("refresh token issued = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestIssParameter: discovery advertises RFC 9207 support and the
// authorization responses (codes and errors) carry iss as configured.
func TestIssParameter(t *testing.T) {
	p, oc := start(t)
	if p.LastAuthorize() != nil {
		t.Errorf("LastAuthorize before any request = %v, want nil", p.LastAuthorize())
	}
	advertised := func() any {
		resp, err := http.Get(p.URL() + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		return doc["authorization_response_iss_parameter_supported"]
	}
	iss := func() (string, bool) {
		r, err := CallbackRequest(context.Background(), oc.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if err != nil {
			t.Fatal(err)
		}
		return r.URL.Query().Get("iss"), r.URL.Query().Has("iss")
	}
	if got := advertised(); got != nil {
		t.Errorf("default discovery advertises iss support: %v", got)
	}
	if got, ok := iss(); ok {
		t.Errorf("default authorization response has iss %q", got)
	}
	p.SetIssParameter(IssParameter{Advertise: true, Send: true})
	if got := advertised(); got != true {
		t.Errorf("discovery authorization_response_iss_parameter_supported = %v, want true", got)
	}
	if got, _ := iss(); got != p.Issuer() {
		t.Errorf("iss = %q, want %q", got, p.Issuer())
	}
	p.SetIssParameter(IssParameter{Send: true, Value: "https://other.example"})
	if got, _ := iss(); got != "https://other.example" {
		t.Errorf("iss = %q, want the configured value", got)
	}
	p.SetAuthorizeError("access_denied")
	if got, _ := iss(); got != "https://other.example" {
		t.Errorf("iss on an error response = %q, want the configured value", got)
	}
}

func TestSetScopesSupported(t *testing.T) {
	p, _ := start(t)
	get := func() []any {
		resp, err := http.Get(p.URL() + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		s, _ := doc["scopes_supported"].([]any)
		return s
	}
	if got := get(); len(got) != 4 || got[3] != "offline_access" {
		t.Errorf("default scopes_supported = %v", got)
	}
	p.SetScopesSupported([]string{"openid"})
	if got := get(); len(got) != 1 || got[0] != "openid" {
		t.Errorf("scopes_supported = %v, want [openid]", got)
	}
	p.SetScopesSupported(nil)
	if got := get(); len(got) != 4 {
		t.Errorf("scopes_supported after reset = %v", got)
	}
}
