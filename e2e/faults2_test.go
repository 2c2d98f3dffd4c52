package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// TestRedisRestartedEmpty: after Redis comes back empty, refresh tokens of
// every kind (live, rotated, revoked) answer invalid_grant, never 500 and
// never 200; users log in again and get tokens that verify.
func TestRedisRestartedEmpty(t *testing.T) {
	rs := redistest.StartServer(t)
	r := startBroker(t, brokerConfig{RedisURL: rs.URL()})
	first := fullLogin(t, r.URL)
	live, err := refresh(r.URL, first.RefreshToken)
	if err != nil || live.status != http.StatusOK {
		t.Fatalf("refresh = %+v, %v", live, err)
	}
	revoked := fullLogin(t, r.URL)
	if code, body, err := revoke(r.URL, revoked.RefreshToken); err != nil || code != http.StatusOK {
		t.Fatalf("revoke = %d %s, %v; want 200", code, body, err)
	}

	rs.Restart()
	if err := r.waitReady(15 * time.Second); err != nil {
		t.Fatalf("not ready after Redis restarted empty: %v", err)
	}
	for name, rt := range map[string]string{"rotated": first.RefreshToken, "revoked": revoked.RefreshToken, "live": live.RefreshToken} {
		tr, err := refresh(r.URL, rt)
		if err != nil || tr.status != http.StatusBadRequest || tr.Error != "invalid_grant" {
			t.Errorf("%s refresh token after Redis restarted empty = %d %s (%v), want 400 invalid_grant", name, tr.status, tr.Error, err)
		}
	}
	again := fullLogin(t, r.URL)
	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, r.URL)
	if err != nil {
		t.Fatal(err)
	}
	v := p.Verifier(&oidc.Config{ClientID: "app"})
	if _, err := v.Verify(ctx, again.IDToken); err != nil {
		t.Errorf("ID token issued after the restart does not verify: %v", err)
	}
	if _, err := v.Verify(ctx, live.IDToken); err != nil {
		t.Errorf("ID token issued before the restart no longer verifies against the JWKS: %v", err)
	}
	if tr, err := refresh(r.URL, again.RefreshToken); err != nil || tr.status != http.StatusOK {
		t.Errorf("refresh after re-login = %+v, %v; want 200", tr, err)
	}
}

// TestReplicaKilledMidLogin kills the replica that served the login form
// with SIGKILL; the form is posted to the other replica and the login
// completes there.
func TestReplicaKilledMidLogin(t *testing.T) {
	rs := redistest.StartServer(t)
	cl := startCluster(t, 2, rs.URL(), "")
	var ls loginSteps
	cl.use(0)
	if err := ls.authorize(cl.Issuer); err != nil {
		t.Fatal(err)
	}
	code, err := ls.submitWith(alicePassword, func() {
		cl.Replicas[0].Kill()
		cl.use(1)
	})
	if err != nil {
		t.Fatalf("login after the replica that served the form was killed: %v", err)
	}
	tr, err := redeem(cl.Replicas[1].URL, code, ls.p)
	if err != nil || tr.status != http.StatusOK {
		t.Fatalf("redeem on the survivor = %+v, %v; want 200", tr, err)
	}
	if code, _ := get(t, cl.Replicas[1].URL+"/readyz"); code != http.StatusOK {
		t.Errorf("survivor /readyz = %d, want 200", code)
	}
}

// TestUpstreamDownOrSlow: an upstream OpenID Connect IdP that answers
// slower than the connector's timeout, or not at all, gives the browser a
// readable error page within the timeout; the local connector keeps
// working meanwhile.
func TestUpstreamDownOrSlow(t *testing.T) {
	idp := testidp.New(testidp.Options{})
	t.Cleanup(idp.Close)
	idp.SetUser(testidp.User{Subject: "u-1", Claims: map[string]any{"email": "bob@partner.com", "email_verified": true, "name": "Bob"}})
	extra := fmt.Sprintf(`  - id: partner
    type: oidc
    name: Partner
    config:
      issuer: %q
      client_id: %q
      client_secret: %q
      timeout: 1s
`, idp.URL(), idp.ClientID(), idp.ClientSecret())
	r := startBroker(t, brokerConfig{ExtraConnectors: extra})

	// toCallback follows authorize → login → IdP until the browser is sent
	// to the broker's callback, and returns that URL.
	toCallback := func(t *testing.T, b *browser) string {
		t.Helper()
		u := authorizeURL(r.URL, "partner", newPKCE())
		for range 5 {
			pg, err := b.get(u)
			if err != nil || pg.status != http.StatusFound || pg.location == nil {
				t.Fatalf("GET %s = %d, %v; want 302", u, pg.status, err)
			}
			u = pg.location.String()
			if strings.HasPrefix(u, r.URL+"/callback/") {
				return u
			}
		}
		t.Fatalf("no redirect to the callback; last %s", u)
		return ""
	}
	// callback GETs the callback URL and times it.
	callback := func(t *testing.T, b *browser, u string) (page, time.Duration) {
		t.Helper()
		start := time.Now()
		cb, err := b.get(u)
		if err != nil {
			t.Fatalf("callback: %v", err)
		}
		return cb, time.Since(start)
	}

	t.Run("healthy", func(t *testing.T) {
		b := newBrowser()
		cb, _ := callback(t, b, toCallback(t, b))
		if (cb.status != http.StatusFound && cb.status != http.StatusSeeOther) || cb.location == nil || cb.location.Query().Get("code") == "" {
			t.Fatalf("callback = %d %.300s, want a redirect with a code", cb.status, cb.body)
		}
	})

	t.Run("slow", func(t *testing.T) {
		b := newBrowser()
		u := toCallback(t, b)
		idp.SetDelay(5 * time.Second)
		defer idp.SetDelay(0)
		done := make(chan error, 1)
		go func() {
			// A local login while the upstream call hangs.
			time.Sleep(100 * time.Millisecond)
			start := time.Now()
			var ls loginSteps
			err := ls.authorize(r.URL)
			if err == nil {
				_, err = ls.submit(alicePassword)
			}
			if err == nil && time.Since(start) > 2500*time.Millisecond {
				err = fmt.Errorf("local login took %s while the upstream was slow", time.Since(start))
			}
			done <- err
		}()
		cb, took := callback(t, b, u)
		wantUpstreamErrorPage(t, cb)
		if took > 3500*time.Millisecond {
			t.Errorf("callback against a slow upstream took %s, want about the 1s timeout", took)
		}
		if err := <-done; err != nil {
			t.Errorf("local connector during a slow upstream: %v", err)
		}
	})

	t.Run("down", func(t *testing.T) {
		b := newBrowser()
		u := toCallback(t, b)
		idp.Close() // the IdP goes away between its redirect and the callback
		cb, took := callback(t, b, u)
		wantUpstreamErrorPage(t, cb)
		if took > 3500*time.Millisecond {
			t.Errorf("callback against a down upstream took %s", took)
		}
		fullLogin(t, r.URL) // the local connector is unaffected
	})
}

func wantUpstreamErrorPage(t *testing.T, cb page) {
	t.Helper()
	if cb.status < 500 || cb.status > 504 || !strings.Contains(strings.ToLower(cb.body), "<html") {
		t.Errorf("callback against a failing upstream = %d %.300s, want a 5xx HTML error page", cb.status, cb.body)
	}
	if strings.Contains(cb.body, "goroutine ") || strings.Contains(cb.body, "dial tcp") || strings.Contains(cb.body, "context deadline") {
		t.Errorf("error page leaks internals: %.500s", cb.body)
	}
}
