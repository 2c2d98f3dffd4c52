package broker

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/dpop"
)

// benchGrant is a typical grant: a handful of mapped claims.
func benchGrant(sub string, now time.Time) storage.Grant {
	claims := map[string]any{
		"email": "alice@acme.com", "email_verified": true, "name": "Alice Example",
		"preferred_username": "alice", "groups": []any{"eng", "admins", "oncall"},
	}
	return storage.Grant{
		ClientID: "svc", Subject: sub, Scopes: []string{"openid", "profile", "email", "groups", "offline_access"},
		Nonce: "n-0123456789", AuthTime: now, SessionID: "sid-0123456789abcdef", AMR: []string{"pwd"},
		ConnectorID: "local", UpstreamSubject: "alice", IDTokenClaims: claims, AccessTokenClaims: claims,
	}
}

func benchTokenRequest(h http.Handler, form url.Values) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", svcSecret)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// BenchmarkTokenEndpoint measures the whole token endpoint in-process
// (client authentication, storage, claims, two signatures, JSON) for both
// grants on both backends, beside the raw ES256 signing of the same two
// tokens.
func BenchmarkTokenEndpoint(b *testing.B) {
	for name, newStore := range backends() {
		b.Run(name, func(b *testing.B) {
			clk := newClock()
			h := newHarness(b, newStore(b, clk), clk, nil)
			benchBackend(b, h)
		})
	}
	b.Run("raw-es256-sign-2-tokens", benchRawSign)
}

func benchBackend(b *testing.B, h *harness) {
	handler := h.b.Handler()
	ctx := context.Background()
	now := h.clock.Now()
	b.Run("authorization_code", func(b *testing.B) {
		codes := make([]string, b.N)
		for i := range codes {
			codes[i] = oauth.RandomToken(32)
			ac := storage.AuthCode{ClientID: "svc", RedirectURI: svcRedirect, FamilyID: oauth.RandomToken(16), Grant: benchGrant("sub-1", now), Expiry: now.Add(time.Hour)}
			if err := h.store.CreateCode(ctx, codes[i], ac); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			rec := benchTokenRequest(handler, url.Values{"grant_type": {"authorization_code"}, "code": {codes[i]}, "redirect_uri": {svcRedirect}})
			if rec.Code != 200 {
				b.Fatalf("token = %d %s", rec.Code, rec.Body)
			}
		}
	})
	b.Run("refresh_token", func(b *testing.B) {
		tokens := make([]string, b.N)
		for i := range tokens {
			fam := oauth.RandomToken(16)
			tokens[i] = fam + "." + oauth.RandomToken(32)
			f := storage.RefreshFamily{ID: fam, Grant: benchGrant("sub-1", now), CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(2 * time.Hour)}
			if err := h.store.CreateRefresh(ctx, f, tokens[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			rec := benchTokenRequest(handler, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens[i]}})
			if rec.Code != 200 {
				b.Fatalf("token = %d %s", rec.Code, rec.Body)
			}
		}
	})
}

// BenchmarkTokenEndpointDPoP measures the token endpoint in-process on the
// memory and Redis stores with a DPoP proof per request (verified, its jti recorded
// in storage, the access token bound to its key) against the same request
// without one. Each iteration sends one of each, alternately, and times
// them apart, so that a machine whose load changes during the run slows
// both alike: the metrics are bearer-ns/req, dpop-ns/req and their ratio.
// Proofs are made before the timer starts: that is the client's work.
//
// The proof key's type matters: Go verifies an ES256 signature in about
// the time of two ES256 signatures, an RS256 (2048-bit) or EdDSA one for
// less, so the memory store is measured with each.
func BenchmarkTokenEndpointDPoP(b *testing.B) {
	stores := backends()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, run := range []struct {
		store, proof string
		key          crypto.Signer
	}{{"memory", "ES256", ec}, {"memory", "EdDSA", ed}, {"memory", "RS256", rs}, {"redis", "ES256", ec}} {
		b.Run(run.store+"/"+run.proof, func(b *testing.B) {
			signer, err := dpop.NewSigner(run.key)
			if err != nil {
				b.Fatal(err)
			}
			clk := newClock()
			benchDPoP(b, newHarness(b, stores[run.store](b, clk), clk, nil), signer)
		})
	}
}

