package broker

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// consoleClient is a browser on the admin listener's console.
type consoleClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newConsole(t *testing.T, h *harness, reload func(context.Context) error) *consoleClient {
	t.Helper()
	srv := httptest.NewServer(h.b.AdminHandler(AdminOptions{Token: adminToken, Reload: reload, Gatherer: h.b.Gatherer()}))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &consoleClient{t: t, base: srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (cc *consoleClient) do(method, path string, form url.Values, header http.Header) (int, http.Header, string) {
	cc.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, cc.base+path, body)
	if err != nil {
		cc.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := cc.c.Do(req)
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (cc *consoleClient) get(path string) (int, string) {
	st, _, body := cc.do(http.MethodGet, path, nil, nil)
	return st, body
}

var consoleCSRFField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn logs in with the token and returns the CSRF token.
func (cc *consoleClient) signIn() string {
	cc.t.Helper()
	st, h, _ := cc.do(http.MethodPost, "/console/login", url.Values{"token": {adminToken}}, nil)
	if st != http.StatusSeeOther || h.Get("Location") != "/console/" {
		cc.t.Fatalf("login = %d %s, want 303 to /console/", st, h.Get("Location"))
	}
	st, body := cc.get("/console/")
	if st != http.StatusOK {
		cc.t.Fatalf("overview = %d", st)
	}
	m := consoleCSRFField.FindStringSubmatch(body)
	if m == nil {
		cc.t.Fatal("no CSRF field on the overview")
	}
	return m[1]
}

// seedAlice gives alice a link and a live session.
func seedAlice(t *testing.T, h *harness) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := h.store.CreateLink(ctx, storage.Link{Key: "alice@acme.com", Subject: "sub-alice", ConnectorID: "local", UpstreamSubject: "alice-upstream", Created: h.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, sid := range []string{"sid-1", "sid-2"} {
		err := h.store.CreateSession(ctx, storage.Session{
			ID: "secret-session-id-" + sid, PublicID: sid, Subject: "sub-alice", ConnectorID: "local", AuthTime: h.clock.Now(),
			Expiry: h.clock.Now().Add(time.Hour), Created: h.clock.Now(), Clients: []string{"app"},
			Grant: storage.Grant{Subject: "sub-alice", ConnectorID: "local", UpstreamSubject: "alice-upstream",
				IDTokenClaims: map[string]any{"email": "alice@acme.com", "groups": []string{"eng"}}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

var consolePages = []string{"/console/", "/console/connectors", "/console/clients", "/console/people?q=alice",
	"/console/person?sub=sub-alice", "/console/audit", "/console/audit?event=admin_*", "/console/actions", "/console/workbench"}

func TestConsoleLogin(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	cc := newConsole(t, h, nil)
	if st, h, _ := cc.do(http.MethodGet, "/console/", nil, nil); st != http.StatusSeeOther || h.Get("Location") != "/console/login" {
		t.Fatalf("signed out overview = %d %s, want a redirect to the login page", st, h.Get("Location"))
	}
	st, body := cc.get("/console/login")
	if st != http.StatusOK || !strings.Contains(body, `<label for="token">`) {
		t.Fatalf("login page = %d\n%s", st, body)
	}
	st, hdr, _ := cc.do(http.MethodPost, "/console/login", url.Values{"token": {"wrong"}}, nil)
	if st != http.StatusUnauthorized || hdr.Get("Set-Cookie") != "" {
		t.Fatalf("wrong token = %d, cookie %q; want 401 without a cookie", st, hdr.Get("Set-Cookie"))
	}
	st, hdr, _ = cc.do(http.MethodPost, "/console/login", url.Values{"token": {adminToken}}, nil)
	ck := hdr.Get("Set-Cookie")
	if st != http.StatusSeeOther || !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") || !strings.Contains(ck, "Path=/console/") {
		t.Fatalf("right token = %d, cookie %q", st, ck)
	}
	if strings.Contains(ck, adminToken) {
		t.Fatal("the cookie carries the admin token")
	}
	// Failures are limited per address: after 5, 429.
	got429 := false
	for range 8 {
		st, _, _ := cc.do(http.MethodPost, "/console/login", url.Values{"token": {"guess"}}, nil)
		if st == http.StatusTooManyRequests {
			got429 = true
			break
		}
	}
	if !got429 {
		t.Fatal("no 429 after repeated wrong tokens")
	}
	if !strings.Contains(h.audit.String(), `"console_sign_in"`) {
		t.Error("no audit entry for the console sign-in")
	}
}

func TestConsolePagesSignedInAndOut(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	seedAlice(t, h)
	out := newConsole(t, h, nil)
	for _, p := range consolePages {
		if st, hdr, _ := out.do(http.MethodGet, p, nil, nil); st != http.StatusSeeOther || hdr.Get("Location") != "/console/login" {
			t.Errorf("signed out GET %s = %d %s, want a redirect to the login page", p, st, hdr.Get("Location"))
		}
	}
	cc := newConsole(t, h, nil)
	cc.signIn()
	for _, p := range consolePages {
		st, hdr, body := cc.do(http.MethodGet, p, nil, nil)
		if st != http.StatusOK {
			t.Errorf("GET %s = %d\n%s", p, st, body)
			continue
		}
		if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: CSP %q", p, csp)
		}
		if hdr.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: no X-Frame-Options DENY", p)
		}
		if regexp.MustCompile(`<script>|style="|<style`).MatchString(body) {
			t.Errorf("GET %s has inline script or style", p)
		}
	}
	// The overview charts the counters of /metrics.
	h.b.metrics.SignIn("local", "success")
	h.b.metrics.Token("authorization_code", "app")
	h.b.samples.Sample()
	_, body := cc.get("/console/")
	for _, want := range []string{`<svg viewBox="0 0 600 150" role="img"`, `<polyline class="line c0"`, "local success: 1 in the last hour", "authorization_code: 1 in the last hour", "Readiness", "memory"} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	// The key set: the active and the next key of the default algorithm.
	for _, ki := range h.keys.Summary()[0].Keys {
		if !strings.Contains(body, "<code>"+ki.KID+"</code></td><td>"+ki.Alg+"</td><td>"+ki.Role+"</td>") {
			t.Errorf("overview lacks the %s key %s", ki.Role, ki.KID)
		}
	}
	if st, body := cc.get("/console/static/console.css"); st != http.StatusOK || !strings.Contains(body, "box-sizing") {
		t.Errorf("stylesheet = %d", st)
	}
}

func TestConsoleNoSecretInAnyPage(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	seedAlice(t, h)
	cfg := h.b.runningConfig()
	secrets := []string{adminToken, svcSecret, "secret-session-id-sid-1"}
	for _, c := range cfg.Clients {
		if c.SecretHash != "" {
			secrets = append(secrets, c.SecretHash)
		}
	}
	hashes, _ := hashOnce()
	secrets = append(secrets, hashes[0], hashes[1])
	cc := newConsole(t, h, nil)
	cc.signIn()
	pages := append(consolePages, "/console/login")
	for _, p := range pages {
		_, body := cc.get(p)
		for _, s := range secrets {
			if strings.Contains(body, s) || strings.Contains(body, strings.ReplaceAll(s, "$", "&#36;")) {
				t.Errorf("GET %s shows a secret (%.12s...)", p, s)
			}
		}
	}
	_, body := cc.get("/console/connectors")
	if !strings.Contains(body, "users[0].password_hash") || !strings.Contains(body, "set") {
		t.Errorf("connectors page does not show the masked password hash as set:\n%s", body)
	}
}

func TestConsoleCSRF(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	seedAlice(t, h)
	cc := newConsole(t, h, nil)
	csrf := cc.signIn()
	form := func(token string) url.Values {
		return url.Values{"csrf": {token}, "sub": {"sub-alice"}, "confirm": {"yes"}}
	}
	for name, f := range map[string]url.Values{"without a token": {"sub": {"sub-alice"}, "confirm": {"yes"}}, "with a wrong token": form("wrong")} {
		if st, _, _ := cc.do(http.MethodPost, "/console/person/signout", f, nil); st != http.StatusForbidden {
			t.Errorf("POST %s = %d, want 403", name, st)
		}
	}
	st, _, _ := cc.do(http.MethodPost, "/console/person/signout", form(csrf), http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if st != http.StatusForbidden {
		t.Errorf("cross-site POST = %d, want 403", st)
	}
	st, _, _ = cc.do(http.MethodPost, "/console/person/signout", form(csrf), http.Header{"Origin": {"https://evil.example"}})
	if st != http.StatusForbidden {
		t.Errorf("cross-origin POST = %d, want 403", st)
	}
	if list, _ := h.store.ListSessions(context.Background(), "sub-alice"); len(list) != 2 {
		t.Fatalf("a refused POST ended sessions: %d left", len(list))
	}
	// A cross-origin login is refused as well.
	if st, _, _ := cc.do(http.MethodPost, "/console/login", url.Values{"token": {adminToken}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}); st != http.StatusForbidden {
		t.Errorf("cross-site login = %d, want 403", st)
	}
}

func TestConsoleNotOnPublicListener(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	for _, p := range []string{"/console/", "/console/login", "/console/static/console.css", "/console/people"} {
		resp, err := http.Get(h.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("public GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestConsolePeople(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	seedAlice(t, h)
	cc := newConsole(t, h, nil)
	csrf := cc.signIn()
	for _, q := range []string{"sub-alice", "ALICE@acme.com", "alice-upstream"} {
		_, body := cc.get("/console/people?q=" + url.QueryEscape(q))
		if !strings.Contains(body, `href="/console/person?sub=sub-alice"`) {
			t.Errorf("search %q does not find alice:\n%s", q, body)
		}
	}
	if _, body := cc.get("/console/people?q=nobody-at-all"); strings.Contains(body, "sub-alice") {
		t.Error("search for nobody finds alice")
	}
	_, body := cc.get("/console/person?sub=sub-alice")
	for _, want := range []string{"sid-1", "sid-2", "alice@acme.com", "&#34;eng&#34;", "/console/workbench?connector=local"} {
		if !strings.Contains(body, want) {
			t.Errorf("person page lacks %q", want)
		}
	}
	// Unconfirmed: nothing happens.
	st, _, _ := cc.do(http.MethodPost, "/console/person/signout", url.Values{"csrf": {csrf}, "sub": {"sub-alice"}}, nil)
	if list, _ := h.store.ListSessions(context.Background(), "sub-alice"); st != http.StatusBadRequest || len(list) != 2 {
		t.Fatalf("unconfirmed sign-out = %d, %d sessions left", st, len(list))
	}
	// One session.
	st, _, _ = cc.do(http.MethodPost, "/console/person/signout", url.Values{"csrf": {csrf}, "sub": {"sub-alice"}, "sid": {"sid-1"}, "confirm": {"yes"}}, nil)
	if list, _ := h.store.ListSessions(context.Background(), "sub-alice"); st != http.StatusOK || len(list) != 1 || list[0].PublicID != "sid-2" {
		t.Fatalf("sign out one = %d, sessions %v", st, list)
	}
	// Everywhere.
	st, _, body = cc.do(http.MethodPost, "/console/person/signout", url.Values{"csrf": {csrf}, "sub": {"sub-alice"}, "confirm": {"yes"}}, nil)
	if list, _ := h.store.ListSessions(context.Background(), "sub-alice"); st != http.StatusOK || len(list) != 0 {
		t.Fatalf("sign out everywhere = %d, %d sessions left", st, len(list))
	}
	if !strings.Contains(body, "Ended 1 session") {
		t.Errorf("no report of the sign-out:\n%s", body)
	}
	audit := h.audit.String()
	if !regexp.MustCompile(`"msg":"admin_end_sessions"[^\n]*"admin":"token"[^\n]*"sub":"sub-alice"`).MatchString(audit) {
		t.Errorf("no audit entry naming the admin:\n%s", audit)
	}
	// The person page lists the recent audit events for her.
	if _, body := cc.get("/console/person?sub=sub-alice"); !strings.Contains(body, "admin_end_sessions") {
		t.Error("person page lacks her recent audit events")
	}
	// Unlink.
	st, _, _ = cc.do(http.MethodPost, "/console/person/unlink", url.Values{"csrf": {csrf}, "sub": {"sub-alice"}, "key": {"alice@acme.com"}, "confirm": {"yes"}}, nil)
	if _, err := h.store.GetLink(context.Background(), "alice@acme.com"); st != http.StatusOK || err == nil {
		t.Fatalf("unlink = %d, link still there (err %v)", st, err)
	}
	if !regexp.MustCompile(`"msg":"admin_unlink"[^\n]*"admin":"token"`).MatchString(h.audit.String()) {
		t.Error("no audit entry for the unlink")
	}
}

func TestConsoleActions(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	seedAlice(t, h)
	reloads := 0
	cc := newConsole(t, h, func(context.Context) error { reloads++; return nil })
	csrf := cc.signIn()
	for _, a := range []string{"reload", "rotate"} {
		st, _, _ := cc.do(http.MethodPost, "/console/actions/"+a, url.Values{"csrf": {csrf}}, nil)
		if st != http.StatusBadRequest {
			t.Errorf("unconfirmed %s = %d, want 400", a, st)
		}
	}
	if reloads != 0 {
		t.Fatal("an unconfirmed reload reloaded")
	}
	before, _ := h.keys.JWKS()
	for _, a := range []string{"reload", "rotate"} {
		st, _, body := cc.do(http.MethodPost, "/console/actions/"+a, url.Values{"csrf": {csrf}, "confirm": {"yes"}}, nil)
		if st != http.StatusOK {
			t.Errorf("%s = %d\n%s", a, st, body)
		}
	}
	after, _ := h.keys.JWKS()
	if reloads != 1 || string(before) == string(after) {
		t.Errorf("reloads %d, JWKS changed %v", reloads, string(before) != string(after))
	}
	st, _, _ := cc.do(http.MethodPost, "/console/actions/revoke", url.Values{"csrf": {csrf}, "sub": {"sub-alice"}, "confirm": {"yes"}}, nil)
	if list, _ := h.store.ListSessions(context.Background(), "sub-alice"); st != http.StatusOK || len(list) != 0 {
		t.Errorf("revoke = %d, %d sessions left", st, len(list))
	}
	audit := h.audit.String()
	for _, ev := range []string{"admin_reload", "admin_rotate_keys", "admin_revoke_subject"} {
		if !regexp.MustCompile(`"msg":"` + ev + `"[^\n]*"admin":"token"`).MatchString(audit) {
			t.Errorf("no audit entry %s naming the admin", ev)
		}
	}
	// The audit page filters.
	_, body := cc.get("/console/audit?event=admin_rotate_keys")
	if !strings.Contains(body, "admin_rotate_keys") || strings.Contains(body, "<td>admin_reload</td>") {
		t.Errorf("event filter:\n%s", body)
	}
	_, body = cc.get("/console/audit?subject=sub-alice")
	if !strings.Contains(body, "<td>admin_revoke_subject</td>") || strings.Contains(body, "<td>admin_rotate_keys</td>") {
		t.Errorf("subject filter:\n%s", body)
	}
	_, body = cc.get("/console/audit?connector=nope")
	if strings.Contains(body, "<td>admin_") {
		t.Errorf("connector filter kept unrelated events")
	}
	// Sign out of the console.
	st, hdr, _ := cc.do(http.MethodPost, "/console/logout", url.Values{"csrf": {csrf}}, nil)
	if st != http.StatusSeeOther || hdr.Get("Location") != "/console/login" {
		t.Fatalf("logout = %d", st)
	}
	if st, _ := cc.get("/console/"); st != http.StatusSeeOther {
		t.Errorf("after logout overview = %d, want a redirect", st)
	}
}

// Two replicas on one store: each one's console lists both (this one
// marked), adds up their counters in the charts and per client, and shows
// a replica that stopped writing its heartbeat as gone.
func TestConsoleReplicas(t *testing.T) {
	a := newHarness(t, nil, nil, nil)
	b := newHarness(t, a.store, a.clock, nil)
	ctx := context.Background()
	// Both heartbeats wrote their records as Run started.
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, err := a.store.ListReplicas(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica records = %+v, want 2", recs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// b issues tokens that a never saw.
	b.b.samples.Sample()
	for range 3 {
		b.b.metrics.Token("client_credentials", "svc")
	}
	a.b.metrics.Token("client_credentials", "svc")
	a.b.samples.Sample()
	b.b.samples.Sample()
	rb := b.b.replicaRecord(ctx)
	if err := b.store.PutReplica(ctx, rb, rb.Seen.Add(storage.ReplicaKeep)); err != nil {
		t.Fatal(err)
	}
	cc := newConsole(t, a, nil)
	cc.signIn()
	_, body := cc.get("/console/")
	ra := a.b.replicaRecord(ctx)
	for _, want := range []string{
		"2 seen in the last 45s",
		"<code>" + ra.ID + "</code> (this one)",
		"<code>" + rb.ID + "</code></td>",
		"client_credentials: 4 in the last hour",
		`<span class="ok">ready</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if _, body := cc.get("/console/clients"); !strings.Contains(body, "client_credentials: 4") {
		t.Errorf("clients page lacks svc's 4 client_credentials responses")
	}
	// b stops writing: a minute later it is gone, its counts still in
	// the last hour.
	a.clock.Advance(time.Minute)
	_, body = cc.get("/console/")
	for _, want := range []string{"1 seen in the last 45s", `<span class="bad">gone</span> (ready)`, "client_credentials: 4 in the last hour"} {
		if !strings.Contains(body, want) {
			t.Errorf("after a minute, overview lacks %q", want)
		}
	}
}
