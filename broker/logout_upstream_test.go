package broker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// logoutCorp is a harness with the oidc connector "corp" at an IdP that
// advertises end_session_endpoint and puts sid "up-sid-1" in its ID
// tokens, and app's back-channel logout URI at the returned logoutApp.
func logoutCorp(t *testing.T, mutate func(*config.Config)) (*harness, *testidp.IdP, *logoutApp) {
	t.Helper()
	idp := newCorpIdP(t)
	u := corpUser
	u.Claims = map[string]any{"email": "dana@acme.com", "email_verified": true, "name": "Dana Corp", "sid": "up-sid-1"}
	idp.SetUser(u)
	idp.SetEndSession(true)
	app := newLogoutApp(t)
	h := newHarness(t, nil, nil, withLogoutURIs(map[string]string{"app": app.URL()}, nil, func(cfg *config.Config) {
		withUpstreams(t, []upstream{corpConnector(idp)}, nil)(cfg)
		if mutate != nil {
			mutate(cfg)
		}
	}))
	return h, idp, app
}

// postLogoutToken posts an upstream's logout token to the broker's
// back-channel logout endpoint of connector.
func (h *harness) postLogoutToken(connector, token string) (int, map[string]string, http.Header) {
	h.t.Helper()
	resp, err := http.PostForm(h.issuer+"/logout/"+connector, url.Values{"logout_token": {token}})
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body, resp.Header
}

// TestUpstreamBackchannelLogout: the upstream OpenID provider signs Dana
// out and tells the broker with a logout token naming its sid. The
// broker's session from that upstream session ends, the application is
// sent a logout token for the broker's session, and Dana's refresh token
// no longer works. The same logout token again, an ID token in its place,
// one for another audience or signed by another key are refused.
func TestUpstreamBackchannelLogout(t *testing.T) {
	h, idp, app := logoutCorp(t, nil)
	br := h.newBrowser()
	tr, _ := h.upstreamSignIn(br, "corp")
	sub, sid := h.idClaims(t, "app", tr.IDToken)

	// Refusals first: none of them may end the session.
	other, err := idp.SignLogoutToken(map[string]any{"sid": "up-sid-1", "aud": "another-client"}, "logout+jwt")
	if err != nil {
		t.Fatal(err)
	}
	withNonce, _ := idp.SignLogoutToken(map[string]any{"sid": "up-sid-1", "nonce": "n"}, "logout+jwt")
	noEvents, _ := idp.SignLogoutToken(map[string]any{"sid": "up-sid-1", "events": nil}, "")
	for name, tok := range map[string]string{
		"other audience":      other,
		"nonce":               withNonce,
		"no events":           noEvents,
		"the broker's own ID": tr.IDToken,
		"garbage":             "a.b.c",
	} {
		status, body, hdr := h.postLogoutToken("corp", tok)
		if status != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Errorf("%s: %d %v, want 400 invalid_request", name, status, body)
		}
		if hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", name, hdr.Get("Cache-Control"))
		}
	}
	if status, _, _ := h.postLogoutToken("no-such-connector", other); status != http.StatusNotFound {
		t.Errorf("unknown connector: %d, want 404", status)
	}
	if status, _, _ := h.postLogoutToken("local", other); status != http.StatusNotFound {
		t.Errorf("connector without logout: %d, want 404", status)
	}
	if r := h.refresh(tr.RefreshToken, "app"); r.status != http.StatusOK {
		t.Fatalf("a refused logout token ended the session: refresh = %d %s", r.status, r.Error)
	} else {
		tr = r
	}

	tok, err := idp.SignLogoutToken(map[string]any{"sid": "up-sid-1"}, "logout+jwt")
	if err != nil {
		t.Fatal(err)
	}
	if status, body, _ := h.postLogoutToken("corp", tok); status != http.StatusOK {
		t.Fatalf("logout token: %d %v, want 200", status, body)
	}
	h.checkLogoutToken(t, app.wait(t, 5*time.Second), "app", sub, sid)
	if r := h.refresh(tr.RefreshToken, "app"); r.status != http.StatusBadRequest || r.Error != "invalid_grant" {
		t.Errorf("refresh after the upstream's logout = %d %s, want 400 invalid_grant", r.status, r.Error)
	}
	if u := h.userinfo(tr.AccessToken); u.status != http.StatusUnauthorized {
		t.Errorf("userinfo after the upstream's logout = %d, want 401", u.status)
	}
	if status, body, _ := h.postLogoutToken("corp", tok); status != http.StatusBadRequest || !strings.Contains(body["error_description"], "already") {
		t.Errorf("replayed logout token: %d %v, want 400 naming the replay", status, body)
	}
	h.wantAudit(t, "upstream_logout", "corp", map[string]string{"upstream_sid": "up-sid-1"})

	// A logout naming only the upstream subject ends every session of it.
	br2 := h.newBrowser()
	tr2, _ := h.upstreamSignIn(br2, "corp")
	_, sid2 := h.idClaims(t, "app", tr2.IDToken)
	bySub, _ := idp.SignLogoutToken(map[string]any{"sub": corpUser.Subject}, "logout+jwt")
	if status, body, _ := h.postLogoutToken("corp", bySub); status != http.StatusOK {
		t.Fatalf("logout token by sub: %d %v", status, body)
	}
	h.checkLogoutToken(t, app.wait(t, 5*time.Second), "app", sub, sid2)
}

