package broker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker/config"
)

// backchannelEvent is the member of a logout token's events claim.
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutApp is an application's back-channel logout endpoint: it records
// every logout token posted to it and answers with the statuses queued in
// answers (200 once they run out).
type logoutApp struct {
	srv *httptest.Server

	mu      sync.Mutex
	tokens  []string
	answers []int
	got     chan string
}

func newLogoutApp(t *testing.T) *logoutApp {
	t.Helper()
	a := &logoutApp{got: make(chan string, 16)}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "want a form post", http.StatusBadRequest)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tok := r.PostForm.Get("logout_token")
		a.mu.Lock()
		a.tokens = append(a.tokens, tok)
		status := http.StatusOK
		if len(a.answers) > 0 {
			status, a.answers = a.answers[0], a.answers[1:]
		}
		a.mu.Unlock()
		w.WriteHeader(status)
		if status == http.StatusOK {
			a.got <- tok
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *logoutApp) URL() string { return a.srv.URL + "/backchannel" }

// posts returns how many tokens the app was sent.
func (a *logoutApp) posts() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.tokens)
}

// wait returns the next logout token the app accepted, within d.
func (a *logoutApp) wait(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case tok := <-a.got:
		return tok
	case <-time.After(d):
		t.Fatalf("no back-channel logout token within %s (posts so far: %d)", d, a.posts())
		return ""
	}
}

// none fails if the app accepts a token within d.
func (a *logoutApp) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-a.got:
		t.Fatal("a back-channel logout token arrived that should not have")
	case <-time.After(d):
	}
}

// logoutClaims are the claims of a logout token the tests look at.
type logoutClaims struct {
	Issuer   string                     `json:"iss"`
	Subject  string                     `json:"sub"`
	Audience any                        `json:"aud"`
	SID      string                     `json:"sid"`
	JTI      string                     `json:"jti"`
	IssuedAt int64                      `json:"iat"`
	Expiry   int64                      `json:"exp"`
	Events   map[string]json.RawMessage `json:"events"`
	Nonce    *string                    `json:"nonce"`
}

// checkLogoutToken verifies tok as clientID's logout token from the
// broker (signature against the JWKS, iss, aud, exp through go-oidc) and
// checks what Back-Channel Logout 1.0 §2.4 requires of it.
func (h *harness) checkLogoutToken(t *testing.T, tok, clientID, sub, sid string) logoutClaims {
	t.Helper()
	if _, err := h.verifier(clientID).Verify(context.Background(), tok); err != nil {
		t.Fatalf("logout token does not verify for %s: %v", clientID, err)
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA, jose.PS256, jose.ES384})
	if err != nil {
		t.Fatal(err)
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders["typ"].(string); typ != "logout+jwt" {
		t.Errorf("typ = %q, want logout+jwt", typ)
	}
	var c logoutClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		t.Fatal(err)
	}
	if c.Issuer != h.issuer || c.Subject != sub || c.SID != sid || c.JTI == "" || c.IssuedAt == 0 || c.Expiry <= c.IssuedAt {
		t.Errorf("logout token claims %+v; want iss %s, sub %s, sid %s, a jti, iat < exp", c, h.issuer, sub, sid)
	}
	if ev, ok := c.Events[backchannelEvent]; !ok || !strings.HasPrefix(strings.TrimSpace(string(ev)), "{") {
		t.Errorf("events = %v, want %s with an object", c.Events, backchannelEvent)
	}
	if c.Nonce != nil {
		t.Error("a logout token carries a nonce")
	}
	return c
}

// idClaims returns the sub and sid of a verified ID token.
func (h *harness) idClaims(t *testing.T, clientID, idToken string) (sub, sid string) {
	t.Helper()
	tok, err := h.verifier(clientID).Verify(context.Background(), idToken)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		SID string `json:"sid"`
	}
	if err := tok.Claims(&c); err != nil || c.SID == "" {
		t.Fatalf("ID token has no sid (%v)", err)
	}
	return tok.Subject, c.SID
}

// withLogoutURIs registers back- and front-channel logout URIs for the
// harness's clients "app" and "other".
func withLogoutURIs(back map[string]string, front map[string]string, also func(*config.Config)) func(*config.Config) {
	return func(cfg *config.Config) {
		for i := range cfg.Clients {
			cl := &cfg.Clients[i]
			if u, ok := back[cl.ID]; ok {
				cl.BackchannelLogoutURI, cl.BackchannelLogoutSessionRequired = u, true
			}
			if u, ok := front[cl.ID]; ok {
				cl.FrontchannelLogoutURI, cl.FrontchannelLogoutSessionRequired = u, true
			}
		}
		if also != nil {
			also(cfg)
		}
	}
}

