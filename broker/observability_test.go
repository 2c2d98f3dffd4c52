package broker

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/keys"
)

// observedHarness is the harness with the operational log captured too (at
// debug level, so nothing hides below the default level).
func observedHarness(t *testing.T) (*harness, *syncBuffer) {
	t.Helper()
	clk := newClock()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	cfg := harnessConfig(t, issuer, nil, nil)
	store := newMemoryStore(clk)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	oplog, audit := &syncBuffer{}, &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(oplog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	km, err := keys.New(ctx, store, keys.Options{Algorithm: cfg.Signing.Algorithm, Algorithms: cfg.Signing.Algorithms, MaxTokenLifetime: 5 * time.Minute, Now: clk.Now, Logger: logger})
	if err != nil {
		t.Fatalf("keys.New: %v", err)
	}
	b, err := New(ctx, cfg, Options{Storage: store, Keys: km, Now: clk.Now, Logger: logger, Audit: newJSONLogger(audit)})
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	srv.Config.Handler = b.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return &harness{t: t, srv: srv, b: b, store: store, keys: km, clock: clk, issuer: issuer, audit: audit}, oplog
}

// TestLogsCarryNoSecrets runs logins (public and confidential), a refresh,
// a revocation, a wrong password, a wrong client secret, a replayed code,
// a reused refresh token and a forged access token, then checks
// that neither log carries any secret or token, that the audit log has a
// line for each event and that the counters moved.
func TestLogsCarryNoSecrets(t *testing.T) {
	h, oplog := observedHarness(t)
	a := newAdminAPI(t, h, nil)
	const wrongPassword = "wrong-password-Zq81"
	wrongSecret := strings.Repeat("not-the-secret-", 3)
	var secrets []string // every value no log line may hold

	// A wrong password.
	br := h.newBrowser()
	params := authParams(newPKCE())
	params.Set("connector_id", "local")
	r := h.authorize(br, params)
	if bad := h.passwordLogin(br, r.location, "alice", wrongPassword); bad.status != http.StatusUnauthorized || !strings.Contains(bad.body, "name=\"password\"") {
		t.Fatalf("wrong password = %d, want 401 with the form again", bad.status)
	}
	secrets = append(secrets, wrongPassword)

	// A public client: login, code, tokens, refresh, revoke.
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	tr := h.redeem(code, p)
	if tr.status != http.StatusOK {
		t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	secrets = append(secrets, alicePassword, code, p.verifier, tr.AccessToken, tr.IDToken, tr.RefreshToken)
	rf := h.refresh(tr.RefreshToken, "app")
	if rf.status != http.StatusOK {
		t.Fatalf("refresh = %d %s", rf.status, rf.Error)
	}
	secrets = append(secrets, rf.AccessToken, rf.IDToken, rf.RefreshToken)
	resp, err := http.PostForm(h.issuer+"/revoke", url.Values{"token": {rf.RefreshToken}, "client_id": {"app"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke = %d", resp.StatusCode)
	}
	wantOAuthError(t, h.refresh(rf.RefreshToken, "app"), http.StatusBadRequest, "invalid_grant")

	// A confidential client: a wrong secret, then the right one.
	sp := newPKCE()
	sparams := authParams(sp)
	sparams.Set("client_id", "svc")
	sparams.Set("redirect_uri", svcRedirect)
	scode, _ := h.login(h.newBrowser(), sparams, "bob", bobPassword)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {scode}, "redirect_uri": {svcRedirect}, "code_verifier": {sp.verifier}}
	wantOAuthError(t, h.token(form, "svc", wrongSecret), http.StatusUnauthorized, "invalid_client")
	str := h.token(form, "svc", svcSecret)
	if str.status != http.StatusOK {
		t.Fatalf("svc redeem = %d %s", str.status, str.Error)
	}
	secrets = append(secrets, bobPassword, wrongSecret, svcSecret, scode, sp.verifier, str.AccessToken, str.IDToken, str.RefreshToken)

	// Replays and forgeries: a rotated-away refresh token again, a redeemed
	// code again, a tampered access token at userinfo.
	srf := h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str.RefreshToken}}, "svc", svcSecret)
	if srf.status != http.StatusOK {
		t.Fatalf("svc refresh = %d %s", srf.status, srf.Error)
	}
	secrets = append(secrets, srf.AccessToken, srf.IDToken, srf.RefreshToken)
	wantOAuthError(t, h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str.RefreshToken}}, "svc", svcSecret), http.StatusBadRequest, "invalid_grant")
	// The code replay also revokes what the code gave (RFC 6749 4.1.2).
	wantOAuthError(t, h.token(form, "svc", svcSecret), http.StatusBadRequest, "invalid_grant")
	forged := srf.AccessToken[:len(srf.AccessToken)-4] + "AAAA"
	if forged == srf.AccessToken {
		forged = srf.AccessToken[:len(srf.AccessToken)-4] + "BBBB"
	}
	if ui := h.userinfo(forged); ui.status != http.StatusUnauthorized {
		t.Errorf("userinfo with a forged token = %d, want 401", ui.status)
	}
	secrets = append(secrets, forged)

	logs := map[string]string{"operational": oplog.String(), "audit": h.audit.String()}
	if logs["operational"] == "" {
		t.Fatal("the operational log is empty: nothing was checked")
	}
	for name, text := range logs {
		for _, s := range secrets {
			if s == "" {
				t.Fatal("a secret to look for is empty")
			}
			if strings.Contains(text, s) {
				t.Errorf("%s log contains %q", name, s)
			}
			// A JWT's signature alone, or a token's first half, is as bad.
			if parts := strings.Split(s, "."); len(parts) == 3 && strings.Contains(text, parts[2]) {
				t.Errorf("%s log contains the signature of a token", name)
			}
			if len(s) >= 32 && strings.Contains(text, s[:len(s)/2]) {
				t.Errorf("%s log contains half of %q", name, s)
			}
		}
		for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
			var v map[string]any
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Errorf("%s log line is not JSON: %q", name, line)
			}
		}
	}

	audit := logs["audit"]
	for _, want := range []string{
		`"msg":"login_failed"`,
		`"msg":"login"`,
		`"msg":"token","audit":true,"grant_type":"authorization_code"`,
		`"grant_type":"refresh_token"`,
		`"msg":"revoke"`,
		`"msg":"client_auth_failed"`,
		`"msg":"code_replayed"`,
		`"msg":"refresh_reused"`,
	} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s:\n%s", want, audit)
		}
	}
	if got := strings.Count(audit, `"msg":"login",`); got != 2 {
		t.Errorf("audit has %d login lines, want 2", got)
	}

	for _, tt := range []struct {
		series string
		want   float64
	}{
		{`fedbroker_sign_ins_total{connector="local",outcome="success"}`, 2},
		{`fedbroker_sign_ins_total{connector="local",outcome="bad_password"}`, 1},
		{`fedbroker_tokens_issued_total{client_id="app",grant_type="authorization_code"}`, 1},
		{`fedbroker_tokens_issued_total{client_id="app",grant_type="refresh_token"}`, 1},
		{`fedbroker_tokens_issued_total{client_id="svc",grant_type="authorization_code"}`, 1},
		{`fedbroker_tokens_issued_total{client_id="svc",grant_type="refresh_token"}`, 1},
		{`fedbroker_authorize_requests_total{client_id="svc"}`, 1},
	} {
		if got := metricValue(t, a, tt.series); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.series, got, tt.want)
		}
	}
}

