package broker

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
)

// deviceConfig adds the TV client (public, device grant only, the local
// connector alone) and lets svc use the device grant too.
func deviceConfig(c *config.Config) {
	for i := range c.Clients {
		if c.Clients[i].ID == "svc" {
			c.Clients[i].GrantTypes = append(c.Clients[i].GrantTypes, config.GrantDeviceCode)
		}
	}
	c.Clients = append(c.Clients, config.Client{
		ID: "tv", Name: "Living-room TV", Public: true,
		GrantTypes: []string{config.GrantDeviceCode, config.GrantRefreshToken},
		Scopes:     config.DefaultScopes, Connectors: []string{"local"}, Audiences: []string{"tv"},
	})
}

// deviceAuth is a decoded /device/authorization answer, success or error.
type deviceAuth struct {
	status                  int
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
	Error                   string `json:"error"`
}

func (h *harness) deviceAuthorize(form url.Values, user, pass string) deviceAuth {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.issuer+"/device/authorization", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var da deviceAuth
	if err := json.Unmarshal(body, &da); err != nil {
		h.t.Fatalf("POST /device/authorization = %d with non-JSON body %q", resp.StatusCode, body)
	}
	da.status = resp.StatusCode
	return da
}

// startDevice runs the device authorization of the TV client.
func (h *harness) startDevice(scope string) deviceAuth {
	h.t.Helper()
	da := h.deviceAuthorize(url.Values{"client_id": {"tv"}, "scope": {scope}}, "", "")
	if da.status != http.StatusOK || da.DeviceCode == "" {
		h.t.Fatalf("device authorization = %+v", da)
	}
	return da
}

func (h *harness) pollDevice(dc, clientID string) tokenResponse {
	h.t.Helper()
	return h.token(url.Values{"grant_type": {config.GrantDeviceCode}, "device_code": {dc}, "client_id": {clientID}}, "", "")
}

var deviceCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// enterCode posts user code uc at the verification page and returns the
// confirmation page's token.
func (h *harness) enterCode(br *browser, uc string) string {
	h.t.Helper()
	r := br.send(h.issuer+"/device", url.Values{"user_code": {uc}}, h.sameOrigin())
	m := deviceCSRF.FindStringSubmatch(r.body)
	if r.status != http.StatusOK || m == nil || !strings.Contains(r.body, "Living-room TV") {
		h.t.Fatalf("POST /device %s = %d %s", uc, r.status, r.body)
	}
	return m[1]
}

// approveDevice signs alice in from the verification page for user code
// uc and returns the final page.
func (h *harness) approveDevice(br *browser, uc string) response {
	h.t.Helper()
	csrf := h.enterCode(br, uc)
	r := br.send(h.issuer+"/device", url.Values{"user_code": {uc}, "csrf": {csrf}, "action": {"confirm"}}, h.sameOrigin())
	if r.status != http.StatusSeeOther || r.location == nil || !strings.HasPrefix(r.location.Path, "/login/local") {
		h.t.Fatalf("confirm = %d %v %s", r.status, r.location, r.body)
	}
	return h.passwordLogin(br, r.location, "alice", alicePassword)
}

