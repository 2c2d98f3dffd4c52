package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
)

// BenchmarkVsRaw measures each grant of the token endpoint in-process
// against go-jose signing the same number of tokens of the same size
// directly (two for authorization_code and refresh_token, one for
// client_credentials and token exchange). Each iteration does one of
// each, alternately, and times them apart, so that a machine whose load
// changes during the run slows both alike: the metrics are grant-ns/op,
// raw-ns/op and their ratio, x-raw. The ratios are what the performance
// targets are stated in (BENCHMARKS.md).
func BenchmarkVsRaw(b *testing.B) {
	stores := backends()
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			clk := newClock()
			h := newHarness(b, stores[name](b, clk), clk, nil)
			handler, ctx, now := h.b.Handler(), context.Background(), h.clock.Now()
			raw := rawSigner(b)
			b.Run("authorization_code", func(b *testing.B) {
				forms := make([]url.Values, b.N)
				for i := range forms {
					code := oauth.RandomToken(32)
					ac := storage.AuthCode{ClientID: "svc", RedirectURI: svcRedirect, FamilyID: oauth.RandomToken(16), Grant: benchGrant("sub-1", now), Expiry: now.Add(time.Hour)}
					if err := h.store.CreateCode(ctx, code, ac); err != nil {
						b.Fatal(err)
					}
					forms[i] = url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {svcRedirect}}
				}
				alternate(b, func(i int) { benchPost(b, handler, "svc", svcSecret, forms[i]) }, func() { raw(idPayload, atPayload) })
			})
			b.Run("refresh_token", func(b *testing.B) {
				forms := make([]url.Values, b.N)
				for i := range forms {
					fam := oauth.RandomToken(16)
					token := fam + "." + oauth.RandomToken(32)
					f := storage.RefreshFamily{ID: fam, Grant: benchGrant("sub-1", now), CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(2 * time.Hour)}
					if err := h.store.CreateRefresh(ctx, f, token); err != nil {
						b.Fatal(err)
					}
					forms[i] = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
				}
				alternate(b, func(i int) { benchPost(b, handler, "svc", svcSecret, forms[i]) }, func() { raw(idPayload, atPayload) })
			})
			// The floor under a grant on this store: one bare round trip
			// (Redis's PING; nothing for the memory store) against the
			// same two signatures. A grant cannot cost less than the
			// memory store's grant plus this.
			pinger, ok := h.store.(interface{ Ping(context.Context) error })
			if !ok || name == "memory" {
				return
			}
			b.Run("round_trip", func(b *testing.B) {
				alternate(b, func(int) {
					if err := pinger.Ping(ctx); err != nil {
						b.Fatal(err)
					}
				}, func() { raw(idPayload, atPayload) })
			})
		})
	}
	b.Run("workload", func(b *testing.B) {
		h, is := workloadHarness(b)
		handler := h.b.Handler()
		raw := rawSigner(b)
		b.Run("client_credentials", func(b *testing.B) {
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}
			alternate(b, func(int) { benchPost(b, handler, "ci", ciSecret, form) }, func() { raw(workloadPayload) })
		})
		b.Run("token_exchange", func(b *testing.B) {
			now := time.Now()
			forms := make([]url.Values, b.N)
			for i := range forms {
				tok, err := is.Sign(jose.RS256, map[string]any{
					"iss": is.URL(), "aud": "https://sso.acme.com", "sub": "repo:acme/app:ref:refs/heads/main",
					"repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main",
					"jti": oauth.RandomToken(12), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
				})
				if err != nil {
					b.Fatal(err)
				}
				forms[i] = url.Values{"grant_type": {config.GrantTokenExchange}, "subject_token": {tok}, "subject_token_type": {oauth.TokenTypeJWT}, "audience": {"deploy-api"}}
			}
			alternate(b, func(i int) { benchPost(b, handler, "ci", ciSecret, forms[i]) }, func() { raw(workloadPayload) })
		})
	})
}

// The payloads benchRawSign and BenchmarkWorkloadGrants sign: the size of
// the endpoint's ID token, access token and workload access token.
var (
	idPayload       = []byte(`{"iss":"http://127.0.0.1:5556","sub":"Q2hRc3ViLTEtMDEyMzQ1Njc4OWFiY2RlZg","aud":"svc","azp":"svc","exp":1900000000,"iat":1800000000,"auth_time":1800000000,"nonce":"n-0123456789","at_hash":"x3Fq9cBsl1q6dZ1l2nQYkA","sid":"sid-0123456789abcdef","amr":["pwd"],"email":"alice@acme.com","email_verified":true,"groups":["eng","admins","oncall"],"name":"Alice Example","preferred_username":"alice"}`)
	atPayload       = []byte(`{"iss":"http://127.0.0.1:5556","sub":"Q2hRc3ViLTEtMDEyMzQ1Njc4OWFiY2RlZg","aud":"svc","client_id":"svc","exp":1900000000,"iat":1800000000,"jti":"R3h0Y2hZbW9uZ3JhZnRlcg","scope":"openid profile email groups offline_access","auth_time":1800000000,"sid":"sid-0123456789abcdef","email":"alice@acme.com","email_verified":true,"groups":["eng","admins","oncall"],"name":"Alice Example","preferred_username":"alice"}`)
	workloadPayload = []byte(`{"iss":"http://127.0.0.1:5556","sub":"github:repo:acme/app:ref:refs/heads/main","aud":"deploy-api","client_id":"ci","exp":1900000000,"iat":1800000000,"jti":"R3h0Y2hZbW9uZ3JhZnRlcg","repository":"acme/app"}`)
)

// rawSigner returns a function that signs each payload with go-jose's
// ES256 signer (typ JWT, a kid) and serializes it: the floor.
func rawSigner(b *testing.B) func(payloads ...[]byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		b.Fatal(err)
	}
	return func(payloads ...[]byte) {
		for _, p := range payloads {
			obj, err := signer.Sign(p)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := obj.CompactSerialize(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// benchPost sends one token request with HTTP Basic client authentication
// and fails the benchmark unless it is answered 200.
func benchPost(b *testing.B, h http.Handler, client, secret string, form url.Values) {
	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("token = %d %s", rec.Code, rec.Body)
	}
}

// alternate runs grant(i) and raw() once each per iteration, timed apart,
// and reports both per operation and their ratio.
func alternate(b *testing.B, grant func(i int), raw func()) {
	var tg, tr time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		grant(i)
		mid := time.Now()
		raw()
		tg += mid.Sub(start)
		tr += time.Since(mid)
	}
	b.ReportMetric(float64(tg.Nanoseconds())/float64(b.N), "grant-ns/op")
	b.ReportMetric(float64(tr.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(tg)/float64(tr), "x-raw")
}
