package broker

import (
	"net/http"
	"strings"
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

// TestAdminConnectorsShowsOfflineWarnings: the operator sees in
// GET /admin/connectors that the upstream issued no refresh token.
func TestAdminConnectorsShowsOfflineWarnings(t *testing.T) {
	clk := newClock()
	idp := testidp.New(testidp.Options{Now: clk.Now})
	t.Cleanup(idp.Close)
	idp.SetUser(corpUser)
	idp.SetStrictOfflineAccess(true)
	up := corpConnector(idp)
	up.config += "prompt: login\n"
	h := newHarness(t, nil, clk, withUpstreams(t, []upstream{up}, nil))
	a := newAdminAPI(t, h, nil)
	quiet := decodeJSON[struct {
		Connectors []struct {
			ID       string   `json:"id"`
			Warnings []string `json:"warnings"`
		} `json:"connectors"`
	}](t, a.do(http.MethodGet, "/admin/connectors", "").body)
	for _, c := range quiet.Connectors {
		if len(c.Warnings) != 0 {
			t.Errorf("connector %s has warnings before any sign-in: %v", c.ID, c.Warnings)
		}
	}
	h.upstreamSignIn(h.newBrowser(), "corp")
	got := decodeJSON[struct {
		Connectors []struct {
			ID       string   `json:"id"`
			Warnings []string `json:"warnings"`
		} `json:"connectors"`
	}](t, a.do(http.MethodGet, "/admin/connectors", "").body)
	found := false
	for _, c := range got.Connectors {
		if c.ID == "corp" {
			found = len(c.Warnings) == 1 && strings.Contains(c.Warnings[0], "no refresh token")
			if !found {
				t.Errorf("corp warnings = %q, want one saying the upstream issued no refresh token", c.Warnings)
			}
		}
	}
	if !found {
		t.Errorf("no corp connector in %+v", got)
	}
}