func TestDeviceFlow(t *testing.T) {
	h := newHarness(t, nil, nil, deviceConfig)

	// Discovery advertises the endpoint and the grant.
	var disc struct {
		Endpoint string   `json:"device_authorization_endpoint"`
		Grants   []string `json:"grant_types_supported"`
	}
	r := h.newBrowser().get(h.issuer + "/.well-known/openid-configuration")
	if err := json.Unmarshal([]byte(r.body), &disc); err != nil || disc.Endpoint != h.issuer+"/device/authorization" || !strings.Contains(strings.Join(disc.Grants, " "), config.GrantDeviceCode) {
		t.Fatalf("discovery = %s", r.body)
	}

	da := h.startDevice("openid profile email offline_access")
	if da.VerificationURI != h.issuer+"/device" || da.VerificationURIComplete != h.issuer+"/device?user_code="+da.UserCode || da.Interval != 5 || da.ExpiresIn != 600 {
		t.Fatalf("device authorization = %+v", da)
	}
	wantOAuthError(t, h.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "authorization_pending")

	br := h.newBrowser()
	// verification_uri_complete shows the code prefilled, without a lookup.
	if p := br.get(da.VerificationURIComplete); p.status != http.StatusOK || !strings.Contains(p.body, `value="`+da.UserCode+`"`) {
		t.Fatalf("GET %s = %d %s", da.VerificationURIComplete, p.status, p.body)
	}
	// Typed in lower case with a space instead of the dash.
	typed := strings.ToLower(strings.Replace(da.UserCode, "-", " ", 1))
	done := h.approveDevice(br, typed)
	if done.status != http.StatusOK || !strings.Contains(done.body, "return to your device") {
		t.Fatalf("sign-in from the verification page = %d %s", done.status, done.body)
	}
	// The code cannot be approved again.
	if again := br.send(h.issuer+"/device", url.Values{"user_code": {da.UserCode}}, h.sameOrigin()); again.status != http.StatusBadRequest || !strings.Contains(again.body, "already used") {
		t.Fatalf("second lookup = %d %s", again.status, again.body)
	}

	h.clock.Advance(5 * time.Second)
	tr := h.pollDevice(da.DeviceCode, "tv")
	if tr.status != http.StatusOK || tr.AccessToken == "" || tr.IDToken == "" || tr.RefreshToken == "" || tr.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("poll after approval = %+v", tr)
	}
	idt, err := h.verifier("tv").Verify(context.Background(), tr.IDToken)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var claims struct {
		Email string `json:"email"`
	}
	_ = idt.Claims(&claims)
	if claims.Email != "alice@acme.com" {
		t.Errorf("ID token email = %q", claims.Email)
	}
	if rf := h.refresh(tr.RefreshToken, "tv"); rf.status != http.StatusOK || rf.AccessToken == "" {
		t.Errorf("refresh of a device grant = %+v", rf)
	}
	// The device code is good once.
	h.clock.Advance(5 * time.Second)
	wantOAuthError(t, h.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "invalid_grant")
}

func TestDevicePollingErrors(t *testing.T) {
	h := newHarness(t, nil, nil, deviceConfig)

	t.Run("slow down", func(t *testing.T) {
		da := h.startDevice("openid")
		wantOAuthError(t, h.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "authorization_pending")
		wantOAuthError(t, h.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "slow_down")
		// The interval grew to 10 s: polling at the old 5 s is too fast.
		h.clock.Advance(5 * time.Second)
		tr := h.pollDevice(da.DeviceCode, "tv")
		wantOAuthError(t, tr, http.StatusBadRequest, "slow_down")
		if !strings.Contains(tr.Description, "15 s") {
			t.Errorf("slow_down description %q does not name the new interval", tr.Description)
		}
		h.clock.Advance(15 * time.Second)
		wantOAuthError(t, h.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "authorization_pending")
	})
	t.Run("deny", func(t *testing.T) {
		da := h.startDevice("openid")
		br := h.newBrowser()
		csrf := h.enterCode(br, da.UserCode)
		r := br.send(h.issuer+"/device", url.Values{"user_code": {da.UserCode}, "csrf": {csrf}, "action": {"deny"}}, h.sameOrigin())
		if r.status != http.StatusOK || !strings.Contains(r.body, "denied") {
			t.Fatalf("deny = %d %s", r.status, r.body)
		}
		wantOAuthError(t, h.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "access_denied")
	})
	t.Run("cancel at the sign-in", func(t *testing.T) {
		da := h.startDevice("openid")
		br := h.newBrowser()
		csrf := h.enterCode(br, da.UserCode)
		r := br.send(h.issuer+"/device", url.Values{"user_code": {da.UserCode}, "csrf": {csrf}, "action": {"confirm"}}, h.sameOrigin())
		login := br.get(r.location.String())
		m := regexp.MustCompile(`href="([^"]*/cancel\?[^"]+)"`).FindStringSubmatch(login.body)
		if m == nil {
			t.Fatalf("login page has no cancel link: %s", login.body)
		}
		c := br.get(h.issuer + strings.ReplaceAll(m[1], "&amp;", "&"))
		if c.status != http.StatusOK || !strings.Contains(c.body, "denied") {
			t.Fatalf("cancel = %d %s", c.status, c.body)
		}
		wantOAuthError(t, h.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "access_denied")
	})
	t.Run("forged confirmation", func(t *testing.T) {
		da := h.startDevice("openid")
		br := h.newBrowser()
		h.enterCode(br, da.UserCode)
		r := br.send(h.issuer+"/device", url.Values{"user_code": {da.UserCode}, "csrf": {"forged"}, "action": {"confirm"}}, h.sameOrigin())
		if r.status != http.StatusBadRequest {
			t.Fatalf("confirm with a forged token = %d %s", r.status, r.body)
		}
		wantOAuthError(t, h.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "authorization_pending")
	})
	t.Run("expired", func(t *testing.T) {
		da := h.startDevice("openid")
		h.clock.Advance(10*time.Minute + time.Second)
		wantOAuthError(t, h.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "expired_token")
		r := h.newBrowser().send(h.issuer+"/device", url.Values{"user_code": {da.UserCode}}, h.sameOrigin())
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "expired") {
			t.Fatalf("expired code page = %d %s", r.status, r.body)
		}
	})
	t.Run("another client", func(t *testing.T) {
		da := h.startDevice("openid")
		tr := h.token(url.Values{"grant_type": {config.GrantDeviceCode}, "device_code": {da.DeviceCode}}, "svc", svcSecret)
		wantOAuthError(t, tr, http.StatusBadRequest, "invalid_grant")
	})
	t.Run("unknown and malformed device codes", func(t *testing.T) {
		da := h.startDevice("openid")
		_, secret, _ := strings.Cut(da.DeviceCode, ".")
		for _, dc := range []string{"nope", "BCDFGHJK." + secret, da.DeviceCode + "x", strings.Repeat("B", 500)} {
			tr := h.pollDevice(dc, "tv")
			if tr.status != http.StatusBadRequest || (tr.Error != "invalid_grant" && tr.Error != "invalid_request") {
				t.Errorf("device_code %.20q = %d %s", dc, tr.status, tr.Error)
			}
		}
		wantOAuthError(t, h.pollDevice("", "tv"), http.StatusBadRequest, "invalid_request")
	})
}

