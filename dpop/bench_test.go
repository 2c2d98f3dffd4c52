package dpop

import (
	"crypto/elliptic"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerify measures one Verify of an ES256 proof with every check.
// Compare with BenchmarkRawES256, go-jose's bare parse and signature check
// of the same proof with the key known beforehand.
func BenchmarkVerify(b *testing.B) {
	proof := craft(b, ecKey(b, elliptic.P256()), jose.ES256, nil, testClaims(), true)
	c := testCheck()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(proof, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawES256(b *testing.B) {
	k := ecKey(b, elliptic.P256())
	proof := craft(b, k, jose.ES256, nil, testClaims(), true)
	pub := jose.JSONWebKey{Key: k.Public()}
	b.ReportAllocs()
	for b.Loop() {
		jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.Verify(&pub); err != nil {
			b.Fatal(err)
		}
	}
}
