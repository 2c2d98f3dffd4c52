package mapping

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// BenchmarkEvaluateTypical evaluates a typical mapping (10 claims, 2
// requires, 1 table lookup) once per iteration, as one sign-in would.
func BenchmarkEvaluateTypical(b *testing.B) {
	m := mustCompile(b, typicalSpec(), CompileOptions{})
	in := Input{ConnectorID: "google", ConnectorType: "google", UpstreamSubject: "1234", Claims: typicalClaims()}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Evaluate(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTypicalVsSign alternates the typical mapping and one ES256
// signature of a ~400 byte payload in one loop and times them apart, so a
// change of load during the run slows both alike; x-sign is the ratio the
// target is set on (BENCHMARKS.md).
func BenchmarkTypicalVsSign(b *testing.B) {
	m := mustCompile(b, typicalSpec(), CompileOptions{})
	in := Input{ConnectorID: "google", ConnectorType: "google", UpstreamSubject: "1234", Claims: typicalClaims()}
	ctx := context.Background()
	sign := es256Signer(b)
	var te, ts time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := m.Evaluate(ctx, in); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		sign()
		te += mid.Sub(start)
		ts += time.Since(mid)
	}
	b.ReportMetric(float64(te.Nanoseconds())/float64(b.N), "map-ns/op")
	b.ReportMetric(float64(ts.Nanoseconds())/float64(b.N), "sign-ns/op")
	b.ReportMetric(float64(te)/float64(ts), "x-sign")
}

// BenchmarkES256Sign signs a ~400 byte payload with go-jose, the cost the
// mapping must stay well under.
func BenchmarkES256Sign(b *testing.B) {
	sign := es256Signer(b)
	b.ReportAllocs()
	for b.Loop() {
		sign()
	}
}

// es256Signer returns a function that signs a ~400 byte token payload with
// go-jose and serializes it.
func es256Signer(b *testing.B) func() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"iss":"https://broker.example.com","sub":"` + DefaultSubject("google", "1234") +
		`","aud":"app","exp":1900000000,"iat":1800000000,"email":"pat@acme.com","email_verified":true,` +
		`"name":"Pat Lee","groups":["eng-admins","eng-oncall","eng-web"],"roles":["admin","oncall"],"pad":"` +
		strings.Repeat("x", 120) + `"}`)
	if len(payload) < 380 || len(payload) > 420 {
		b.Fatalf("payload is %d bytes, want ~400", len(payload))
	}
	return func() {
		jws, err := signer.Sign(payload)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.CompactSerialize(); err != nil {
			b.Fatal(err)
		}
	}
}