func TestDeviceAuthorizationEndpoint(t *testing.T) {
	h := newHarness(t, nil, nil, deviceConfig)
	for _, tc := range []struct {
		name       string
		form       url.Values
		user, pass string
		status     int
		code       string
	}{
		{"client without the grant", url.Values{"client_id": {"app"}, "scope": {"openid"}}, "", "", http.StatusBadRequest, "unauthorized_client"},
		{"unknown client", url.Values{"client_id": {"nobody"}}, "", "", http.StatusUnauthorized, "invalid_client"},
		{"wrong secret", url.Values{}, "svc", "wrong", http.StatusUnauthorized, "invalid_client"},
		{"scope not allowed", url.Values{"client_id": {"tv"}, "scope": {"openid admin"}}, "", "", http.StatusBadRequest, "invalid_scope"},
		{"repeated parameter", url.Values{"client_id": {"tv"}, "scope": {"openid", "email"}}, "", "", http.StatusBadRequest, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			da := h.deviceAuthorize(tc.form, tc.user, tc.pass)
			if da.status != tc.status || da.Error != tc.code {
				t.Fatalf("= %d %q, want %d %s", da.status, da.Error, tc.status, tc.code)
			}
		})
	}
	if da := h.deviceAuthorize(url.Values{"scope": {"openid"}}, "svc", svcSecret); da.status != http.StatusOK || da.DeviceCode == "" {
		t.Errorf("confidential client = %+v", da)
	}
	// Not a form, or parameters in the query: invalid_request as JSON.
	for _, req := range []*http.Request{
		func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, h.issuer+"/device/authorization", strings.NewReader(`{"client_id":"tv"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}(),
		func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, h.issuer+"/device/authorization?client_id=tv", strings.NewReader(""))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}(),
	} {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"invalid_request"`) {
			t.Errorf("%s = %d %s", req.URL, resp.StatusCode, body)
		}
	}
}

