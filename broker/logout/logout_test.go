package logout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/logout"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
	redisstore "github.com/fedbroker/fedbroker/broker/storage/redis"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/verify"
)

// roundTripFunc is an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// lockedBuffer is an io.Writer safe for the delivery goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// app is an application's backchannel_logout_uri: it verifies every
// logout token it gets with verify/ (as the broker's client), records it,
// and answers with the next scripted status (200 when none is left).
type app struct {
	t        *testing.T
	clientID string
	srv      *httptest.Server
	v        *verify.Verifier
	clock    func() time.Time

	mu       sync.Mutex
	statuses []int
	claims   []*verify.LogoutClaims
	at       []time.Time // the broker's clock at each request
	// hold, when set, is waited on before answering.
	hold chan struct{}
	// redirect, when set, answers every request with a 307 to it.
	redirect string
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := a.t
	a.mu.Lock()
	to := a.redirect
	a.mu.Unlock()
	if to != "" {
		http.Redirect(w, r, to, http.StatusTemporaryRedirect)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("%s: %s with Content-Type %q, want a POSTed form", a.clientID, r.Method, r.Header.Get("Content-Type"))
	}
	if err := r.ParseForm(); err != nil {
		t.Errorf("%s: form: %v", a.clientID, err)
	}
	tok := r.PostForm.Get("logout_token")
	if len(r.PostForm) != 1 || tok == "" {
		t.Errorf("%s: form %v, want only logout_token", a.clientID, r.PostForm)
	}
	// The header as the broker wrote it, then every check of an RP.
	if jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA}); err != nil {
		t.Errorf("%s: logout token: %v", a.clientID, err)
	} else if typ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]; typ != "logout+jwt" {
		t.Errorf("%s: typ %v, want logout+jwt", a.clientID, typ)
	}
	c, err := a.v.VerifyLogoutToken(r.Context(), tok)
	if err != nil {
		t.Errorf("%s: VerifyLogoutToken: %v", a.clientID, err)
	}
	a.mu.Lock()
	a.claims = append(a.claims, c)
	a.at = append(a.at, a.clock())
	status := http.StatusOK
	if len(a.statuses) > 0 {
		status, a.statuses = a.statuses[0], a.statuses[1:]
	}
	hold := a.hold
	a.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}
	w.WriteHeader(status)
}

func (a *app) script(statuses ...int) {
	a.mu.Lock()
	a.statuses = statuses
	a.mu.Unlock()
}

// received returns the verified claims of the tokens received so far.
func (a *app) received() []*verify.LogoutClaims {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*verify.LogoutClaims(nil), a.claims...)
}

func (a *app) times() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.at...)
}

// env is a compiled configuration with three clients: svc and svc2 with a
// backchannel_logout_uri each (their apps), svc2 and app with a
// frontchannel_logout_uri (svc2's asking for iss and sid), app with no
// backchannel_logout_uri.
type env struct {
	f       *runtimetest.Fixture
	tokens  *tokens.Authority
	apps    map[string]*app
	reg     *prometheus.Registry
	metrics *observe.Metrics
	audit   *lockedBuffer
	rt      atomic.Pointer[runtime.Runtime]
}

