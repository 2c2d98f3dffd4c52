package dpop

import (
	"crypto/ed25519"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// FuzzVerify feeds Verify mutations of valid proofs. It must never panic,
// and must accept nothing but the valid proofs themselves: Ed25519
// signatures are not malleable and every segment must be canonical
// base64url, so any other string is a forgery. The keys are fixed, so
// every fuzzing process builds the same seeds.
func FuzzVerify(f *testing.F) {
	ed := ed25519.NewKeyFromSeed([]byte("fuzz-dpop-proof-key-0123456789ab"))
	ed2 := ed25519.NewKeyFromSeed([]byte("fuzz-dpop-proof-key-second-key!!"))
	validEd := craft(f, ed, jose.EdDSA, nil, testClaims(), true)
	valid2 := craft(f, ed2, jose.EdDSA, nil, testClaims(), true)
	check := testCheck()
	for _, v := range []string{validEd, valid2} {
		if _, err := Verify(v, check); err != nil {
			f.Fatalf("seed does not verify: %v", err)
		}
	}
	parts := strings.Split(validEd, ".")
	parts2 := strings.Split(valid2, ".")
	other := testClaims()
	other["htu"] = "https://evil.example.com/orders"
	for _, s := range []string{
		validEd,
		valid2,
		parts[0] + "." + parts2[1] + "." + parts[2],  // payload swapped
		parts2[0] + "." + parts[1] + "." + parts[2],  // header swapped
		parts[0] + "." + parts[1] + "." + parts2[2],  // signature swapped
		parts[0] + "." + seg(other) + "." + parts[2], // claims changed
		seg(map[string]any{"alg": "none", "typ": Type}) + "." + parts[1] + ".",
		craft(f, ed, jose.EdDSA, map[jose.HeaderKey]any{jose.HeaderType: "JWT"}, testClaims(), true),
		craft(f, ed, jose.EdDSA, nil, testClaims(), false),
		validEd[:len(validEd)/2],
		strings.ToUpper(validEd),
		validEd + ".",
		"..",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, proof string) {
		p, err := Verify(proof, check)
		if err != nil {
			if p != nil {
				t.Fatalf("Verify() returned a proof with error %v", err)
			}
			return
		}
		if proof != validEd && proof != valid2 {
			t.Fatalf("Verify(%q) accepted a string other than the valid proofs: %+v", proof, p)
		}
	})
}
