package verify

import (
	"runtime"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/dpop"
)

// BenchmarkVerify measures one verification with a warm key cache (ES256),
// every check included. Compare with BenchmarkRawES256Verify, the bare
// go-jose parse and signature check of the same token, run beside it.
func BenchmarkVerify(b *testing.B) {
	is, k, v, _ := setup(b)
	token := sign(b, k, "at+jwt", is.claims())
	ctx := b.Context()
	if _, err := v.Verify(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawES256Verify(b *testing.B) {
	is, k, _, _ := setup(b)
	token := sign(b, k, "at+jwt", is.claims())
	pub := k.public()
	b.ReportAllocs()
	for b.Loop() {
		jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.Verify(&pub); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyDPoP measures VerifyDPoP of a bound ES256 token with an
// ES256 proof: Verify's checks, the proof's (parse, jwk, signature,
// claims, ath), the thumbprint and the replay cache. Compare with
// BenchmarkVerify. Proofs are signed beforehand; each is used once, and
// when the pool runs out the replay cache is replaced by an empty one.
func BenchmarkVerifyDPoP(b *testing.B) {
	is, k, v, clock := setup(b)
	h := newHolder(b)
	token := boundToken(b, is, k, h.jkt)
	proofs := make([]string, 4096)
	for i := range proofs {
		proofs[i] = h.proof(b, h.claims("GET", resourceURL, token, clock.now()), nil)
	}
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(proofs) {
			i = 0
			v.replay = dpop.NewReplayCache(DefaultReplayCacheSize)
		}
		if _, err := v.VerifyDPoP(ctx, token, proofs[i], "GET", resourceURL); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDPoPOverhead alternates Verify of a bearer token and VerifyDPoP
// of a bound token with its proof, times each with threadClock (on Linux
// the thread's CPU time, which a busy machine does not inflate), and
// reports the ratio of the totals as dpop/plain.
func BenchmarkDPoPOverhead(b *testing.B) {
	is, k, v, clock := setup(b)
	h := newHolder(b)
	plain := sign(b, k, "at+jwt", is.claims())
	bound := boundToken(b, is, k, h.jkt)
	proofs := make([]string, 4096)
	for i := range proofs {
		proofs[i] = h.proof(b, h.claims("GET", resourceURL, bound, clock.now()), nil)
	}
	ctx := b.Context()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var tPlain, tDPoP time.Duration
	i := 0
	for b.Loop() {
		if i == len(proofs) {
			i = 0
			v.replay = dpop.NewReplayCache(DefaultReplayCacheSize)
		}
		t0 := threadClock()
		if _, err := v.Verify(ctx, plain); err != nil {
			b.Fatal(err)
		}
		t1 := threadClock()
		if _, err := v.VerifyDPoP(ctx, bound, proofs[i], "GET", resourceURL); err != nil {
			b.Fatal(err)
		}
		tDPoP += threadClock() - t1
		tPlain += t1 - t0
		i++
	}
	b.ReportMetric(float64(tDPoP)/float64(tPlain), "dpop/plain")
	b.ReportMetric(float64(tPlain.Nanoseconds())/float64(b.N), "plain-ns/op")
	b.ReportMetric(float64(tDPoP.Nanoseconds())/float64(b.N), "dpop-ns/op")
	b.Logf("measured with %s", threadClockName)
}
