package broker

import (
	"net/http"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// TestUpstreamOIDCWithoutRefreshToken: a strict upstream drops
// offline_access when the prompt does not ask for consent (the operator
// configured prompt: login), so it issues no refresh token. Under
// offline_access_missing: refuse_refresh the broker issues none either;
// under cap_session it issues one that stops working when the upstream
// session (its ID token) ends, not refresh_absolute later.
func TestUpstreamOIDCWithoutRefreshToken(t *testing.T) {
	for _, tc := range []struct {
		policy      string
		wantRefresh bool
	}{{"refuse_refresh", false}, {"cap_session", true}} {
		t.Run(tc.policy, func(t *testing.T) {
			clk := newClock()
			idp := testidp.New(testidp.Options{Now: clk.Now})
			t.Cleanup(idp.Close)
			idp.SetUser(corpUser)
			idp.SetStrictOfflineAccess(true)
			up := corpConnector(idp)
			up.config += "prompt: login\noffline_access_missing: " + tc.policy + "\n"
			h := newHarness(t, nil, clk, withUpstreams(t, []upstream{up}, nil))
			tr, _ := h.upstreamSignIn(h.newBrowser(), "corp")
			if got := tr.RefreshToken != ""; got != tc.wantRefresh {
				t.Fatalf("refresh token issued = %v, want %v", got, tc.wantRefresh)
			}
			if !tc.wantRefresh {
				h.wantAudit(t, "refresh_not_issued", "corp", map[string]string{"client_id": "app"})
				return
			}
			rr := h.refresh(tr.RefreshToken, "app")
			if rr.status != http.StatusOK {
				t.Fatalf("refresh within the upstream session = %d %s %s", rr.status, rr.Error, rr.Description)
			}
			clk.Advance(2 * time.Hour) // the upstream ID token lived 1h
			wantOAuthError(t, h.refresh(rr.RefreshToken, "app"), http.StatusBadRequest, oauth.ErrInvalidGrant)
		})
	}
}