func TestDeviceVerificationPage(t *testing.T) {
	h := newHarness(t, nil, nil, deviceConfig)
	da := h.startDevice("openid")

	t.Run("malformed codes", func(t *testing.T) {
		br := h.newBrowser()
		for _, uc := range []string{"", "BCDF", "BCDF-GHJK-L", "AEIO-U123", "bcdf-ghj\u017f", strings.Repeat("B", 5000), "<script>"} {
			r := br.send(h.issuer+"/device", url.Values{"user_code": {uc}}, h.sameOrigin())
			if r.status != http.StatusBadRequest || !strings.Contains(r.body, "not a valid code") || strings.Contains(r.body, "<script>") {
				t.Errorf("user_code %.20q = %d %s", uc, r.status, r.body)
			}
		}
		if r := br.get(h.issuer + "/device?user_code=%3Cscript%3E"); r.status != http.StatusOK || strings.Contains(r.body, "<script>") {
			t.Errorf("GET with a hostile user_code = %d %s", r.status, r.body)
		}
	})
	t.Run("unknown code", func(t *testing.T) {
		r := h.newBrowser().send(h.issuer+"/device", url.Values{"user_code": {"BCDF-GHJK"}}, h.sameOrigin())
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "not valid or has expired") {
			t.Fatalf("unknown code = %d %s", r.status, r.body)
		}
	})
	t.Run("cross-site post", func(t *testing.T) {
		for _, hdr := range []http.Header{crossSite, oldCrossSite} {
			r := h.newBrowser().send(h.issuer+"/device", url.Values{"user_code": {da.UserCode}, "action": {"deny"}}, hdr)
			if r.status != http.StatusForbidden {
				t.Errorf("cross-site POST /device = %d", r.status)
			}
		}
		wantOAuthError(t, h.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "authorization_pending")
	})
}

// TestDeviceUserCodeBruteForce: wrong user codes are limited per browser
// and per address; the right code waits too once the budget is spent.
func TestDeviceUserCodeBruteForce(t *testing.T) {
	h := newHarness(t, nil, nil, deviceConfig)
	da := h.startDevice("openid")
	br := h.newBrowser()
	br.get(h.issuer + "/device") // a browser id
	wrong := 0
	for i := range 30 {
		uc := "BCDF-" + string("BCDFGHJKLMNPQRSTVWXZ"[i%20]) + "XZZ"
		r := br.send(h.issuer+"/device", url.Values{"user_code": {uc}}, h.sameOrigin())
		if r.status == http.StatusTooManyRequests {
			break
		}
		wrong++
	}
	if wrong != config.DefaultDeviceUserCodeAttempts.Burst {
		t.Fatalf("%d wrong codes were looked up before the limit, want %d", wrong, config.DefaultDeviceUserCodeAttempts.Burst)
	}
	// The right code from this browser waits too; so does a fresh
	// browser at the same address.
	if r := br.send(h.issuer+"/device", url.Values{"user_code": {da.UserCode}}, h.sameOrigin()); r.status != http.StatusTooManyRequests {
		t.Errorf("right code after the limit = %d", r.status)
	}
	if r := h.newBrowser().send(h.issuer+"/device", url.Values{"user_code": {"ZZZZ-ZZZZ"}}, h.sameOrigin()); r.status != http.StatusTooManyRequests {
		t.Errorf("fresh browser at the same address = %d", r.status)
	}
	// One lookup comes back every 30 s.
	h.clock.Advance(30 * time.Second)
	h.enterCode(h.newBrowser(), da.UserCode)
}

