package verify

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/verify/redisreplay"
)

const publicBase = "https://orders.example.com"

// replica is one more Verifier of is's tokens, as another replica of the
// service would run it.
func replica(t *testing.T, is *testIssuer, clock *fakeClock, opts ...Option) *Verifier {
	t.Helper()
	v, err := New(t.Context(), is.url(), testAudience, append([]Option{WithClock(clock.now), WithDPoPBaseURL(publicBase)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// replayStore is a redisreplay.Store on its own client of the Redis at
// addr, as each replica has; go-redis does not retry, so that an outage
// shows at once.
func replayStore(t *testing.T, addr string) ReplayStore {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return redisreplay.New(c, "orders:replay:")
}

// TestReplicasShareReplayStore: two replicas behind one URL refuse a DPoP
// proof or a Logout Token the other accepted when they share a Redis
// replay store, and do not without it.
func TestReplicasShareReplayStore(t *testing.T) {
	srv := redistest.StartServer(t)
	is, k, _, clock := setup(t)
	h := newHolder(t)
	token := boundToken(t, is, k, h.jkt)
	auth := "DPoP " + token
	proof := func() string { return h.proof(t, h.claims("GET", publicBase+"/orders", token, clock.now()), nil) }
	deny := []string{`DPoP realm="orders-api", error="invalid_dpop_proof", error_description="the DPoP proof was already used", ` + dpopAlgs}

	a := guarded(t, replica(t, is, clock, WithReplayStore(replayStore(t, srv.Addr()))), false)
	b := guarded(t, replica(t, is, clock, WithReplayStore(replayStore(t, srv.Addr()))), false)
	p := proof()
	dpopCall{name: "at replica a", auth: auth, proofs: []string{p}, status: 200, wantBody: "user-123"}.do(t, a)
	dpopCall{name: "replayed at replica b", auth: auth, proofs: []string{p}, status: 401, wantAuth: deny, wantBody: "invalid_dpop_proof"}.do(t, b)
	dpopCall{name: "replayed at replica a", auth: auth, proofs: []string{p}, status: 401, wantAuth: deny, wantBody: "invalid_dpop_proof"}.do(t, a)
	dpopCall{name: "a new proof at replica b", auth: auth, proofs: []string{proof()}, status: 200, wantBody: "user-123"}.do(t, b)

	// In memory (the default), each replica remembers only its own.
	memA, memB := guarded(t, replica(t, is, clock), false), guarded(t, replica(t, is, clock), false)
	p = proof()
	dpopCall{name: "in memory, at a", auth: auth, proofs: []string{p}, status: 200, wantBody: "user-123"}.do(t, memA)
	dpopCall{name: "in memory, replayed at b", auth: auth, proofs: []string{p}, status: 200, wantBody: "user-123"}.do(t, memB)

	// Logout Tokens: the same.
	va := replica(t, is, clock, WithReplayStore(replayStore(t, srv.Addr())))
	vb := replica(t, is, clock, WithReplayStore(replayStore(t, srv.Addr())))
	c := is.logoutClaims()
	lt := sign(t, k, "logout+jwt", c)
	if _, err := va.VerifyLogoutToken(t.Context(), lt); err != nil {
		t.Fatalf("logout token at replica a: %v", err)
	}
	if _, err := vb.VerifyLogoutToken(t.Context(), lt); !errors.Is(err, ErrReplayed) {
		t.Fatalf("logout token replayed at replica b: %v, want ErrReplayed", err)
	}

	// Another issuer's identifiers are its own, in the same store.
	other := newTestIssuer(t, clock)
	ok := newKey(t, "ES256")
	other.publish(ok)
	vo := replica(t, other, clock, WithReplayStore(replayStore(t, srv.Addr())))
	oc := other.logoutClaims()
	oc["jti"] = c["jti"]
	if _, err := vo.VerifyLogoutToken(t.Context(), sign(t, ok, "logout+jwt", oc)); err != nil {
		t.Errorf("another issuer's logout token with the same jti: %v", err)
	}
}

// TestReplayStoreDown: while the replay store cannot answer, nothing
// passes that needs it: a DPoP request is answered 503 (not 401: the
// client did nothing wrong), a Logout Token is refused with
// ErrReplayUnavailable and the logout endpoint answers 503 so that the
// broker retries. Nothing was recorded meanwhile: once the store is
// back, the same proof passes.
func TestReplayStoreDown(t *testing.T) {
	srv := redistest.StartServer(t)
	is, k, v, clock := setup(t, WithReplayStore(replayStore(t, srv.Addr())), WithDPoPBaseURL(publicBase))
	h := newHolder(t)
	token := boundToken(t, is, k, h.jkt)
	p := h.proof(t, h.claims("GET", publicBase+"/orders", token, clock.now()), nil)
	api := guarded(t, v, false)
	ended := 0
	logout := httptest.NewServer(v.BackchannelLogoutHandler(func(context.Context, *LogoutClaims) error { ended++; return nil }))
	t.Cleanup(logout.Close)
	postLogout := func() int {
		t.Helper()
		form := url.Values{"logout_token": {sign(t, k, "logout+jwt", is.logoutClaims())}}
		resp, err := http.Post(logout.URL, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	srv.Stop()
	dpopCall{name: "store down", auth: "DPoP " + token, proofs: []string{p}, status: http.StatusServiceUnavailable, wantBody: "temporarily_unavailable"}.do(t, api)
	if _, err := v.VerifyLogoutToken(t.Context(), sign(t, k, "logout+jwt", is.logoutClaims())); !errors.Is(err, ErrReplayUnavailable) {
		t.Errorf("VerifyLogoutToken with the store down: %v, want ErrReplayUnavailable", err)
	}
	if code := postLogout(); code != http.StatusServiceUnavailable || ended != 0 {
		t.Errorf("logout with the store down: %d, %d sessions ended; want 503 and none", code, ended)
	}

	srv.Restart()
	dpopCall{name: "store back", auth: "DPoP " + token, proofs: []string{p}, status: 200, wantBody: "user-123"}.do(t, api)
	if code := postLogout(); code != http.StatusOK || ended != 1 {
		t.Errorf("logout with the store back: %d, %d sessions ended; want 200 and one", code, ended)
	}
}

func TestWithReplayStoreNil(t *testing.T) {
	is := newTestIssuer(t, newFakeClock())
	if _, err := New(t.Context(), is.url(), testAudience, WithReplayStore(nil)); err == nil || !strings.Contains(err.Error(), "WithReplayStore") {
		t.Fatalf("New with a nil replay store = %v, want an error naming WithReplayStore", err)
	}
}
