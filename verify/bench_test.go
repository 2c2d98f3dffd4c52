package verify

import (
	"testing"

	jose "github.com/go-jose/go-jose/v4"
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