const (
	frontSvc2 = "https://svc2.example.com/front?tenant=acme"
	frontApp  = "http://127.0.0.1:9999/front"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{apps: map[string]*app{}, audit: &lockedBuffer{}}
	for _, id := range []string{"svc", "svc2"} {
		a := &app{t: t, clientID: id}
		a.srv = httptest.NewServer(a)
		t.Cleanup(a.srv.Close)
		e.apps[id] = a
	}
	e.f = runtimetest.New(t, "", func(c *config.Config) {
		var svc2 config.Client
		for i := range c.Clients {
			switch c.Clients[i].ID {
			case "svc":
				c.Clients[i].BackchannelLogoutURI = e.apps["svc"].srv.URL + "/backchannel"
				svc2 = c.Clients[i]
			case "app":
				c.Clients[i].FrontchannelLogoutURI = frontApp
			}
		}
		svc2.ID = "svc2"
		svc2.BackchannelLogoutURI = e.apps["svc2"].srv.URL + "/bc?x=1"
		svc2.BackchannelLogoutSessionRequired = true
		svc2.FrontchannelLogoutURI = frontSvc2
		svc2.FrontchannelLogoutSessionRequired = true
		c.Clients = append(c.Clients, svc2)
	})
	e.rt.Store(e.f.Runtime)
	e.tokens = tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: e.f.Keys, Store: e.f.Store, Now: e.f.Clock.Now})
	e.reg = prometheus.NewRegistry()
	e.metrics = observe.NewMetrics(e.reg)
	// Each app verifies with verify/, as a real application would: the
	// broker's discovery and JWKS are served from the fixture's keys.
	discovery := http.NewServeMux()
	discovery.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": runtimetest.Issuer, "jwks_uri": runtimetest.Issuer + "/jwks"})
	})
	discovery.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		body, _ := e.f.Keys.JWKS()
		_, _ = w.Write(body)
	})
	broker := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		w := httptest.NewRecorder()
		discovery.ServeHTTP(w, r)
		return w.Result(), nil
	})}
	for id, a := range e.apps {
		v, err := verify.New(t.Context(), runtimetest.Issuer, id, verify.WithHTTPClient(broker), verify.WithClock(e.f.Clock.Now), verify.WithLeeway(0))
		if err != nil {
			t.Fatalf("verify.New: %v", err)
		}
		t.Cleanup(v.Close)
		a.v, a.clock = v, e.f.Clock.Now
	}
	return e
}

// service returns a Service on store (the fixture's when nil).
func (e *env) service(store storage.Storage, httpClient *http.Client, s logout.Settings) *logout.Service {
	if store == nil {
		store = e.f.Store
	}
	return logout.New(logout.Deps{
		Store: store, Tokens: e.tokens, Runtime: e.rt.Load, Metrics: e.metrics,
		Audit: observe.NewAudit(slog.New(slog.NewJSONHandler(e.audit, nil))),
		HTTP:  httpClient, Now: e.f.Clock.Now,
	}, s)
}

// session stores a live session of subject signed into clients.
func (e *env) session(t *testing.T, store storage.Storage, subject, sid string, clients ...string) storage.Session {
	t.Helper()
	if store == nil {
		store = e.f.Store
	}
	now := e.f.Clock.Now()
	se := storage.Session{
		ID: "cookie-" + sid, PublicID: sid, Subject: subject, ConnectorID: "local",
		Grant:    storage.Grant{Subject: subject, SessionID: sid, ConnectorID: "local", Scopes: []string{"openid"}},
		AuthTime: now, Expiry: now.Add(time.Hour), Created: now, Clients: clients, LastUsed: now,
	}
	if err := store.CreateSession(context.Background(), se); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return se
}

// counter returns the value of a series of the env's metrics.
func (e *env) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func pending(t *testing.T, store storage.Storage) int {
	t.Helper()
	n, err := store.PendingDeliveries(context.Background())
	if err != nil {
		t.Fatalf("PendingDeliveries: %v", err)
	}
	return n
}

func deliverDue(t *testing.T, s *logout.Service) int {
	t.Helper()
	n, err := s.DeliverDue(context.Background())
	if err != nil {
		t.Fatalf("DeliverDue: %v", err)
	}
	return n
}

func sids(cs []*verify.LogoutClaims) map[string]int {
	out := map[string]int{}
	for _, c := range cs {
		if c != nil {
			out[c.SessionID]++
		}
	}
	return out
}

func TestEndQueuesOnePerClientAndSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.service(nil, nil, logout.Settings{})
	// alice: two sessions; the first signed into all three clients (svc
	// twice over), the second only into app, which has no back-channel
	// URI, and a client since removed. bob: one session into svc.
	e.session(t, nil, "alice", "sid-a1", "svc", "app", "svc2", "svc")
	e.session(t, nil, "alice", "sid-a2", "app", "gone")
	e.session(t, nil, "bob", "sid-b1", "svc")
	now := e.f.Clock.Now()
	for _, f := range []struct{ id, sub, sid string }{{"fam-a1", "alice", "sid-a1"}, {"fam-a2", "alice", "sid-a2"}, {"fam-b1", "bob", "sid-b1"}} {
		g := storage.Grant{ClientID: "svc", Subject: f.sub, SessionID: f.sid}
		if err := e.f.Store.CreateRefresh(ctx, storage.RefreshFamily{ID: f.id, Grant: g, CreatedAt: now, LastUsed: now,
			IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(time.Hour)}, f.id+".secret"); err != nil {
			t.Fatal(err)
		}
	}
	// Access tokens of each session.
	svc := e.f.Client(t, "svc")
	at := map[string]string{}
	for _, sid := range []string{"sid-a1", "sid-a2", "sid-b1"} {
		sub := "alice"
		if sid == "sid-b1" {
			sub = "bob"
		}
		tok, _, err := e.tokens.AccessToken(svc, storage.Grant{ClientID: "svc", Subject: sub, SessionID: sid, Scopes: []string{"openid"}}, svc.Audiences, now)
		if err != nil {
			t.Fatal(err)
		}
		at[sid] = tok
	}

	// Someone else's sid ends nothing.
	got, err := s.End(ctx, "alice", "sid-b1", "rp")
	if err != nil || len(got.Sessions) != 0 || got.Queued != 0 {
		t.Fatalf("End(alice, bob's sid) = %+v, %v; want nothing ended", got, err)
	}
	if _, err := e.tokens.CheckAccessToken(ctx, at["sid-b1"]); err != nil {
		t.Fatalf("End(alice, bob's sid) revoked bob's access token: %v", err)
	}

	got, err = s.End(ctx, "alice", "", "admin")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Sessions) != 2 || got.Families != 2 || got.Queued != 2 || got.Unqueued != 0 {
		t.Fatalf("End(alice) = %+v; want 2 sessions, 2 families, 2 deliveries (svc and svc2 of sid-a1)", got)
	}
	if n := pending(t, e.f.Store); n != 2 {
		t.Fatalf("pending deliveries = %d, want 2", n)
	}
	// Again: nothing left to end.
	if again, err := s.End(ctx, "alice", "", "admin"); err != nil || len(again.Sessions) != 0 || again.Queued != 0 {
		t.Errorf("second End(alice) = %+v, %v; want nothing", again, err)
	}

	// The access tokens of the ended sessions are refused, bob's not.
	for sid, tok := range at {
		_, err := e.tokens.CheckAccessToken(ctx, tok)
		if sid == "sid-b1" {
			if err != nil {
				t.Errorf("bob's access token refused: %v", err)
			}
		} else if !errors.Is(err, tokens.ErrInvalid) {
			t.Errorf("access token of ended session %s: %v, want ErrInvalid", sid, err)
		}
	}
	if bob, err := e.f.Store.ListSessions(ctx, "bob"); err != nil || len(bob) != 1 {
		t.Errorf("bob's sessions = %v, %v; want his one", bob, err)
	}

	if n := deliverDue(t, s); n != 2 {
		t.Fatalf("DeliverDue claimed %d, want 2", n)
	}
	if got := sids(e.apps["svc"].received()); len(got) != 1 || got["sid-a1"] != 1 {
		t.Errorf("svc received %v, want one token for sid-a1", got)
	}
	if got := sids(e.apps["svc2"].received()); len(got) != 1 || got["sid-a1"] != 1 {
		t.Errorf("svc2 received %v, want one token for sid-a1", got)
	}
	for id, a := range e.apps {
		for _, c := range a.received() {
			if c == nil {
				continue
			}
			if c.Issuer != runtimetest.Issuer || c.Subject != "alice" || len(c.Audience) != 1 || c.Audience[0] != id ||
				c.Raw["events"] == nil || c.Raw["nonce"] != nil || c.JTI == "" {
				t.Errorf("%s received %+v", id, c)
			}
		}
	}
	if n := pending(t, e.f.Store); n != 0 {
		t.Errorf("pending after delivery = %d, want 0", n)
	}
	if v := e.metric(t, "fedbroker_backchannel_logout_total", map[string]string{"client_id": "svc", "outcome": "delivered"}); v != 1 {
		t.Errorf("delivered{svc} = %v, want 1", v)
	}
	if v := e.metric(t, "fedbroker_backchannel_logout_pending", nil); v != 0 {
		t.Errorf("pending gauge = %v, want 0", v)
	}
	audit := e.audit.String()
	for _, want := range []string{`"msg":"sessions_ended"`, `"by":"admin"`, `"msg":"backchannel_logout_delivered"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s:\n%s", want, audit)
		}
	}
	if !strings.Contains(audit, `"sids":["sid-a1","sid-a2"]`) && !strings.Contains(audit, `"sids":["sid-a2","sid-a1"]`) {
		t.Errorf("audit log lacks the ended sids:\n%s", audit)
	}
	if strings.Contains(audit, "eyJ") {
		t.Errorf("audit log carries a token:\n%s", audit)
	}
}

func TestEndOneSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.service(nil, nil, logout.Settings{})
	e.session(t, nil, "alice", "sid-1", "svc")
	e.session(t, nil, "alice", "sid-2", "svc")
	got, err := s.End(ctx, "alice", "sid-2", "rp")
	if err != nil || len(got.Sessions) != 1 || got.Sessions[0].PublicID != "sid-2" || got.Queued != 1 {
		t.Fatalf("End(sid-2) = %+v, %v", got, err)
	}
	deliverDue(t, s)
	if got := sids(e.apps["svc"].received()); len(got) != 1 || got["sid-2"] != 1 {
		t.Errorf("svc received %v, want sid-2 only", got)
	}
	if left, _ := e.f.Store.ListSessions(ctx, "alice"); len(left) != 1 || left[0].PublicID != "sid-1" {
		t.Errorf("sessions left = %+v, want sid-1", left)
	}
}

func TestRetryWithBackoffThenDelivered(t *testing.T) {
	e := newEnv(t)
	s := e.service(nil, nil, logout.Settings{})
	a := e.apps["svc"]
	a.script(500, 503, 200)
	e.session(t, nil, "alice", "sid-1", "svc")
	t0 := e.f.Clock.Now()
	if _, err := s.End(context.Background(), "alice", "sid-1", "rp"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance time.Duration
		claimed int
	}{
		{0, 1},                      // attempt 1 at t0: 500, next at +1s
		{0, 0},                      // not due
		{999 * time.Millisecond, 0}, // not yet
		{time.Millisecond, 1},       // attempt 2 at +1s: 503, next at +3s
		{time.Second, 0},            // +2s
		{time.Second - time.Nanosecond, 0},
		{time.Nanosecond, 1}, // attempt 3 at +3s: 200
		{time.Hour, 0},       // delivered: nothing left
	}
	for i, st := range steps {
		e.f.Clock.Advance(st.advance)
		if n := deliverDue(t, s); n != st.claimed {
			t.Fatalf("step %d (t0+%s): claimed %d, want %d", i, e.f.Clock.Now().Sub(t0), n, st.claimed)
		}
		if i == 1 {
			if v := e.metric(t, "fedbroker_backchannel_logout_pending", nil); v != 1 {
				t.Errorf("pending gauge while retrying = %v, want 1", v)
			}
		}
	}
	times := a.times()
	want := []time.Duration{0, time.Second, 3 * time.Second}
	if len(times) != len(want) {
		t.Fatalf("attempts at %v, want %d attempts", times, len(want))
	}
	for i, w := range want {
		if d := times[i].Sub(t0); d != w {
			t.Errorf("attempt %d at t0+%s, want t0+%s", i+1, d, w)
		}
	}
	jtis := map[string]bool{}
	for _, c := range a.received() {
		if c == nil || jtis[c.JTI] {
			t.Errorf("attempt without a fresh valid token: %+v", c)
			continue
		}
		jtis[c.JTI] = true
	}
	if n := pending(t, e.f.Store); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
	for outcome, want := range map[string]float64{"retry": 2, "delivered": 1, "failed": 0} {
		if v := e.metric(t, "fedbroker_backchannel_logout_total", map[string]string{"client_id": "svc", "outcome": outcome}); v != want {
			t.Errorf("outcome %s = %v, want %v", outcome, v, want)
		}
	}
}

func TestRefusedGivesUpAtOnce(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound, http.StatusFound} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			e := newEnv(t)
			s := e.service(nil, nil, logout.Settings{})
			a := e.apps["svc"]
			a.script(status)
			e.session(t, nil, "alice", "sid-1", "svc")
			if _, err := s.End(context.Background(), "alice", "", "rp"); err != nil {
				t.Fatal(err)
			}
			deliverDue(t, s)
			if n := pending(t, e.f.Store); n != 0 {
				t.Errorf("pending after %d = %d, want 0 (given up)", status, n)
			}
			e.f.Clock.Advance(time.Hour)
			deliverDue(t, s)
			if n := len(a.received()); n != 1 {
				t.Errorf("attempts = %d, want 1", n)
			}
			if v := e.metric(t, "fedbroker_backchannel_logout_total", map[string]string{"client_id": "svc", "outcome": "failed"}); v != 1 {
				t.Errorf("failed = %v, want 1", v)
			}
			if audit := e.audit.String(); !strings.Contains(audit, `"msg":"backchannel_logout_failed"`) || !strings.Contains(audit, fmt.Sprint(status)) {
				t.Errorf("audit log lacks the failure with its status:\n%s", audit)
			}
		})
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	e := newEnv(t)
	var followed atomic.Bool
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Store(true) }))
	t.Cleanup(target.Close)
	// svc's registered back-channel URI answers with a redirect: the
	// logout token goes to the registered URI and nowhere else.
	a := e.apps["svc"]
	a.mu.Lock()
	a.redirect = target.URL
	a.mu.Unlock()
	s := e.service(nil, &http.Client{}, logout.Settings{})
	e.session(t, nil, "alice", "sid-1", "svc")
	if _, err := s.End(context.Background(), "alice", "", "rp"); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, e.f.Store); n != 1 {
		t.Fatalf("pending = %d, want the delivery to svc", n)
	}
	deliverDue(t, s)
	if followed.Load() {
		t.Error("the redirect was followed")
	}
	if n := pending(t, e.f.Store); n != 0 {
		t.Errorf("pending = %d, want 0 (given up)", n)
	}
	if audit := e.audit.String(); !strings.Contains(audit, "redirect (status 307, not followed)") {
		t.Errorf("audit lacks the given-up redirect:\n%s", audit)
	}
}

func TestGivesUpAfterRetryFor(t *testing.T) {
	e := newEnv(t)
	s := e.service(nil, nil, logout.Settings{})
	s.Configure(logout.Settings{RetryFor: 10 * time.Second})
	a := e.apps["svc"]
	a.script(503, 503, 503, 503, 503, 503, 503, 503)
	e.session(t, nil, "alice", "sid-1", "svc")
	t0 := e.f.Clock.Now()
	if _, err := s.End(context.Background(), "alice", "", "rp"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 60 && pending(t, e.f.Store) > 0; i++ {
		deliverDue(t, s)
		e.f.Clock.Advance(time.Second)
	}
	if n := pending(t, e.f.Store); n != 0 {
		t.Fatalf("pending = %d, want the delivery dropped", n)
	}
	// 1s, 2s, 4s, 8s apart; the attempt at +15s is past RetryFor.
	want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second}
	times := a.times()
	if len(times) != len(want) {
		t.Fatalf("attempts at %v, want %v after t0", times, want)
	}
	for i, w := range want {
		if d := times[i].Sub(t0); d != w {
			t.Errorf("attempt %d at t0+%s, want t0+%s", i+1, d, w)
		}
	}
	if v := e.metric(t, "fedbroker_backchannel_logout_total", map[string]string{"client_id": "svc", "outcome": "failed"}); v != 1 {
		t.Errorf("failed = %v, want 1", v)
	}
	if v := e.metric(t, "fedbroker_backchannel_logout_total", map[string]string{"client_id": "svc", "outcome": "retry"}); v != 4 {
		t.Errorf("retry = %v, want 4", v)
	}
	if audit := e.audit.String(); !strings.Contains(audit, `"msg":"backchannel_logout_failed"`) || !strings.Contains(audit, "status 503") {
		t.Errorf("audit log lacks the failure:\n%s", audit)
	}
}

func TestTimeoutIsRetried(t *testing.T) {
	e := newEnv(t)
	a := e.apps["svc"]
	a.hold = make(chan struct{})
	t.Cleanup(func() { close(a.hold) })
	s := e.service(nil, nil, logout.Settings{Timeout: 100 * time.Millisecond})
	e.session(t, nil, "alice", "sid-1", "svc")
	if _, err := s.End(context.Background(), "alice", "", "rp"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deliverDue(t, s)
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("an attempt took %s with a 100ms timeout", el)
	}
	if n := pending(t, e.f.Store); n != 1 {
		t.Fatalf("pending = %d, want 1 (to retry)", n)
	}
	if v := e.metric(t, "fedbroker_backchannel_logout_total", map[string]string{"client_id": "svc", "outcome": "retry"}); v != 1 {
		t.Errorf("retry = %v, want 1", v)
	}
	ds, err := e.f.Store.ClaimDeliveries(context.Background(), e.f.Clock.Now().Add(time.Second), time.Minute, 10)
	if err != nil || len(ds) != 1 || ds[0].LastError != "timeout" {
		t.Errorf("stored delivery = %+v, %v; want LastError timeout", ds, err)
	}
}

func TestClientGoneIsDropped(t *testing.T) {
	e := newEnv(t)
	s := e.service(nil, nil, logout.Settings{})
	e.session(t, nil, "alice", "sid-1", "svc")
	if _, err := s.End(context.Background(), "alice", "", "rp"); err != nil {
		t.Fatal(err)
	}
	// A reload removed svc's backchannel_logout_uri.
	other := runtimetest.New(t, "", nil)
	e.rt.Store(other.Runtime)
	deliverDue(t, s)
	if n := len(e.apps["svc"].received()); n != 0 {
		t.Errorf("delivered %d to a client without a backchannel_logout_uri", n)
	}
	if n := pending(t, e.f.Store); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
	if v := e.metric(t, "fedbroker_backchannel_logout_total", map[string]string{"client_id": "svc", "outcome": "dropped"}); v != 1 {
		t.Errorf("dropped = %v, want 1", v)
	}
}

func TestFrontChannel(t *testing.T) {
	e := newEnv(t)
	s := e.service(nil, nil, logout.Settings{})
	sessions := []storage.Session{
		{PublicID: "sid-1", Subject: "alice", Clients: []string{"svc", "app", "svc2", "gone"}},
		{PublicID: "sid/2", Subject: "alice", Clients: []string{"app", "svc2"}},
	}
	got := s.FrontChannel(e.f.Runtime, sessions)
	iss := url.QueryEscape(runtimetest.Issuer)
	want := []string{
		frontApp,
		frontSvc2 + "&iss=" + iss + "&sid=sid-1",
		frontSvc2 + "&iss=" + iss + "&sid=sid%2F2",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("FrontChannel =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, u := range got[1:] {
		p, err := url.Parse(u)
		if err != nil || p.Query().Get("iss") != runtimetest.Issuer || p.Query().Get("tenant") != "acme" || p.Query().Get("sid") == "" {
			t.Errorf("%s: query %v, want tenant, iss and sid", u, p.Query())
		}
	}
	if got := s.FrontChannel(e.f.Runtime, nil); len(got) != 0 {
		t.Errorf("FrontChannel(no sessions) = %v", got)
	}
}

func TestRunDeliversWhenWoken(t *testing.T) {
	e := newEnv(t)
	s := e.service(nil, nil, logout.Settings{Poll: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	e.session(t, nil, "alice", "sid-1", "svc")
	if _, err := s.End(context.Background(), "alice", "", "rp"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(e.apps["svc"].received()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not deliver after End woke it")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestReplicaDiesMemory(t *testing.T) {
	e := newEnv(t)
	testReplicaDies(t, e, e.f.Store)
}

// TestReplicaDiesRedis runs the same on Redis, where replicas really
// share the outbox.
func TestReplicaDiesRedis(t *testing.T) {
	e := newEnv(t)
	st, err := redisstore.Open(context.Background(), redistest.Start(t), redisstore.Options{KeyPrefix: "fblogout"})
	if err != nil {
		t.Fatalf("redis.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	testReplicaDies(t, e, st)
}

// TestReplicaDiesSQLite runs the same on SQLite.
func TestReplicaDiesSQLite(t *testing.T) {
	e := newEnv(t)
	st, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "fedbroker.db"), sqlstore.Options{})
	if err != nil {
		t.Fatalf("sqlstore.OpenSQLite: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	testReplicaDies(t, e, st)
}

// testReplicaDies: replica A claims a delivery and dies mid-attempt (its
// HTTP client blocks until A's context ends); replica B on the same store
// delivers it once A's lease has run out, and not before.
func testReplicaDies(t *testing.T, e *env, store storage.Storage) {
	ctx := context.Background()
	st := logout.Settings{Timeout: 30 * time.Second}
	lease := st.Timeout + 5*time.Second
	sending := make(chan struct{}, 1)
	stuck := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sending <- struct{}{}
		<-r.Context().Done()
		return nil, r.Context().Err()
	})}
	a := e.service(store, stuck, st)
	b := e.service(store, nil, st)

	e.session(t, store, "alice", "sid-1", "svc")
	got, err := a.End(ctx, "alice", "", "rp")
	if err != nil {
		t.Fatalf("End: %v", err)
	}
	if got.Queued != 1 {
		t.Fatalf("End = %+v, want 1 queued", got)
	}
	actx, die := context.WithCancel(ctx)
	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		_, _ = a.DeliverDue(actx)
	}()
	select {
	case <-sending:
	case <-time.After(10 * time.Second):
		t.Fatal("replica A never sent")
	}
	die()
	<-aDone

	if n := deliverDue(t, b); n != 0 {
		t.Fatalf("B claimed %d while A's lease runs, want 0", n)
	}
	e.f.Clock.Advance(lease - time.Second)
	if n := deliverDue(t, b); n != 0 {
		t.Fatalf("B claimed %d a second before A's lease ends, want 0", n)
	}
	e.f.Clock.Advance(time.Second)
	if n := deliverDue(t, b); n != 1 {
		t.Fatalf("B claimed %d after A's lease ended, want 1", n)
	}
	if got := sids(e.apps["svc"].received()); len(got) != 1 || got["sid-1"] != 1 {
		t.Errorf("svc received %v, want one token for sid-1", got)
	}
	e.f.Clock.Advance(time.Hour)
	if n := deliverDue(t, b); n != 0 {
		t.Errorf("claimed %d after delivery, want 0", n)
	}
	if n := pending(t, store); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}

func TestNilMetricsAndDefaults(t *testing.T) {
	e := newEnv(t)
	s := logout.New(logout.Deps{Store: e.f.Store, Tokens: e.tokens, Runtime: e.rt.Load, Now: e.f.Clock.Now}, logout.Settings{})
	e.session(t, nil, "alice", "sid-1", "svc")
	if _, err := s.End(context.Background(), "alice", "", "rp"); err != nil {
		t.Fatal(err)
	}
	if n := deliverDue(t, s); n != 1 || len(e.apps["svc"].received()) != 1 {
		t.Errorf("delivered %d (%d received) without metrics, want 1", n, len(e.apps["svc"].received()))
	}
	if got := logout.SettingsOf(config.Backchannel{}); got.Timeout != config.DefaultBackchannelTimeout || got.RetryFor != config.DefaultBackchannelRetryFor {
		t.Errorf("SettingsOf(defaults) = %+v", got)
	}
}

func TestBackoff(t *testing.T) {
	for attempts, want := range map[int]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		6: 32 * time.Second, 7: time.Minute, 8: time.Minute, 100: time.Minute} {
		if got := logout.Backoff(attempts); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", attempts, got, want)
		}
	}
}

// flaky is a store whose MarkSeen or PutDelivery fail on demand.
type flaky struct {
	storage.Storage
	markSeen, put atomic.Bool
}

var errDown = errors.New("storage down")

func (f *flaky) MarkSeen(ctx context.Context, ns, id string, until time.Time) (bool, error) {
	if f.markSeen.Load() {
		return false, errDown
	}
	return f.Storage.MarkSeen(ctx, ns, id, until)
}

func (f *flaky) PutDelivery(ctx context.Context, d storage.Delivery) error {
	if f.put.Load() {
		return errDown
	}
	return f.Storage.PutDelivery(ctx, d)
}

func TestEndStorageErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	st := &flaky{Storage: e.f.Store}
	e.tokens = tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: e.f.Keys, Store: st, Now: e.f.Clock.Now})
	s := e.service(st, nil, logout.Settings{})
	e.session(t, nil, "alice", "sid-1", "svc", "svc2")

	// The access tokens cannot be revoked: nothing ends, the caller may
	// retry.
	st.markSeen.Store(true)
	if got, err := s.End(ctx, "alice", "", "rp"); !errors.Is(err, errDown) || len(got.Sessions) != 0 {
		t.Fatalf("End with MarkSeen down = %+v, %v; want the storage error", got, err)
	}
	if left, _ := e.f.Store.ListSessions(ctx, "alice"); len(left) != 1 {
		t.Fatalf("sessions after a failed End = %d, want 1", len(left))
	}
	if n := pending(t, e.f.Store); n != 0 {
		t.Fatalf("pending after a failed End = %d", n)
	}

	// The sessions end; the deliveries cannot be queued: End reports it
	// and does not fail.
	st.markSeen.Store(false)
	st.put.Store(true)
	got, err := s.End(ctx, "alice", "", "rp")
	if err != nil || len(got.Sessions) != 1 || got.Queued != 0 || got.Unqueued != 2 {
		t.Fatalf("End with PutDelivery down = %+v, %v; want 1 session, 2 unqueued", got, err)
	}
	if revoked, err := e.tokens.SessionRevoked(ctx, "sid-1"); err != nil || !revoked {
		t.Errorf("SessionRevoked = %v, %v; want true", revoked, err)
	}
	if v := e.metric(t, "fedbroker_backchannel_logout_total", map[string]string{"client_id": "svc2", "outcome": "failed"}); v != 1 {
		t.Errorf("failed{svc2} = %v, want 1", v)
	}
}

func TestDeliveredAsTheReplicaStops(t *testing.T) {
	e := newEnv(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var sent atomic.Int32
	// The application accepts the token; the replica's context ends
	// before it records that.
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		stop()
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})}
	s := e.service(nil, client, logout.Settings{})
	e.session(t, nil, "alice", "sid-1", "svc")
	if _, err := s.End(context.Background(), "alice", "", "rp"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.DeliverDue(ctx); n != 1 || sent.Load() != 1 {
		t.Fatalf("DeliverDue claimed %d, sent %d; want 1, 1", n, sent.Load())
	}
	if n := pending(t, e.f.Store); n != 0 {
		t.Errorf("pending = %d, want 0: a delivered token is recorded as the replica stops", n)
	}
}
