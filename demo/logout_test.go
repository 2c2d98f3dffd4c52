package demo

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
)

// logoutWait bounds how long a sign-out may take to reach the next place
// (the issue asks for "a few seconds"; the limit is generous for a loaded
// machine, and the waits end as soon as the condition holds).
const logoutWait = 15 * time.Second

// waitUntil polls cond until it holds or timeout passes, then fails the
// test with cond's last description of what it saw.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s; last seen: %s", what, timeout, saw)
		}
		<-tick.C
	}
}

// appSessionActive asks the app's GET /session for the browser b.
func appSessionActive(t *testing.T, b *testBrowser, d *Demo) bool {
	t.Helper()
	resp, err := b.c.Get(d.AppURL + "/session")
	if err != nil {
		t.Fatalf("GET /session: %v", err)
	}
	defer resp.Body.Close()
	var st struct {
		Active *bool `json:"active"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Active == nil {
		t.Fatalf("GET /session: %s: not {\"active\": bool}: %v", resp.Status, err)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("GET /session: Cache-Control %q, want no-store", cc)
	}
	return *st.Active
}

// heldSession returns the subject, sid and refresh token of the app's
// session of browser b.
func heldSession(t *testing.T, b *testBrowser, d *Demo) (subject, sid, refresh string) {
	t.Helper()
	u, _ := url.Parse(d.AppURL)
	var id string
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == d.app.cookie {
			id = c.Value
		}
	}
	d.app.mu.Lock()
	defer d.app.mu.Unlock()
	s := d.app.sessions[id]
	if s == nil {
		t.Fatalf("the app has no session for the browser (cookie %q)", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subject, s.sid, s.token.RefreshToken
}

// adminSession is one session of GET /admin/subjects/{sub}/sessions.
type adminSession struct {
	SID         string   `json:"sid"`
	Connector   string   `json:"connector"`
	UpstreamSID string   `json:"upstream_sid"`
	Clients     []string `json:"clients"`
}

// admin calls the demo broker's admin API and decodes its JSON answer.
func admin(t *testing.T, d *Demo, method, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, d.AdminURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: %s %s: %v", method, path, resp.Status, body, err)
		}
	}
	return resp.StatusCode
}

// brokerSessions lists subject's sessions at the demo broker.
func brokerSessions(t *testing.T, d *Demo, subject string) []adminSession {
	t.Helper()
	var list struct {
		Sessions []adminSession `json:"sessions"`
	}
	if st := admin(t, d, http.MethodGet, "/admin/subjects/"+url.PathEscape(subject)+"/sessions", &list); st != http.StatusOK {
		t.Fatalf("GET sessions of %s: status %d", subject, st)
	}
	return list.Sessions
}

// counter reads a counter of g with the given labels (0 when absent).
func counter(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// backchannelDelivered is how many back-channel logout tokens g's broker
// delivered to clientID.
func backchannelDelivered(t *testing.T, g prometheus.Gatherer, clientID string) float64 {
	t.Helper()
	return counter(t, g, "fedbroker_backchannel_logout_total", map[string]string{"client_id": clientID, "outcome": "delivered"})
}

// assertRefreshRevoked: the app's refresh token, sent with the app's own
// DPoP proof as the app would, is refused: the broker revoked its family.
func assertRefreshRevoked(t *testing.T, d *Demo, refresh string) {
	t.Helper()
	if refresh == "" {
		t.Fatal("the app held no refresh token")
	}
	ctx := oidc.ClientContext(context.Background(), d.app.tokenClient)
	_, err := d.app.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}).Token()
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("refreshing the app's refresh token after the sign-out: %v, want invalid_grant", err)
	}
}

// assertEndedAtApp: the app's home page now says the session was ended
// elsewhere (once) and offers to sign in.
func assertEndedAtApp(t *testing.T, b *testBrowser, d *Demo) {
	t.Helper()
	page, _ := b.do(http.MethodGet, d.AppURL+"/", nil)
	if subjectRE.MatchString(page) || !strings.Contains(page, `id="signin"`) || !strings.Contains(page, `id="ended-elsewhere"`) {
		t.Errorf("the app's home page after the back-channel logout is not signed out with the notice: %s", page)
	}
	page, _ = b.do(http.MethodGet, d.AppURL+"/", nil)
	if subjectRE.MatchString(page) || strings.Contains(page, `id="ended-elsewhere"`) {
		t.Errorf("the app's home page, reloaded once more, is signed in or repeats the notice: %s", page)
	}
}

// TestDemoAdminSignOut: Alice is signed in to the demo app in two
// browsers. The admin API's DELETE /admin/subjects/{sub}/sessions/{sid}
// ends the first browser's broker session only, and DELETE
// /admin/subjects/{sub}/sessions ("sign out everywhere") the other. Each
// time the hop admin → broker is checked (the session listing, the app's
// refresh token refused) and the hop broker → app (the app's GET /session
// turns inactive for that browser only, and the broker counts the
// back-channel delivery), within a few seconds.
func TestDemoAdminSignOut(t *testing.T) {
	d := startDemo(t)
	b1, b2 := newTestBrowser(t), newTestBrowser(t)
	signInContoso(t, b1, d)
	signInContoso(t, b2, d)
	subject, sid1, refresh1 := heldSession(t, b1, d)
	subject2, sid2, refresh2 := heldSession(t, b2, d)
	if sid1 == "" || sid2 == "" || sid1 == sid2 || subject2 != subject {
		t.Fatalf("the app's sessions: %s/%q and %s/%q, want one subject with two sids", subject, sid1, subject2, sid2)
	}
	sessions := brokerSessions(t, d, subject)
	var sids []string
	for _, se := range sessions {
		sids = append(sids, se.SID)
		if se.Connector != "contoso" || !slices.Contains(se.Clients, "demo-app") {
			t.Errorf("broker session %+v: want connector contoso, signed into demo-app", se)
		}
	}
	if slices.Sort(sids); !slices.Equal(sids, sortedPair(sid1, sid2)) {
		t.Fatalf("the broker's sessions of %s are %v, want %s and %s", subject, sids, sid1, sid2)
	}
	if !appSessionActive(t, b1, d) || !appSessionActive(t, b2, d) {
		t.Fatal("the app's sessions are not active after signing in")
	}
	g := d.Broker.Server.Gatherer()
	before := backchannelDelivered(t, g, "demo-app")

	// One session.
	start := time.Now()
	var ended struct {
		Ended  []string `json:"sessions_ended"`
		Queued int      `json:"backchannel_logouts_queued"`
	}
	if st := admin(t, d, http.MethodDelete, "/admin/subjects/"+url.PathEscape(subject)+"/sessions/"+url.PathEscape(sid1), &ended); st != http.StatusOK {
		t.Fatalf("DELETE session %s: status %d", sid1, st)
	}
	if !slices.Equal(ended.Ended, []string{sid1}) || ended.Queued != 1 {
		t.Fatalf("DELETE session %s answered %+v, want it ended and one back-channel logout queued", sid1, ended)
	}
	// Admin → broker.
	if left := brokerSessions(t, d, subject); len(left) != 1 || left[0].SID != sid2 {
		t.Errorf("after ending %s the broker lists %+v, want only %s", sid1, left, sid2)
	}
	assertRefreshRevoked(t, d, refresh1)
	// Broker → app.
	waitUntil(t, "the app's session of the first browser ends", logoutWait, func() (bool, string) {
		return !appSessionActive(t, b1, d), "GET /session says active"
	})
	t.Logf("the app's session ended within %s of the admin API's DELETE", time.Since(start).Round(time.Millisecond))
	waitUntil(t, "the broker counts the delivery", logoutWait, func() (bool, string) {
		return backchannelDelivered(t, g, "demo-app") == before+1, "fedbroker_backchannel_logout_total{client_id=demo-app,outcome=delivered} unchanged"
	})
	if !appSessionActive(t, b2, d) {
		t.Error("ending the first browser's session ended the second browser's session at the app")
	}
	assertEndedAtApp(t, b1, d)

	// Everywhere.
	if st := admin(t, d, http.MethodDelete, "/admin/subjects/"+url.PathEscape(subject)+"/sessions", &ended); st != http.StatusOK {
		t.Fatalf("DELETE sessions: status %d", st)
	}
	if !slices.Equal(ended.Ended, []string{sid2}) || ended.Queued != 1 {
		t.Fatalf("DELETE sessions answered %+v, want %s ended and one back-channel logout queued", ended, sid2)
	}
	if left := brokerSessions(t, d, subject); len(left) != 0 {
		t.Errorf("the broker still lists sessions of %s: %+v", subject, left)
	}
	assertRefreshRevoked(t, d, refresh2)
	waitUntil(t, "the app's session of the second browser ends", logoutWait, func() (bool, string) {
		return !appSessionActive(t, b2, d), "GET /session says active"
	})
	assertEndedAtApp(t, b2, d)
	if st := admin(t, d, http.MethodDelete, "/admin/subjects/"+url.PathEscape(subject)+"/sessions/"+url.PathEscape(sid2), nil); st != http.StatusNotFound {
		t.Errorf("DELETE an ended session: status %d, want 404", st)
	}
}

func sortedPair(a, b string) []string {
	if b < a {
		a, b = b, a
	}
	return []string{a, b}
}

// TestDemoContosoSignOut: Alice is signed in to the demo app through
// Contoso in two browsers, and signs out at Contoso itself (its /logout,
// confirmed) in the first. Contoso tells the broker by back-channel logout
// (hop Contoso → broker: the first browser's broker session ends, the
// second's stays), the broker tells the demo app (hop broker → app: the
// first browser's app session ends, the second's stays), and signing in
// again in the first browser asks at the broker's chooser and for
// Contoso's password.
func TestDemoContosoSignOut(t *testing.T) {
	d := startDemo(t)
	b, other := newTestBrowser(t), newTestBrowser(t)
	signInContoso(t, b, d)
	signInContoso(t, other, d)
	subject, sid, refresh := heldSession(t, b, d)
	_, otherSID, _ := heldSession(t, other, d)
	sessions := brokerSessions(t, d, subject)
	if len(sessions) != 2 {
		t.Fatalf("the broker's sessions of %s = %+v, want two", subject, sessions)
	}
	for _, se := range sessions {
		if se.UpstreamSID == "" {
			t.Fatalf("the broker's session %+v has no Contoso sid", se)
		}
	}
	contosoDelivered := backchannelDelivered(t, d.Contoso.Server.Gatherer(), "fedbroker")
	appDelivered := backchannelDelivered(t, d.Broker.Server.Gatherer(), "demo-app")

	start := time.Now()
	page, at := b.do(http.MethodGet, d.ContosoURL+"/logout", nil)
	if !strings.Contains(page, "Sign out?") {
		t.Fatalf("Contoso's /logout at %s did not ask to confirm: %s", at, page)
	}
	page, _ = b.submit(page, at, nil)
	if !strings.Contains(page, "<h1>Signed out</h1>") {
		t.Fatalf("after confirming at Contoso: %s", page)
	}
	// Contoso → broker. The broker ends its sessions while it answers
	// Contoso's delivery, so once Contoso counts it delivered they have
	// ended.
	waitUntil(t, "Contoso delivers its back-channel logout to the broker", logoutWait, func() (bool, string) {
		n := backchannelDelivered(t, d.Contoso.Server.Gatherer(), "fedbroker")
		return n == contosoDelivered+1, "Contoso's fedbroker_backchannel_logout_total{client_id=fedbroker,outcome=delivered} unchanged"
	})
	if left := brokerSessions(t, d, subject); len(left) != 1 || left[0].SID != otherSID {
		t.Fatalf("after the sign-out at Contoso in the browser of session %s the broker lists %+v, want only the other browser's %s", sid, left, otherSID)
	}
	assertRefreshRevoked(t, d, refresh)
	// Broker → app.
	waitUntil(t, "the app's session ends", logoutWait, func() (bool, string) {
		return !appSessionActive(t, b, d), "GET /session says active"
	})
	t.Logf("the app's session ended within %s of the sign-out at Contoso", time.Since(start).Round(time.Millisecond))
	waitUntil(t, "the broker counts the delivery", logoutWait, func() (bool, string) {
		return backchannelDelivered(t, d.Broker.Server.Gatherer(), "demo-app") == appDelivered+1, "fedbroker_backchannel_logout_total{client_id=demo-app,outcome=delivered} unchanged"
	})
	if !appSessionActive(t, other, d) {
		t.Error("the sign-out at Contoso in one browser ended the other browser's session at the app")
	}
	assertEndedAtApp(t, b, d)

	// Nothing is left for the first browser: the broker shows its chooser,
	// Contoso its password form.
	page, at = b.do(http.MethodGet, d.AppURL+"/login", nil)
	if !strings.HasPrefix(at.String(), d.BrokerURL+"/login?req=") || !strings.Contains(page, `class="connectors"`) {
		t.Fatalf("signing in again ended at %s, want the broker's chooser: %s", at, page)
	}
	page, at = b.do(http.MethodGet, d.AppURL+"/login?connector_id=contoso", nil)
	if !strings.HasPrefix(at.String(), d.ContosoURL+"/") || !strings.Contains(page, `name="password"`) {
		t.Fatalf("signing in again at Contoso ended at %s, want Contoso's password form: %s", at, page)
	}
}

// TestDemoAppSignOutEndsContoso: "Sign out" at the app ends the app's
// session, the broker's and, through the broker's upstream logout,
// Contoso's: the browser passes Contoso's end_session_endpoint with the
// ID token Contoso issued as id_token_hint and comes back through the
// broker's /logout/contoso to the app, and signing in again asks for
// Contoso's password.
func TestDemoAppSignOutEndsContoso(t *testing.T) {
	d := startDemo(t)
	b := newTestBrowser(t)
	page := signInContoso(t, b, d)
	page, at, via := signOut(t, b, d, page)
	if !strings.HasPrefix(at.String(), d.AppURL+"/?state=") || !strings.Contains(page, `id="signed-out"`) {
		t.Fatalf("after Sign out at %s, want the app's home page saying so: %s", at, page)
	}
	var path []string
	for _, u := range via {
		path = append(path, u.Scheme+"://"+u.Host+u.Path)
	}
	want := []string{d.BrokerURL + "/logout", d.ContosoURL + "/logout", d.BrokerURL + "/logout/contoso", d.AppURL + "/"}
	if !slices.Equal(path, want) {
		t.Errorf("the sign-out went through %q, want %q", path, want)
	}
	for _, u := range via {
		if u.Host == strings.TrimPrefix(d.ContosoURL, "http://") {
			q := u.Query()
			if q.Get("id_token_hint") == "" || q.Get("post_logout_redirect_uri") != d.BrokerURL+"/logout/contoso" || q.Get("state") == "" {
				t.Errorf("the broker's request to Contoso's end_session_endpoint %s lacks id_token_hint, state or the post_logout_redirect_uri", u)
			}
		}
	}
	page, at = b.do(http.MethodGet, d.AppURL+"/login?connector_id=contoso", nil)
	if !strings.HasPrefix(at.String(), d.ContosoURL+"/") || !strings.Contains(page, `name="password"`) {
		t.Fatalf("signing in again at Contoso ended at %s, want Contoso's password form: %s", at, page)
	}
}

// TestAppBackchannelLogout: the app's back-channel logout endpoint answers
// 400 to a request without a valid logout token (here: none, a forged
// one, and an ID token, which is not a logout token), with Cache-Control:
// no-store, and ends no session.
func TestAppBackchannelLogout(t *testing.T) {
	d := startDemo(t)
	b := newTestBrowser(t)
	signInContoso(t, b, d)
	idToken := heldIDToken(t, d.app)
	for name, form := range map[string]url.Values{
		"no token": {},
		"forged":   {"logout_token": {"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}},
		"ID token": {"logout_token": {idToken}},
	} {
		resp, err := http.PostForm(d.AppURL+"/backchannel-logout", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %s, Cache-Control %q; want 400 and no-store", name, resp.Status, resp.Header.Get("Cache-Control"))
		}
	}
	if !appSessionActive(t, b, d) {
		t.Error("a refused back-channel logout ended the app's session")
	}
}

// TestDemoWelcomeAdminLines: the banner's admin API lines work as printed:
// the token is the admin listener's, and the DELETE line (with the
// subject the app shows in place of SUB) signs Alice out.
func TestDemoWelcomeAdminLines(t *testing.T) {
	d := startDemo(t)
	var out strings.Builder
	d.PrintWelcome(&out)
	line := `curl -X DELETE -H "Authorization: Bearer ` + d.AdminToken + `" ` + d.AdminURL + "/admin/subjects/SUB/sessions"
	if len(d.AdminToken) < 16 || !strings.Contains(out.String(), line) {
		t.Fatalf("the banner lacks %q:\n%s", line, out.String())
	}
	b := newTestBrowser(t)
	signInContoso(t, b, d)
	subject, _, _ := heldSession(t, b, d)
	u := strings.Replace(d.AdminURL+"/admin/subjects/SUB/sessions", "SUB", url.PathEscape(subject), 1)
	req, err := http.NewRequest(http.MethodDelete, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the banner's DELETE line: %s", resp.Status)
	}
	waitUntil(t, "the app's session ends", logoutWait, func() (bool, string) {
		return !appSessionActive(t, b, d), "GET /session says active"
	})
	// Without the token the admin API refuses.
	resp, err = http.Get(d.AdminURL + "/admin/subjects/x/sessions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the admin API without the token: %s, want 401", resp.Status)
	}
}

// TestDemoFabrikamSignOut: "Sign out" after a sign-in through Fabrikam
// (SAML) ends the app's and the broker's sessions and comes back to the
// app's home page; signing in again shows the broker's chooser and
// Fabrikam's login form.
func TestDemoFabrikamSignOut(t *testing.T) {
	d := startDemo(t)
	b := newTestBrowser(t)
	page, at := b.do(http.MethodGet, d.AppURL+"/login?connector_id=fabrikam", nil)
	if !strings.HasPrefix(at.String(), d.FabrikamURL) {
		t.Fatalf("sign-in did not reach Fabrikam: at %s", at)
	}
	page, at = b.submit(page, at, url.Values{"user": {"alice"}, "password": {"fabrikam-alice-pw"}})
	if strings.Contains(page, "SAMLResponse") {
		page, at = b.submit(page, at, nil)
	}
	if at.String() != d.AppURL+"/" || !subjectRE.MatchString(page) {
		t.Fatalf("after Fabrikam login at %s: %s", at, page)
	}
	subject, _, _ := heldSession(t, b, d)
	if s := brokerSessions(t, d, subject); len(s) != 1 || s[0].Connector != "fabrikam" {
		t.Fatalf("the broker's sessions of %s = %+v, want one through fabrikam", subject, s)
	}
	page, at, _ = signOut(t, b, d, page)
	if !strings.HasPrefix(at.String(), d.AppURL+"/?state=") || !strings.Contains(page, `id="signed-out"`) {
		t.Fatalf("after Sign out at %s, want the app's home page saying so: %s", at, page)
	}
	if s := brokerSessions(t, d, subject); len(s) != 0 {
		t.Errorf("the broker still lists sessions of %s: %+v", subject, s)
	}
	assertSignedOutEverywhere(t, b, d)
	page, at = b.do(http.MethodGet, d.AppURL+"/login?connector_id=fabrikam", nil)
	if !strings.HasPrefix(at.String(), d.FabrikamURL+"/") || !strings.Contains(page, `name="password"`) {
		t.Fatalf("signing in again at Fabrikam ended at %s, want Fabrikam's login form: %s", at, page)
	}
}