// TestUpstreamRPInitiatedLogout: signing out at the application ends the
// upstream session too: the broker sends the browser to the upstream's
// end_session_endpoint with the upstream ID token as id_token_hint, the
// upstream sends it back to the broker's logout endpoint of the
// connector, and the broker goes on to the application's
// post_logout_redirect_uri with its state. With upstream_logout: false
// the upstream is left alone.
func TestUpstreamRPInitiatedLogout(t *testing.T) {
	h, idp, _ := logoutCorp(t, nil)
	br := h.newBrowser()
	tr, _ := h.upstreamSignIn(br, "corp")

	// The upstream ID token for id_token_hint is kept with the session
	// only: the refresh family's connector data holds the upstream refresh
	// token and nothing the size of an ID token.
	ctx := context.Background()
	fam, err := h.store.GetRefresh(ctx, tr.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := h.idClaims(t, "app", tr.IDToken)
	sessions, err := h.store.ListSessions(ctx, sub)
	if err != nil || len(sessions) != 1 {
		t.Fatalf("ListSessions = %v, %v", sessions, err)
	}
	if n, m := len(fam.Grant.ConnectorData), len(sessions[0].LogoutData); n > 200 || m < 300 {
		t.Errorf("family connector data %d bytes, session logout data %d bytes; want the ID token (hundreds of bytes) in the session alone", n, m)
	}

	lo := br.get(h.issuer + "/logout?" + url.Values{"id_token_hint": {tr.IDToken}, "post_logout_redirect_uri": {appLogout}, "state": {"z1"}}.Encode())
	if lo.status != http.StatusFound || lo.location == nil || !strings.HasPrefix(lo.location.String(), idp.URL()+"/end_session?") {
		t.Fatalf("logout = %d %v, want a redirect to the upstream's end_session_endpoint", lo.status, lo.location)
	}
	q := lo.location.Query()
	if q.Get("post_logout_redirect_uri") != h.issuer+"/logout/corp" || q.Get("state") == "" || q.Get("id_token_hint") == "" || q.Get("client_id") != idp.ClientID() {
		t.Errorf("end_session request %v", q)
	}
	if q.Get("id_token_hint") == tr.IDToken {
		t.Error("the broker sent its own ID token upstream instead of the upstream's")
	}
	back := br.get(lo.location.String())
	if back.status != http.StatusFound || back.location == nil {
		t.Fatalf("upstream end_session = %d", back.status)
	}
	// A state the broker did not make shows the signed-out page only.
	forged := h.newBrowser().get(h.issuer + "/logout/corp?state=forged")
	if forged.status != http.StatusOK || !strings.Contains(forged.body, `id="signed-out"`) || strings.Contains(forged.body, appLogout) {
		t.Errorf("forged state: %d, want the plain signed-out page", forged.status)
	}
	done := br.get(back.location.String())
	if done.status != http.StatusFound || done.location == nil || done.location.String() != appLogout+"?state=z1" {
		t.Fatalf("back at the broker = %d %v, want %s?state=z1", done.status, done.location, appLogout)
	}
	// Once only: the same state again goes nowhere.
	again := br.get(back.location.String())
	if again.status != http.StatusOK || strings.Contains(again.body, appLogout) {
		t.Errorf("the upstream's return used twice: %d %v", again.status, again.location)
	}

	off := func(cfg *config.Config) {
		for i := range cfg.Connectors {
			if cfg.Connectors[i].ID == "corp" {
				f := false
				cfg.Connectors[i].UpstreamLogout = &f
			}
		}
	}
	h2, _, _ := logoutCorp(t, off)
	br2 := h2.newBrowser()
	tr2, _ := h2.upstreamSignIn(br2, "corp")
	lo2 := br2.get(h2.issuer + "/logout?" + url.Values{"id_token_hint": {tr2.IDToken}, "post_logout_redirect_uri": {appLogout}, "state": {"z2"}}.Encode())
	if lo2.status != http.StatusFound || lo2.location == nil || lo2.location.String() != appLogout+"?state=z2" {
		t.Errorf("logout with upstream_logout off = %d %v, want straight to %s", lo2.status, lo2.location, appLogout)
	}
}
