package oidc

import (
	"context"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// TestFutureIssuedAt: go-oidc's verifier ignores iat, so an upstream ID
// token "issued" in the future beyond the allowed skew (the one go-oidc
// allows on nbf) is refused by the connector itself, on sign-in and on
// refresh. A token without iat, or with iat slightly ahead, still passes.
func TestFutureIssuedAt(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		name string
		iat  any // nil removes the claim
		ok   bool
	}{
		{"iat now", now.Unix(), true},
		{"no iat", nil, true},
		{"iat a minute ahead", now.Add(time.Minute).Unix(), true},
		{"iat an hour ahead", now.Add(time.Hour).Unix(), false},
		{"iat a year ahead", now.AddDate(1, 0, 0).Unix(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t, testidp.Options{})
			c := open(t, baseConfig(idp), nil)
			idp.SetTamper(testidp.Tamper{ExtraClaims: map[string]any{"iat": tt.iat}})
			_, err := login(t, c)
			if tt.ok {
				if err != nil {
					t.Fatalf("login error = %v", err)
				}
				return
			}
			wantCode(t, err, CodeInvalidToken)

			// The same on refresh: sign in cleanly, then refresh into a
			// token from the future.
			idp.SetTamper(testidp.Tamper{})
			id, err := login(t, c)
			if err != nil {
				t.Fatalf("clean login error = %v", err)
			}
			idp.SetTamper(testidp.Tamper{ExtraClaims: map[string]any{"iat": tt.iat}})
			_, err = c.Refresh(context.Background(), connectors.Scopes{OfflineAccess: true}, id)
			wantCode(t, err, CodeInvalidToken)
		})
	}
}