// TestDeviceUserCodeGuessesAcrossReplicas: behind a load balancer a
// guesser's requests reach every replica; its wrong codes are counted on
// all of them together, not once per replica.
func TestDeviceUserCodeGuessesAcrossReplicas(t *testing.T) {
	clk := newClock()
	store := newMemoryStore(clk)
	replicas := []*harness{newHarness(t, store, clk, deviceConfig), newHarness(t, store, clk, deviceConfig)}
	wrong := 0
	for i := range 60 {
		h := replicas[i%2]
		uc := "BCDF-" + string("BCDFGHJKLMNPQRSTVWXZ"[i%20]) + string("BCDFGHJKLMNPQRSTVWXZ"[(i/20)%20]) + "ZZ"
		// A fresh browser each time: only the address is common.
		r := h.newBrowser().send(h.issuer+"/device", url.Values{"user_code": {uc}}, h.sameOrigin())
		if r.status == http.StatusTooManyRequests {
			break
		}
		if r.status != http.StatusBadRequest {
			t.Fatalf("wrong code %d = %d, want 400 (not valid)\n%s", i, r.status, r.body)
		}
		wrong++
	}
	if wrong != config.DefaultDeviceUserCodeAttempts.Burst {
		t.Fatalf("%d wrong codes were looked up on two replicas before the limit, want %d", wrong, config.DefaultDeviceUserCodeAttempts.Burst)
	}
	// Both replicas refuse now; one more comes back every 30 s, on either.
	for _, h := range replicas {
		if r := h.newBrowser().send(h.issuer+"/device", url.Values{"user_code": {"ZZZZ-ZZZZ"}}, h.sameOrigin()); r.status != http.StatusTooManyRequests {
			t.Errorf("a wrong code after the limit = %d, want 429", r.status)
		}
	}
	clk.Advance(30 * time.Second)
	if r := replicas[1].newBrowser().send(replicas[1].issuer+"/device", url.Values{"user_code": {"ZZZZ-ZZZZ"}}, replicas[1].sameOrigin()); r.status != http.StatusBadRequest {
		t.Errorf("a wrong code 30 s later = %d, want 400 (looked up, not valid)", r.status)
	}
}

// TestDeviceAcrossReplicas: two brokers on one store. The device starts
// on one, the person approves on the other, and either answers the poll;
// the polling pace is shared. On Redis and SQLite (the SQL backend of
// PostgreSQL too), which expire records by their own clock, the test
// waits for real (a 1 s interval, 6 s after the slow_down).
func TestDeviceAcrossReplicas(t *testing.T) {
	for _, name := range []string{"memory", "redis", "sqlite"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clk := runtimetest.NewClock(time.Now())
			store := backends()[name](t, clk)
			wait := func(d time.Duration) {
				if name != "memory" {
					time.Sleep(d)
				}
				clk.Advance(d)
			}
			cfg := func(c *config.Config) {
				deviceConfig(c)
				iv := time.Second
				c.Device.PollInterval = &iv
			}
			a := newHarness(t, store, clk, cfg)
			b := newHarness(t, store, clk, cfg)
			da := a.startDevice("openid")
			wantOAuthError(t, b.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "authorization_pending")
			// The poll mark is shared: a poll at the other replica is too fast.
			wantOAuthError(t, a.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "slow_down")
			br := b.newBrowser()
			if done := b.approveDevice(br, da.UserCode); done.status != http.StatusOK {
				t.Fatalf("approval at replica b = %d %s", done.status, done.body)
			}
			// The code is decided for replica a's verification page too.
			if r := a.newBrowser().send(a.issuer+"/device", url.Values{"user_code": {da.UserCode}}, a.sameOrigin()); r.status != http.StatusBadRequest || !strings.Contains(r.body, "already used") {
				t.Errorf("lookup at replica a after approval = %d", r.status)
			}
			// The slow_down made the interval 6 s, from the poll at a.
			wait(5 * time.Second)
			if tr := a.pollDevice(da.DeviceCode, "tv"); tr.status != http.StatusOK || tr.IDToken == "" {
				t.Fatalf("poll at replica a = %+v", tr)
			}
			wantOAuthError(t, b.pollDevice(da.DeviceCode, "tv"), http.StatusBadRequest, "invalid_grant")
		})
	}
}

// TestDeviceSettingsNeedARestart: the device section is read when the
// server starts; a reload reports its change as waiting for a restart,
// and the running interval stays.
func TestDeviceSettingsNeedARestart(t *testing.T) {
	h := newHarness(t, nil, nil, deviceConfig)
	next := harnessConfig(t, h.issuer, nil, func(c *config.Config) {
		deviceConfig(c)
		iv := 20 * time.Second
		c.Device.PollInterval = &iv
	})
	rep, err := h.b.ReloadWithReport(context.Background(), next)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.RestartRequired) != 1 || rep.RestartRequired[0].Path != "device.interval" {
		t.Fatalf("report = %+v", rep)
	}
	if da := h.startDevice("openid"); da.Interval != 5 {
		t.Errorf("interval after reload = %d, want the running 5", da.Interval)
	}
}
