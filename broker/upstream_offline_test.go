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

// TestUpstreamAuthorizationResponseIss: an upstream that advertises RFC
// 9207 must name itself in iss on the way back. A callback without it, or
// naming another issuer (a mix-up attack), is refused with a readable page
// before the code is redeemed; the right iss signs in.
func TestUpstreamAuthorizationResponseIss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		iss   testidp.IssParameter
		error string
	}{
		{"advertised and missing", testidp.IssParameter{Advertise: true}, "issuer_mismatch"},
		{"another issuer", testidp.IssParameter{Advertise: true, Send: true, Value: "https://attacker.example"}, "issuer_mismatch"},
		{"another issuer, not advertised", testidp.IssParameter{Send: true, Value: "https://attacker.example"}, "issuer_mismatch"},
		{"advertised and right", testidp.IssParameter{Advertise: true, Send: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := newCorpIdP(t)
			idp.SetIssParameter(tc.iss)
			h := newHarness(t, nil, nil, withUpstreams(t, []upstream{corpConnector(idp)}, nil))
			br := h.newBrowser()
			params := authParams(newPKCE())
			cb := h.atUpstream(br, h.startUpstream(br, params, "corp"))
			if tc.error == "" {
				h.codeFrom(br.get(cb.String()), params.Get("state"))
				return
			}
			page := br.get(cb.String())
			wantErrorPage(t, page, http.StatusBadRequest, tc.error)
			if strings.Contains(page.body, "attacker.example") {
				t.Errorf("the error page echoes the forged issuer")
			}
		})
	}
}

// TestUpstreamAuthorizationParameters: through the broker, the connector
// asks for consent with offline_access (OpenID Connect Core §11) and sends
// the operator's extra parameters.
func TestUpstreamAuthorizationParameters(t *testing.T) {
	idp := newCorpIdP(t)
	idp.SetStrictOfflineAccess(true)
	up := corpConnector(idp)
	up.config += "domain_hint: acme.com\nacr_values: [urn:acme:mfa]\nauth_params: {resource: https://graph.acme.com}\n"
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{up}, nil))
	tr, _ := h.upstreamSignIn(h.newBrowser(), "corp")
	q := idp.LastAuthorize()
	for k, want := range map[string]string{"prompt": "consent", "domain_hint": "acme.com", "acr_values": "urn:acme:mfa", "resource": "https://graph.acme.com"} {
		if got := q.Get(k); got != want {
			t.Errorf("authorization request %s = %q, want %q", k, got, want)
		}
	}
	if tr.RefreshToken == "" {
		t.Errorf("no refresh token although the strict upstream got prompt=consent")
	}
}
