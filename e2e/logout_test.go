package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// backchannelApp is an application's back-channel logout endpoint that
// answers 503 until ok is set, and records the tokens it accepted.
type backchannelApp struct {
	srv *httptest.Server

	mu       sync.Mutex
	ok       bool
	attempts int
	accepted []string
}

func newBackchannelApp(t *testing.T) *backchannelApp {
	a := &backchannelApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		a.mu.Lock()
		defer a.mu.Unlock()
		a.attempts++
		if !a.ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		a.accepted = append(a.accepted, r.PostForm.Get("logout_token"))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *backchannelApp) state() (attempts int, accepted []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.attempts, append([]string(nil), a.accepted...)
}

// TestBackchannelLogoutSurvivesReplicaDeath: alice signs out while the
// application's back-channel endpoint is down; the one replica that queued
// the delivery tries, fails and is SIGKILLed. A replica started afterwards
// on the same Redis delivers the logout token (for alice's session) once
// the application is back: pending deliveries live in storage, not in a
// process.
func TestBackchannelLogoutSurvivesReplicaDeath(t *testing.T) {
	rs := redistest.StartServer(t)
	app := newBackchannelApp(t)
	cl := startClusterWith(t, 1, brokerConfig{RedisURL: rs.URL(), BackchannelLogoutURI: app.srv.URL + "/bc"})

	var ls loginSteps
	if err := ls.authorize(cl.Issuer); err != nil {
		t.Fatal(err)
	}
	code, err := ls.submit(alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := redeem(cl.Issuer, code, ls.p)
	if err != nil || tr.status != http.StatusOK {
		t.Fatalf("redeem: %v %+v", err, tr)
	}
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, cl.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: "app"}).Verify(ctx, tr.IDToken)
	if err != nil {
		t.Fatal(err)
	}
	var idc struct {
		SID string `json:"sid"`
	}
	if err := idt.Claims(&idc); err != nil || idc.SID == "" {
		t.Fatalf("ID token sid: %v", err)
	}

	lo, err := ls.b.get(cl.Issuer + "/logout?" + url.Values{"id_token_hint": {tr.IDToken}}.Encode())
	if err != nil || lo.status != http.StatusOK || !strings.Contains(lo.body, "signed-out") {
		t.Fatalf("logout: %v %d", err, lo.status)
	}
	if err := eventually(10*time.Second, func() error {
		if n, _ := app.state(); n == 0 {
			return fmt.Errorf("no delivery attempt yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cl.Replicas[0].Kill()

	app.mu.Lock()
	app.ok = true
	app.mu.Unlock()
	cfg := cl.Replicas[0].cfg
	cfg.Addr = ""
	next := newReplica(t, cfg)
	if err := next.startReady(30 * time.Second); err != nil {
		t.Fatalf("second replica: %v\n%s", err, next.log())
	}
	cl.Replicas = append(cl.Replicas, next)
	cl.use(1)
	// The first attempt's lease (timeout + 5s) and backoff must pass.
	if err := eventually(30*time.Second, func() error {
		if _, acc := app.state(); len(acc) == 0 {
			return fmt.Errorf("no logout token delivered")
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\nfirst replica:\n%s\nsecond replica:\n%s", err, cl.Replicas[0].log(), next.log())
	}
	_, acc := app.state()
	tok, err := provider.Verifier(&oidc.Config{ClientID: "app"}).Verify(ctx, acc[0])
	if err != nil {
		t.Fatalf("delivered logout token does not verify: %v", err)
	}
	var lc struct {
		SID    string                     `json:"sid"`
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := tok.Claims(&lc); err != nil || lc.SID != idc.SID || lc.Events["http://schemas.openid.net/event/backchannel-logout"] == nil || tok.Subject != idt.Subject {
		t.Errorf("logout token sid %q sub %q events %v, want sid %q sub %q (%v)", lc.SID, tok.Subject, lc.Events, idc.SID, idt.Subject, err)
	}
	if r, err := refresh(cl.Issuer, tr.RefreshToken); err != nil || r.status != http.StatusBadRequest {
		t.Errorf("refresh after logout: %v %d, want 400", err, r.status)
	}
}