func TestAdminMetrics(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	a := newAdminAPI(t, h, nil)
	if r := a.call("192.0.2.50:1", "", http.MethodGet, "/metrics", ""); r.status != http.StatusUnauthorized {
		t.Errorf("/metrics without a token = %d, want 401", r.status)
	}
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	if tr := h.redeem(code, p); tr.status != http.StatusOK {
		t.Fatalf("redeem = %d", tr.status)
	}
	for _, tt := range []struct {
		series string
		want   float64
	}{
		{`fedbroker_sign_ins_total{connector="local",outcome="success"}`, 1},
		{`fedbroker_tokens_issued_total{client_id="app",grant_type="authorization_code"}`, 1},
		{`fedbroker_authorize_requests_total{client_id="app"}`, 1},
		{`fedbroker_http_request_duration_seconds_count{code="200",route="/token"}`, 1},
	} {
		if got := metricValue(t, a, tt.series); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.series, got, tt.want)
		}
	}
	r := a.do(http.MethodGet, "/metrics", "")
	for _, name := range []string{"fedbroker_storage_errors_total", "fedbroker_signing_key_rotations_total", "go_goroutines"} {
		if !strings.Contains(r.body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// metricValue scrapes /metrics and returns the value of one series (its
// name with labels exactly as exposed), or -1 when absent.
func metricValue(t *testing.T, a *adminAPI, series string) float64 {
	t.Helper()
	r := a.do(http.MethodGet, "/metrics", "")
	if r.status != http.StatusOK {
		t.Fatalf("/metrics = %d", r.status)
	}
	for line := range strings.SplitSeq(r.body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if err := json.Unmarshal([]byte(strings.TrimSpace(rest)), &v); err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	return -1
}
