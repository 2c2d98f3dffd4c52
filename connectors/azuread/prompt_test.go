package azuread

import (
	"testing"
)

// TestNoConsentPrompt: Entra ID issues refresh tokens for offline_access
// without prompt=consent, and would show its consent page (or, where user
// consent is off, refuse the person) on every sign-in with it: the azuread
// connector asks for offline_access without any prompt.
func TestNoConsentPrompt(t *testing.T) {
	idp := newIdP(t)
	entraUser(idp, tenantA, nil)
	c := open(t, singleTenant(idp))
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	q := idp.LastAuthorize()
	if q.Has("prompt") {
		t.Errorf("authorize prompt = %q, want none", q["prompt"])
	}
	if len(id.ConnectorData) == 0 {
		t.Error("no connector data: the refresh token was not kept")
	}
}
