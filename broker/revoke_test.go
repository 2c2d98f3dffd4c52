package broker

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestRevokeAccessToken: an access token revoked by its client is refused
// by userinfo and introspection; another client cannot revoke it.
func TestRevokeAccessToken(t *testing.T) {
	h, _ := workloadHarness(t)
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	tr := h.redeem(code, p)
	if tr.status != 200 {
		t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	introspect := func() any {
		req, _ := http.NewRequest(http.MethodPost, h.issuer+"/introspect", strings.NewReader(url.Values{"token": {tr.AccessToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("ci", ciSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out["active"]
	}
	if got := introspect(); got != true {
		t.Fatalf("introspect before revocation: active = %v", got)
	}
	// Another client's revocation is a no-op (200, nothing revoked).
	if st := h.revoke(tr.AccessToken, "other"); st != 200 {
		t.Fatalf("revoke by another client = %d, want 200", st)
	}
	if got := introspect(); got != true {
		t.Fatalf("introspect after another client's revocation: active = %v, want true", got)
	}
	if st := h.revoke(tr.AccessToken, "app"); st != 200 {
		t.Fatalf("revoke = %d, want 200", st)
	}
	if got := introspect(); got != false {
		t.Errorf("introspect after revocation: active = %v, want false", got)
	}
	if ui := h.userinfo(tr.AccessToken); ui.status != http.StatusUnauthorized {
		t.Errorf("userinfo after revocation = %d, want 401", ui.status)
	}
	if !strings.Contains(h.audit.String(), `"token_type":"access_token"`) {
		t.Error("no audit line for the access token revocation")
	}
}