func benchDPoP(b *testing.B, h *harness, signer *dpop.Signer) {
	handler, ctx, now := h.b.Handler(), context.Background(), h.clock.Now()
	var err error
	send := func(b *testing.B, form url.Values, proof string) time.Duration {
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", svcSecret)
		if proof != "" {
			req.Header.Set(dpop.Header, proof)
		}
		rec := httptest.NewRecorder()
		start := time.Now()
		handler.ServeHTTP(rec, req)
		took := time.Since(start)
		if rec.Code != 200 || (proof != "") != strings.Contains(rec.Body.String(), `"token_type":"DPoP"`) {
			b.Fatalf("token = %d %s", rec.Code, rec.Body)
		}
		return took
	}
	run := func(b *testing.B, newForm func() url.Values) {
		bearer, bound, proofs := make([]url.Values, b.N), make([]url.Values, b.N), make([]string, b.N)
		for i := range proofs {
			bearer[i], bound[i] = newForm(), newForm()
			if proofs[i], err = signer.Proof(http.MethodPost, h.issuer+"/token", "", ""); err != nil {
				b.Fatal(err)
			}
		}
		var tb, td time.Duration
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			tb += send(b, bearer[i], "")
			td += send(b, bound[i], proofs[i])
		}
		b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N), "bearer-ns/req")
		b.ReportMetric(float64(td.Nanoseconds())/float64(b.N), "dpop-ns/req")
		b.ReportMetric(float64(td)/float64(tb), "dpop/bearer")
	}
	b.Run("authorization_code", func(b *testing.B) {
		run(b, func() url.Values {
			code := oauth.RandomToken(32)
			ac := storage.AuthCode{ClientID: "svc", RedirectURI: svcRedirect, FamilyID: oauth.RandomToken(16), Grant: benchGrant("sub-1", now), Expiry: now.Add(time.Hour)}
			if err := h.store.CreateCode(ctx, code, ac); err != nil {
				b.Fatal(err)
			}
			return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {svcRedirect}}
		})
	})
	b.Run("refresh_token", func(b *testing.B) {
		run(b, func() url.Values {
			fam := oauth.RandomToken(16)
			token := fam + "." + oauth.RandomToken(32)
			f := storage.RefreshFamily{ID: fam, Grant: benchGrant("sub-1", now), CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(2 * time.Hour)}
			if err := h.store.CreateRefresh(ctx, f, token); err != nil {
				b.Fatal(err)
			}
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
		})
	})
}

// benchRawSign signs an ID token and an access token payload of the same
// size as the endpoint's with go-jose directly: the floor the endpoint is
// measured against.
func benchRawSign(b *testing.B) {
	raw := rawSigner(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw(idPayload, atPayload)
	}
}

// BenchmarkWorkloadGrants measures client_credentials and token exchange
// (a workload's RS256 JWT verified, its jti recorded, its mapping run, one
// ES256 access token signed) in-process, beside one raw ES256 signature of
// an access token of the same shape, in one run.
func BenchmarkWorkloadGrants(b *testing.B) {
	h, is := workloadHarness(b)
	handler := h.b.Handler()
	post := func(form url.Values) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("ci", ciSecret)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec
	}
	b.Run("client_credentials", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if rec := post(url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}); rec.Code != 200 {
				b.Fatalf("client_credentials = %d %s", rec.Code, rec.Body)
			}
		}
	})
	b.Run("token_exchange", func(b *testing.B) {
		now := time.Now()
		tokens := make([]string, b.N)
		for i := range tokens {
			tok, err := is.Sign(jose.RS256, map[string]any{
				"iss": is.URL(), "aud": "https://sso.acme.com", "sub": "repo:acme/app:ref:refs/heads/main",
				"repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main",
				"jti": oauth.RandomToken(12), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			})
			if err != nil {
				b.Fatal(err)
			}
			tokens[i] = tok
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			rec := post(url.Values{"grant_type": {config.GrantTokenExchange}, "subject_token": {tokens[i]}, "subject_token_type": {oauth.TokenTypeJWT}, "audience": {"deploy-api"}})
			if rec.Code != 200 {
				b.Fatalf("exchange = %d %s", rec.Code, rec.Body)
			}
		}
	})
	b.Run("raw-es256-sign-1-token", func(b *testing.B) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "k1"))
		payload := []byte(`{"iss":"http://127.0.0.1:5556","sub":"github:repo:acme/app:ref:refs/heads/main","aud":"deploy-api","client_id":"ci","exp":1900000000,"iat":1800000000,"jti":"R3h0Y2hZbW9uZ3JhZnRlcg","repository":"acme/app"}`)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			obj, err := signer.Sign(payload)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = obj.CompactSerialize()
		}
	})
}