// signInBoth signs alice into "app" (password) and then "other" (single
// sign-on in the same browser) and returns app's tokens.
func (h *harness) signInBoth(t *testing.T, br *browser) tokenResponse {
	t.Helper()
	p := newPKCE()
	code, _ := h.login(br, authParams(p), "alice", alicePassword)
	tr := h.redeem(code, p)
	if tr.status != http.StatusOK || tr.RefreshToken == "" {
		t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	op := newPKCE()
	params := authParams(op)
	params.Set("client_id", "other")
	params.Set("redirect_uri", "http://127.0.0.1:8888/cb")
	r := h.authorize(br, params)
	if r.status != http.StatusFound || r.location == nil || r.location.Query().Get("code") == "" {
		t.Fatalf("SSO into other = %d %v, want a code", r.status, r.location)
	}
	return tr
}

// TestBackchannelLogoutOnRPLogout: alice signs into two applications with
// one broker session; the first signs her out (RP-initiated, with
// id_token_hint). Both applications receive a valid logout token for that
// session; her refresh token and access token stop working; discovery
// advertises the support.
func TestBackchannelLogoutOnRPLogout(t *testing.T) {
	app, other := newLogoutApp(t), newLogoutApp(t)
	h := newHarness(t, nil, nil, withLogoutURIs(map[string]string{"app": app.URL(), "other": other.URL()}, nil, nil))
	br := h.newBrowser()
	tr := h.signInBoth(t, br)
	sub, sid := h.idClaims(t, "app", tr.IDToken)

	disc := h.discoveryDoc()
	for _, k := range []string{"backchannel_logout_supported", "backchannel_logout_session_supported", "frontchannel_logout_supported", "frontchannel_logout_session_supported"} {
		if disc[k] != true {
			t.Errorf("discovery %s = %v, want true", k, disc[k])
		}
	}

	lo := br.get(h.issuer + "/logout?" + url.Values{"id_token_hint": {tr.IDToken}, "post_logout_redirect_uri": {appLogout}, "state": {"bye"}}.Encode())
	if lo.status != http.StatusFound || lo.location == nil || !strings.HasPrefix(lo.location.String(), appLogout) {
		t.Fatalf("logout = %d %v, want a redirect to %s", lo.status, lo.location, appLogout)
	}
	a := h.checkLogoutToken(t, app.wait(t, 5*time.Second), "app", sub, sid)
	o := h.checkLogoutToken(t, other.wait(t, 5*time.Second), "other", sub, sid)
	if a.JTI == o.JTI {
		t.Error("two logout tokens share a jti")
	}
	app.none(t, 300*time.Millisecond)

	if r := h.refresh(tr.RefreshToken, "app"); r.status != http.StatusBadRequest || r.Error != "invalid_grant" {
		t.Errorf("refresh after logout = %d %s, want 400 invalid_grant", r.status, r.Error)
	}
	if u := h.userinfo(tr.AccessToken); u.status != http.StatusUnauthorized {
		t.Errorf("userinfo with the access token after logout = %d, want 401", u.status)
	}
	// The session is gone: signing in again asks for the password.
	r := h.authorize(br, authParams(newPKCE()))
	if r.status != http.StatusFound || r.location == nil || r.location.Query().Get("code") != "" {
		t.Errorf("authorize after logout = %d %v, want the sign-in page, not a code", r.status, r.location)
	}
	if n := h.auditEvents("backchannel_logout_delivered"); n != 2 {
		t.Errorf("audit backchannel_logout_delivered = %d, want 2", n)
	}
}

// TestBackchannelLogoutRetried: an application that answers 500 is sent
// the logout again until it answers 200; one that answers 400 refuses the
// token and is not asked again.
func TestBackchannelLogoutRetried(t *testing.T) {
	app, other := newLogoutApp(t), newLogoutApp(t)
	app.answers = []int{http.StatusInternalServerError}
	other.answers = []int{http.StatusBadRequest}
	h := newHarness(t, nil, nil, withLogoutURIs(map[string]string{"app": app.URL(), "other": other.URL()}, nil, nil))
	br := h.newBrowser()
	tr := h.signInBoth(t, br)
	sub, sid := h.idClaims(t, "app", tr.IDToken)
	br.get(h.issuer + "/logout?" + url.Values{"id_token_hint": {tr.IDToken}}.Encode())

	// The first attempt fails; the retry is due a second later on the
	// broker's clock.
	deadline := time.Now().Add(5 * time.Second)
	for app.posts() < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if app.posts() != 1 {
		t.Fatalf("app got %d posts, want 1 (the failed one)", app.posts())
	}
	// The broker records the failure (and the retry's time, a second
	// after it, on its clock) only once the answer is back: the clock
	// moves a second at a time until the retry comes, so that a clock
	// moved before the failure was recorded does not leave the retry
	// waiting for a time that never comes.
	var tok string
	for deadline := time.Now().Add(10 * time.Second); tok == "" && time.Now().Before(deadline); {
		h.clock.Advance(time.Second)
		select {
		case tok = <-app.got:
		case <-time.After(200 * time.Millisecond):
		}
	}
	if tok == "" {
		t.Fatalf("no back-channel logout retry within 10s (posts so far: %d)", app.posts())
	}
	h.checkLogoutToken(t, tok, "app", sub, sid)
	if app.posts() != 2 {
		t.Errorf("app got %d posts, want 2", app.posts())
	}
	h.clock.Advance(time.Minute)
	time.Sleep(1500 * time.Millisecond)
	if other.posts() != 1 {
		t.Errorf("other (which answered 400) got %d posts, want exactly 1", other.posts())
	}
}

// TestFrontchannelLogout: the signed-out page loads the front-channel
// logout URL of each application the session signed into, with iss and
// sid, in an iframe its Content-Security-Policy allows, and then goes on
// to the post_logout_redirect_uri.
func TestFrontchannelLogout(t *testing.T) {
	front := "https://app.example.com/frontchannel?x=1"
	h := newHarness(t, nil, nil, withLogoutURIs(nil, map[string]string{"app": front}, nil))
	br := h.newBrowser()
	tr := h.signInBoth(t, br)
	_, sid := h.idClaims(t, "app", tr.IDToken)
	lo := br.get(h.issuer + "/logout?" + url.Values{"id_token_hint": {tr.IDToken}, "post_logout_redirect_uri": {appLogout}, "state": {"s1"}}.Encode())
	if lo.status != http.StatusOK {
		t.Fatalf("logout = %d, want the signed-out page", lo.status)
	}
	m := regexp.MustCompile(`<iframe class="frontchannel" src="([^"]+)"`).FindAllStringSubmatch(lo.body, -1)
	if len(m) != 1 {
		t.Fatalf("signed-out page has %d front-channel iframes, want 1: %s", len(m), lo.body)
	}
	u, err := url.Parse(strings.ReplaceAll(m[0][1], "&amp;", "&"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Host != "app.example.com" || u.Path != "/frontchannel" || q.Get("x") != "1" || q.Get("iss") != h.issuer || q.Get("sid") != sid {
		t.Errorf("iframe src %s, want the registered URL with iss %s and sid %s", u, h.issuer, sid)
	}
	if csp := lo.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-src https://app.example.com;") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q does not allow the app's frame (only)", csp)
	}
	if !strings.Contains(lo.body, `id="continue" href="`+appLogout+`?state=s1"`) {
		t.Errorf("signed-out page does not continue to %s?state=s1: %s", appLogout, lo.body)
	}
}

// TestAdminSessions: GET lists a person's sessions with the clients they
// signed into; DELETE of one session or of all signs the person out
// everywhere, with back-channel logout to the applications.
func TestAdminSessions(t *testing.T) {
	app := newLogoutApp(t)
	h := newHarness(t, nil, nil, withLogoutURIs(map[string]string{"app": app.URL()}, nil, nil))
	api := newAdminAPI(t, h, nil)
	br1, br2 := h.newBrowser(), h.newBrowser()
	tr1 := h.signInBoth(t, br1)
	h.clock.Advance(time.Second) // the second session is the newer one
	p := newPKCE()
	code, _ := h.login(br2, authParams(p), "alice", alicePassword)
	tr2 := h.redeem(code, p)
	sub, sid1 := h.idClaims(t, "app", tr1.IDToken)
	_, sid2 := h.idClaims(t, "app", tr2.IDToken)

	type view struct {
		SID       string   `json:"sid"`
		Connector string   `json:"connector"`
		Clients   []string `json:"clients"`
		Created   string   `json:"created"`
		Expires   string   `json:"expires"`
	}
	list := func() []view {
		t.Helper()
		r := api.do(http.MethodGet, "/admin/subjects/"+url.PathEscape(sub)+"/sessions", "")
		if r.status != http.StatusOK {
			t.Fatalf("GET sessions = %d %s", r.status, r.body)
		}
		return decodeJSON[struct {
			Sessions []view `json:"sessions"`
		}](t, r.body).Sessions
	}
	got := list()
	if len(got) != 2 || got[0].SID != sid1 || got[1].SID != sid2 {
		t.Fatalf("sessions %+v, want %s then %s", got, sid1, sid2)
	}
	if strings.Join(got[0].Clients, ",") != "app,other" || got[0].Connector != "local" || got[0].Created == "" || got[0].Expires == "" {
		t.Errorf("first session %+v, want clients app,other through local", got[0])
	}
	if strings.Contains(api.do(http.MethodGet, "/admin/subjects/"+url.PathEscape(sub)+"/sessions", "").body, tr1.RefreshToken) {
		t.Error("the sessions list shows a token")
	}

	if r := api.do(http.MethodDelete, "/admin/subjects/"+url.PathEscape(sub)+"/sessions/no-such-sid", ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE unknown session = %d, want 404", r.status)
	}
	if r := api.call("192.0.2.1:4000", "Bearer wrong", http.MethodDelete, "/admin/subjects/"+url.PathEscape(sub)+"/sessions", ""); r.status != http.StatusUnauthorized {
		t.Errorf("DELETE without the admin token = %d, want 401", r.status)
	}
	if len(list()) != 2 {
		t.Fatal("a refused DELETE ended sessions")
	}

	r := api.do(http.MethodDelete, "/admin/subjects/"+url.PathEscape(sub)+"/sessions/"+url.PathEscape(sid1), "")
	if r.status != http.StatusOK {
		t.Fatalf("DELETE one session = %d %s", r.status, r.body)
	}
	h.checkLogoutToken(t, app.wait(t, 5*time.Second), "app", sub, sid1)
	if got := list(); len(got) != 1 || got[0].SID != sid2 {
		t.Errorf("after ending %s: %+v", sid1, got)
	}
	if rr := h.refresh(tr1.RefreshToken, "app"); rr.status != http.StatusBadRequest {
		t.Errorf("refresh of the ended session = %d, want 400", rr.status)
	}
	if rr := h.refresh(tr2.RefreshToken, "app"); rr.status != http.StatusOK {
		t.Fatalf("refresh of the other session = %d %s, want 200", rr.status, rr.Error)
	}

	r = api.do(http.MethodDelete, "/admin/subjects/"+url.PathEscape(sub)+"/sessions", "")
	if r.status != http.StatusOK {
		t.Fatalf("DELETE all sessions = %d %s", r.status, r.body)
	}
	h.checkLogoutToken(t, app.wait(t, 5*time.Second), "app", sub, sid2)
	if got := list(); len(got) != 0 {
		t.Errorf("after signing out everywhere: %+v", got)
	}
	if u := h.userinfo(tr2.AccessToken); u.status != http.StatusUnauthorized {
		t.Errorf("userinfo after signing out everywhere = %d, want 401", u.status)
	}
	// Every admin DELETE is audited, the one that found nothing too.
	if n := h.auditEvents("admin_end_sessions"); n != 3 {
		t.Errorf("audit admin_end_sessions = %d, want 3", n)
	}
}

// auditEvents counts the audit events named event.
func (h *harness) auditEvents(event string) int {
	n := 0
	for _, m := range h.auditLines() {
		if m["msg"] == event {
			n++
		}
	}
	return n
}

// discoveryDoc returns the broker's discovery document as JSON values.
func (h *harness) discoveryDoc() map[string]any {
	h.t.Helper()
	resp, err := http.Get(h.issuer + "/.well-known/openid-configuration")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		h.t.Fatal(err)
	}
	return m
}

// TestEndedSessionRevokesEverything: once a session ended, a code it
// issued before is refused, and an access token delegated (token
// exchange) from one of its tokens is inactive at introspection.
func TestEndedSessionRevokesEverything(t *testing.T) {
	h := newHarness(t, nil, nil, func(cfg *config.Config) {
		for i := range cfg.Clients {
			if cl := &cfg.Clients[i]; cl.ID == "svc" {
				cl.GrantTypes = []string{config.GrantAuthorizationCode, config.GrantRefreshToken, config.GrantTokenExchange}
				cl.DelegateAnyAudience = true
			}
		}
	})
	api := newAdminAPI(t, h, nil)
	br := h.newBrowser()
	p := newPKCE()
	code, _ := h.login(br, authParams(p), "alice", alicePassword)
	tr := h.redeem(code, p)
	sub, _ := h.idClaims(t, "app", tr.IDToken)
	del := h.exchange("svc", svcSecret, url.Values{"subject_token": {tr.AccessToken}, "subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}})
	if del.status != http.StatusOK {
		t.Fatalf("delegation = %d %s %s", del.status, del.Error, del.Description)
	}
	if !h.introspectActive(t, del.AccessToken) {
		t.Fatal("the delegated token is not active before the logout")
	}
	// A second code from the same session (single sign-on), not redeemed
	// before the session ends.
	p2 := newPKCE()
	r := h.authorize(br, authParams(p2))
	code2 := r.location.Query().Get("code")
	if code2 == "" {
		t.Fatalf("SSO gave no code: %d %v", r.status, r.location)
	}

	if r := api.do(http.MethodDelete, "/admin/subjects/"+url.PathEscape(sub)+"/sessions", ""); r.status != http.StatusOK {
		t.Fatalf("DELETE sessions = %d %s", r.status, r.body)
	}
	if h.introspectActive(t, del.AccessToken) {
		t.Error("the delegated token is still active after the session ended")
	}
	if h.introspectActive(t, tr.AccessToken) {
		t.Error("the access token is still active after the session ended")
	}
	if got := h.redeem(code2, p2); got.status != http.StatusBadRequest || got.Error != "invalid_grant" {
		t.Errorf("redeeming a code of the ended session = %d %s, want 400 invalid_grant", got.status, got.Error)
	}
}

// introspectActive asks /introspect (as svc) whether token is active.
func (h *harness) introspectActive(t *testing.T, token string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.issuer+"/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", url.QueryEscape(svcSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Active bool `json:"active"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		t.Fatalf("introspect = %d", resp.StatusCode)
	}
	return body.Active
}

// TestSingleLogoutOnEveryStore: on each storage backend, the admin's
// "sign out everywhere" and an application's sign-out end the sessions,
// revoke the refresh tokens and reach the applications' back-channel
// endpoints.
func TestSingleLogoutOnEveryStore(t *testing.T) {
	for name, open := range backends() {
		t.Run(name, func(t *testing.T) {
			clk := newClock()
			app, other := newLogoutApp(t), newLogoutApp(t)
			h := newHarness(t, open(t, clk), clk, withLogoutURIs(map[string]string{"app": app.URL(), "other": other.URL()}, nil, nil))
			api := newAdminAPI(t, h, nil)

			br := h.newBrowser()
			tr := h.signInBoth(t, br)
			sub, sid := h.idClaims(t, "app", tr.IDToken)
			r := api.do(http.MethodGet, "/admin/subjects/"+url.PathEscape(sub)+"/sessions", "")
			if r.status != http.StatusOK || !strings.Contains(r.body, sid) || !strings.Contains(r.body, `"clients":["app","other"]`) {
				t.Fatalf("GET sessions = %d %s, want %s with clients app and other", r.status, r.body, sid)
			}
			if r := api.do(http.MethodDelete, "/admin/subjects/"+url.PathEscape(sub)+"/sessions", ""); r.status != http.StatusOK {
				t.Fatalf("DELETE sessions = %d %s", r.status, r.body)
			}
			h.checkLogoutToken(t, app.wait(t, 10*time.Second), "app", sub, sid)
			h.checkLogoutToken(t, other.wait(t, 10*time.Second), "other", sub, sid)
			if rr := h.refresh(tr.RefreshToken, "app"); rr.status != http.StatusBadRequest {
				t.Errorf("refresh after sign-out everywhere = %d, want 400", rr.status)
			}

			br2 := h.newBrowser()
			p := newPKCE()
			code, _ := h.login(br2, authParams(p), "alice", alicePassword)
			tr2 := h.redeem(code, p)
			_, sid2 := h.idClaims(t, "app", tr2.IDToken)
			lo := br2.get(h.issuer + "/logout?" + url.Values{"id_token_hint": {tr2.IDToken}}.Encode())
			if lo.status != http.StatusOK {
				t.Fatalf("logout = %d", lo.status)
			}
			h.checkLogoutToken(t, app.wait(t, 10*time.Second), "app", sub, sid2)
			if rr := h.refresh(tr2.RefreshToken, "app"); rr.status != http.StatusBadRequest {
				t.Errorf("refresh after the app's sign-out = %d, want 400", rr.status)
			}
		})
	}
}
