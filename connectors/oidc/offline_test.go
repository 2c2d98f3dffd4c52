package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// logBuffer is a slog handler's output, safe for concurrent writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the JSON log records with message msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// openLogged opens cfg with a clock and a JSON logger into the returned buffer.
func openLogged(t *testing.T, cfg Config, clk *clock) (*Connector, *logBuffer) {
	t.Helper()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("Validate() = %v", errs)
	}
	logs := &logBuffer{}
	opts := connectors.Options{HTTPClient: &http.Client{}, CallbackURL: callbackURL, Now: clk.Now,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	impl, err := cfg.Open(context.Background(), "strict", opts)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	return impl.(*Connector), logs
}

// strictIdP is an upstream that drops offline_access without
// prompt=consent, and a config whose prompt (login) keeps it from
// consenting: sign-ins come back without a refresh token.
func strictIdP(t *testing.T, opts testidp.Options) (*testidp.IdP, Config) {
	idp := newIdP(t, opts)
	idp.SetStrictOfflineAccess(true)
	cfg := baseConfig(idp)
	cfg.Prompt = ptr("login")
	return idp, cfg
}

func refreshTokenOf(t *testing.T, id connectors.Identity) string {
	t.Helper()
	if len(id.ConnectorData) == 0 {
		return ""
	}
	var d connectorData
	if err := json.Unmarshal(id.ConnectorData, &d); err != nil {
		t.Fatalf("ConnectorData %q: %v", id.ConnectorData, err)
	}
	return d.RefreshToken
}

// TestMissingRefreshTokenLogged: a sign-in that asked for upstream refresh
// and got no refresh token is logged at WARN, once per interval however
// many sign-ins there are, and reported in the connector's status.
func TestMissingRefreshTokenLogged(t *testing.T) {
	_, cfg := strictIdP(t, testidp.Options{})
	clk := &clock{}
	c, logs := openLogged(t, cfg, clk)
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() before any sign-in = %q", w)
	}
	for range 5 {
		id, err := login(t, c)
		if err != nil {
			t.Fatalf("login error = %v", err)
		}
		if rt := refreshTokenOf(t, id); rt != "" {
			t.Fatalf("the strict upstream issued a refresh token %q", rt)
		}
	}
	recs := logs.records(t, missingRefreshLog)
	if len(recs) != 1 {
		t.Fatalf("%d WARN records %q after 5 sign-ins, want 1", len(recs), missingRefreshLog)
	}
	if recs[0]["level"] != "WARN" || recs[0]["connector"] != "strict" || recs[0]["policy"] != OfflineMissingCap {
		t.Errorf("log record = %v, want WARN for connector strict with policy cap_session", recs[0])
	}
	st := c.OfflineAccessStatus()
	if !st.Requested || st.Missing != 5 || st.Kept != 0 || st.Policy != OfflineMissingCap || st.LastMissing.IsZero() {
		t.Errorf("OfflineAccessStatus() = %+v, want 5 missing under cap_session", st)
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "no refresh token") || !strings.Contains(w[0], "5 sign-ins") {
		t.Errorf("Warnings() = %q, want one about 5 sign-ins without a refresh token", w)
	}

	clk.Advance(missingRefreshLogInterval + time.Second)
	if _, err := login(t, c); err != nil {
		t.Fatal(err)
	}
	recs = logs.records(t, missingRefreshLog)
	if len(recs) != 2 {
		t.Fatalf("%d WARN records after the interval, want 2", len(recs))
	}
	if got := recs[1]["sign_ins"]; got != float64(5) {
		t.Errorf("second record sign_ins = %v, want 5 (4 not logged + this one)", got)
	}
	clk.Advance(missingRefreshWarnFor + time.Second)
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() a day after the last such sign-in = %q, want none", w)
	}
}

