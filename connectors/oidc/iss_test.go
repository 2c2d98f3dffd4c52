package oidc

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// TestAuthorizationResponseIss: RFC 9207. An upstream that advertises
// authorization_response_iss_parameter_supported must send iss equal to
// its issuer on the callback; one that does not may omit it, but an iss
// it sends must still match. The check comes before the code is redeemed
// and before an error response is believed.
func TestAuthorizationResponseIss(t *testing.T) {
	const evil = "https://evil.example"
	for _, tt := range []struct {
		name      string
		ip        func(iss string) testidp.IssParameter
		authzErr  string
		wantCode  string // "" for success
		wantCause string
	}{
		{name: "advertised and sent", ip: func(string) testidp.IssParameter { return testidp.IssParameter{Advertise: true, Send: true} }},
		{name: "advertised, missing", ip: func(string) testidp.IssParameter { return testidp.IssParameter{Advertise: true} }, wantCode: CodeIssuerMismatch, wantCause: "no iss"},
		{name: "advertised, another issuer", ip: func(string) testidp.IssParameter {
			return testidp.IssParameter{Advertise: true, Send: true, Value: evil}
		}, wantCode: CodeIssuerMismatch, wantCause: evil},
		{name: "advertised, issuer with a trailing slash", ip: func(iss string) testidp.IssParameter {
			return testidp.IssParameter{Advertise: true, Send: true, Value: iss + "/"}
		}, wantCode: CodeIssuerMismatch},
		{name: "not advertised, missing", ip: func(string) testidp.IssParameter { return testidp.IssParameter{} }},
		{name: "not advertised, sent and right", ip: func(string) testidp.IssParameter { return testidp.IssParameter{Send: true} }},
		{name: "not advertised, another issuer", ip: func(string) testidp.IssParameter { return testidp.IssParameter{Send: true, Value: evil} }, wantCode: CodeIssuerMismatch},
		{name: "error response from another issuer", ip: func(string) testidp.IssParameter {
			return testidp.IssParameter{Advertise: true, Send: true, Value: evil}
		}, authzErr: "access_denied", wantCode: CodeIssuerMismatch},
		{name: "error response, right issuer", ip: func(string) testidp.IssParameter { return testidp.IssParameter{Advertise: true, Send: true} }, authzErr: "access_denied", wantCode: CodeAccessDenied},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t, testidp.Options{})
			idp.SetIssParameter(tt.ip(idp.Issuer()))
			c := open(t, baseConfig(idp), nil)
			if tt.authzErr != "" {
				idp.SetAuthorizeError(tt.authzErr)
			}
			id, err := login(t, c)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("login error = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("login = %+v, want %s", id, tt.wantCode)
			}
			ue := wantCode(t, err, tt.wantCode)
			if !strings.Contains(err.Error(), tt.wantCause) {
				t.Errorf("error = %v, want the cause to name %q", err, tt.wantCause)
			}
			if strings.Contains(ue.Message, evil) {
				t.Errorf("Message %q echoes the upstream's iss", ue.Message)
			}
		})
	}
}

// TestAuthorizationResponseIssRepeated: two iss parameters are refused.
func TestAuthorizationResponseIssRepeated(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	idp.SetIssParameter(testidp.IssParameter{Advertise: true, Send: true})
	c := open(t, baseConfig(idp), nil)
	ctx := context.Background()
	u, st, err := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "s")
	if err != nil {
		t.Fatal(err)
	}
	r, err := testidp.CallbackRequest(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	q := r.URL.Query()
	q.Add("iss", idp.Issuer())
	r.URL.RawQuery = q.Encode()
	_, err = c.HandleCallback(ctx, connectors.Scopes{}, st, r)
	wantCode(t, err, CodeIssuerMismatch)
}

// TestAuthorizationResponseIssTemplate: behind a multi-tenant discovery
// issuer ("{tenantid}"), iss must fit the template and equal the ID
// token's iss.
func TestAuthorizationResponseIssTemplate(t *testing.T) {
	for _, tt := range []struct {
		name, sent string
		wantCode   string
	}{
		{"the token's tenant", "/t1/v2.0", ""},
		{"another tenant", "/t2/v2.0", CodeIssuerMismatch},
		{"not the template", "/t1/v3", CodeIssuerMismatch},
		{"empty tenant", "//v2.0", CodeIssuerMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t, testidp.Options{})
			tmpl := idp.URL() + "/{tenantid}/v2.0"
			idp.SetIssuer(tmpl)
			idp.SetUser(testidp.User{Subject: "u1", Claims: map[string]any{"iss": idp.URL() + "/t1/v2.0"}})
			idp.SetIssParameter(testidp.IssParameter{Advertise: true, Send: true, Value: idp.URL() + tt.sent})
			cfg := baseConfig(idp)
			cfg.Issuer = idp.URL() + "/organizations/v2.0"
			c, err := Open(context.Background(), "up", cfg, connectors.Options{HTTPClient: &http.Client{}, CallbackURL: callbackURL}, Extension{DiscoveryIssuer: tmpl})
			if err != nil {
				t.Fatal(err)
			}
			_, err = login(t, c)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("login error = %v", err)
				}
				return
			}
			wantCode(t, err, tt.wantCode)
		})
	}
}
