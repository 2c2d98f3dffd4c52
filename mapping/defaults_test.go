package mapping

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultsCompile(t *testing.T) {
	for _, typ := range []string{"local", "oidc", "google", "azuread", "saml", "github", ""} {
		if _, errs := Compile(Default(typ), CompileOptions{}); errs != nil {
			t.Errorf("Compile(Default(%q)) errors = %v, want none", typ, errs)
		}
	}
}

func TestDefaultMappings(t *testing.T) {
	tests := []struct {
		name, typ string
		claims    map[string]any
		sources   map[string]any
		wantID    map[string]any
		wantErr   bool
	}{
		{
			name: "local", typ: "local",
			claims: map[string]any{"email": "a@x.org", "email_verified": true, "name": "A", "username": "a", "groups": []any{"g"}},
			wantID: map[string]any{"email": "a@x.org", "email_verified": true, "name": "A", "preferred_username": "a", "groups": []any{"g"}},
		},
		{
			name: "local without email or name", typ: "local",
			claims: map[string]any{"sub": "x", "email": "", "email_verified": false, "name": "", "username": "breakglass", "groups": []any{}},
			wantID: map[string]any{"preferred_username": "breakglass", "groups": []any{}},
		},
		{
			name: "oidc string true is not verified", typ: "oidc",
			claims: map[string]any{"email": "a@x.org", "email_verified": "true"},
			wantID: map[string]any{"email": "a@x.org", "email_verified": false},
		},
		{
			name: "oidc bool true", typ: "oidc",
			claims: map[string]any{"email": "a@x.org", "email_verified": true, "preferred_username": "a"},
			wantID: map[string]any{"email": "a@x.org", "email_verified": true, "preferred_username": "a"},
		},
		{
			name: "oidc no email", typ: "oidc",
			claims: map[string]any{"email_verified": true},
			wantID: map[string]any{},
		},
		{
			name: "google verified", typ: "google",
			claims: map[string]any{"email": "a@acme.com", "email_verified": true, "hd": "acme.com", "name": "A"},
			wantID: map[string]any{"email": "a@acme.com", "email_verified": true, "hd": "acme.com", "name": "A", "preferred_username": "a@acme.com"},
		},
		{
			name: "google unverified rejected", typ: "google",
			claims:  map[string]any{"email": "a@acme.com", "email_verified": false},
			wantErr: true,
		},
		{
			name: "azuread groups from sources", typ: "azuread",
			claims:  map[string]any{"preferred_username": "a@acquired.com", "roles": []any{"Admin"}, "groups": []any{"ignored"}, "tid": "t1"},
			sources: map[string]any{"groups": []any{"g1", "g2"}},
			wantID:  map[string]any{"email": "a@acquired.com", "preferred_username": "a@acquired.com", "roles": []any{"Admin"}, "groups": []any{"g1", "g2"}, "tid": "t1"},
		},
		{
			name: "azuread email wins", typ: "azuread",
			claims: map[string]any{"email": "b@acquired.com", "preferred_username": "upn@acquired.com", "groups": []any{"g"}},
			wantID: map[string]any{"email": "b@acquired.com", "preferred_username": "upn@acquired.com", "groups": []any{"g"}},
		},
		{
			name: "saml uris", typ: "saml",
			claims: map[string]any{
				samlEmailAddress: []any{"p@acme.com", "second@acme.com"},
				samlGivenName:    []any{"Pat"},
				samlSurname:      []any{"Lee"},
				samlGroups:       []any{"g1", "g2"},
				"groups":         []any{"g2", "g3"},
				samlRole:         []any{"admin"},
				"nameid":         "p@acme.com",
			},
			wantID: map[string]any{"email": "p@acme.com", "name": "Pat Lee", "groups": []any{"g1", "g2", "g3"}, "roles": []any{"admin"}},
		},
		{
			name: "saml oid mail and display name", typ: "saml",
			claims: map[string]any{samlMail: []any{"q@acme.com"}, samlDisplayName: []any{"Q Q"}, samlGivenName: []any{"ignored"}, samlUID: []any{"q"}},
			wantID: map[string]any{"email": "q@acme.com", "name": "Q Q", "preferred_username": "q"},
		},
		{
			name: "saml empty attribute", typ: "saml",
			claims: map[string]any{samlMail: []any{}, samlSurname: []any{"Only"}},
			wantID: map[string]any{"name": "Only"},
		},
		{
			name: "saml attribute not a list", typ: "saml",
			claims:  map[string]any{samlMail: "x@acme.com"},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, errs := Compile(Default(tt.typ), CompileOptions{})
			if errs != nil {
				t.Fatalf("Compile: %v", errs)
			}
			got, err := m.Evaluate(context.Background(), Input{ConnectorID: "c", ConnectorType: tt.typ, UpstreamSubject: "s", Claims: tt.claims, Sources: tt.sources})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Evaluate error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.wantID, got.IDToken); diff != "" {
				t.Errorf("IDToken mismatch (-want +got):\n%s", diff)
			}
			if got.Subject != DefaultSubject("c", "s") {
				t.Errorf("Subject = %q, want DefaultSubject", got.Subject)
			}
			if got.LinkKey != "" {
				t.Errorf("LinkKey = %q, want none", got.LinkKey)
			}
		})
	}
}