// TestMissingRefreshTokenRefuse: under refuse_refresh the broker's refresh
// of such a sign-in is refused (the connector refuses it upstream-side).
func TestMissingRefreshTokenRefuse(t *testing.T) {
	_, cfg := strictIdP(t, testidp.Options{})
	cfg.OfflineAccessMissing = OfflineMissingRefuse
	c := open(t, cfg, nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(id.ConnectorData) == 0 {
		t.Fatal("ConnectorData empty: the broker would refresh without asking")
	}
	ue := wantCode(t, func() error {
		_, err := c.Refresh(context.Background(), connectors.Scopes{OfflineAccess: true}, connectors.Identity{Subject: id.Subject, ConnectorData: id.ConnectorData})
		return err
	}(), CodeRefreshDenied)
	if !strings.Contains(ue.Message, "sign in again") {
		t.Errorf("Message = %q", ue.Message)
	}
	if lim := refreshLimitOf(id); !lim.Refuse || !lim.Until.IsZero() {
		t.Errorf("refreshLimitOf() = %+v, want Refuse", lim)
	}
}

// TestMissingRefreshTokenCap: under cap_session (the default) the broker
// may refresh, with the claims of the sign-in, until the upstream ID
// token's exp, and not after.
func TestMissingRefreshTokenCap(t *testing.T) {
	_, cfg := strictIdP(t, testidp.Options{TokenLifetime: time.Hour})
	clk := &clock{}
	c, _ := openLogged(t, cfg, clk)
	id, err := login(t, c)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Unix(int64(id.Claims["exp"].(float64)), 0)
	if lim := refreshLimitOf(id); lim.Refuse || !lim.Until.Equal(exp) {
		t.Errorf("refreshLimitOf() = %+v, want Until %s", lim, exp)
	}
	ctx := context.Background()
	stored := connectors.Identity{Subject: id.Subject, ConnectorData: id.ConnectorData} // what the broker hands back
	clk.Advance(50 * time.Minute)
	got, err := c.Refresh(ctx, connectors.Scopes{OfflineAccess: true}, stored)
	if err != nil {
		t.Fatalf("Refresh() within the upstream session error = %v", err)
	}
	if got.Subject != "u1" || got.Claims["email"] != "ada@example.com" || string(got.ConnectorData) != string(id.ConnectorData) {
		t.Errorf("Refresh() = %+v, want the sign-in's claims and data", got)
	}
	clk.Advance(11 * time.Minute)
	_, err = c.Refresh(ctx, connectors.Scopes{OfflineAccess: true}, stored)
	wantCode(t, err, CodeRefreshDenied)
}

// TestMissingRefreshTokenCapLifetime: upstream_session_lifetime replaces
// the ID token's exp, counted from the upstream auth_time when there is one.
func TestMissingRefreshTokenCapLifetime(t *testing.T) {
	for _, tt := range []struct {
		name     string
		authTime time.Duration // before now; 0: no auth_time claim
		okAfter  time.Duration
		badAfter time.Duration
	}{
		{"from the sign-in", 0, 7*time.Hour + 59*time.Minute, 8*time.Hour + time.Minute},
		{"from auth_time", 6 * time.Hour, time.Hour + 59*time.Minute, 2*time.Hour + time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp, cfg := strictIdP(t, testidp.Options{TokenLifetime: time.Hour})
			cfg.UpstreamSessionLifetime = 8 * time.Hour
			if tt.authTime != 0 {
				idp.SetTamper(testidp.Tamper{ExtraClaims: map[string]any{"auth_time": time.Now().Add(-tt.authTime).Unix()}})
			}
			clk := &clock{}
			c, _ := openLogged(t, cfg, clk)
			id, err := login(t, c)
			if err != nil {
				t.Fatal(err)
			}
			stored := connectors.Identity{Subject: id.Subject, ConnectorData: id.ConnectorData}
			clk.Advance(tt.okAfter)
			if _, err := c.Refresh(context.Background(), connectors.Scopes{}, stored); err != nil {
				t.Fatalf("Refresh() after %s error = %v", tt.okAfter, err)
			}
			clk.Advance(tt.badAfter - tt.okAfter)
			_, err = c.Refresh(context.Background(), connectors.Scopes{}, stored)
			wantCode(t, err, CodeRefreshDenied)
		})
	}
}

// TestRefreshTokenKept: an upstream that issues refresh tokens leaves no
// limit and no warning.
func TestRefreshTokenKept(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if lim := refreshLimitOf(id); lim.Refuse || !lim.Until.IsZero() {
		t.Errorf("refreshLimitOf() = %+v, want none", lim)
	}
	if st := c.OfflineAccessStatus(); st.Kept != 1 || st.Missing != 0 {
		t.Errorf("OfflineAccessStatus() = %+v, want 1 kept", st)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() = %q", w)
	}
	// offline_access off: nothing is expected, nothing limited.
	cfg := baseConfig(idp)
	cfg.OfflineAccess = ptr(false)
	c = open(t, cfg, nil)
	id, err = login(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if id.ConnectorData != nil || len(c.Warnings()) != 0 {
		t.Errorf("offline_access off: ConnectorData %s, Warnings %q; want none", id.ConnectorData, c.Warnings())
	}
}

// TestOfflineScopeNotListed: an upstream whose discovery does not list
// offline_access is not asked for it (nor for consent); the connector warns,
// and the sign-ins, which bring no refresh token, fall under the policy.
func TestOfflineScopeNotListed(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	idp.SetScopesSupported([]string{"openid", "profile", "email"})
	c := open(t, baseConfig(idp), nil)
	id, err := login(t, c)
	if err != nil {
		t.Fatal(err)
	}
	q := idp.LastAuthorize()
	if hasScope(q.Get("scope"), "offline_access") || q.Has("prompt") {
		t.Errorf("authorize scope %q prompt %q, want neither offline_access nor a prompt", q.Get("scope"), q["prompt"])
	}
	if lim := refreshLimitOf(id); lim.Until.IsZero() {
		t.Errorf("refreshLimitOf() = %+v, want the cap_session limit", lim)
	}
	w := c.Warnings()
	if len(w) != 2 || !strings.Contains(w[0], "does not list the offline_access scope") {
		t.Errorf("Warnings() = %q, want the unlisted scope and the missing refresh token", w)
	}
	if st := c.OfflineAccessStatus(); !st.Requested || st.ScopeRequested {
		t.Errorf("OfflineAccessStatus() = %+v, want requested but no scope sent", st)
	}
}
