package broker

import (
	"net/http"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// BenchmarkLogin measures one whole browser login per iteration on the
// memory store, over HTTP on loopback: /authorize, the connector's
// redirect, the sign-in, the callback (mapping, SSO session, code) and the
// code's redemption at /token. Each iteration is a new browser (an empty
// cookie jar), so no SSO session short-cuts it.
//
//   - oidc: through the OpenID Connect test upstream (connectors/testidp),
//     which runs in this process: its authorize, token and userinfo
//     endpoints, its ES256 ID token signature and the broker's verification
//     of it all count.
//   - local: through the password form of the local connector, the users'
//     hashes at bcrypt.MinCost (4), the lowest cost the local connector's
//     configuration accepts.
//
// The metric logins/s is per wall-clock second of the benchmark's loop;
// run with -cpu 1 for logins per second on one core.
func BenchmarkLogin(b *testing.B) {
	b.Run("oidc", func(b *testing.B) {
		idp := testidp.New(testidp.Options{})
		b.Cleanup(idp.Close)
		idp.SetUser(corpUser)
		ups := withUpstreams(b, []upstream{corpConnector(idp)}, nil)
		h := newHarness(b, nil, nil, func(c *config.Config) { ups(c); unlimitedSignIns(c) })
		warm := h.newBrowser()
		h.upstreamSignIn(warm, "corp") // discovery and the upstream's JWKS fetched once
		benchLogins(b, func() {
			h.upstreamSignIn(h.newBrowser(), "corp")
		})
	})
	b.Run("local", func(b *testing.B) {
		h := newHarness(b, nil, nil, unlimitedSignIns)
		benchLogins(b, func() {
			p := newPKCE()
			code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
			if tr := h.redeem(code, p); tr.status != http.StatusOK || tr.IDToken == "" {
				b.Fatalf("redeem = %d %s %s, want 200 with an ID token", tr.status, tr.Error, tr.Description)
			}
		})
	})
}

// benchLogins runs login b.N times and reports logins per second.
func benchLogins(b *testing.B, login func()) {
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		login()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
}

// unlimitedSignIns lifts the per-address sign-in limit: every login of the
// benchmark comes from 127.0.0.1, and the harness clock does not move, so
// the bucket never refills.
func unlimitedSignIns(c *config.Config) {
	c.HTTP.SignInLimit = &config.RateLimit{Burst: 1000000, Every: time.Millisecond}
}
