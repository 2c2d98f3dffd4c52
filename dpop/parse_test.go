package dpop

import (
	"crypto/elliptic"
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// TestParseThenVerify: Parse reads jti and the key's thumbprint without
// checking the signature, so a server can start its replay record early;
// nothing in it counts until Unverified.Verify has checked that the very
// bytes read were signed by that key.
func TestParseThenVerify(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	good := craft(t, key, jose.ES256, nil, testClaims(), true)

	u, err := Parse(good, testCheck())
	if err != nil {
		t.Fatalf("Parse(valid) = %v", err)
	}
	want, _ := Thumbprint(jose.JSONWebKey{Key: key.Public()})
	if u.JTI != "e1j3V_bKic8-LAEB" || u.Thumbprint != want {
		t.Fatalf("Parse = jti %q thumbprint %q, want the proof's", u.JTI, u.Thumbprint)
	}
	p, err := u.Verify()
	if err != nil || p.JTI != u.JTI || p.Thumbprint != want {
		t.Fatalf("Verify after Parse = %+v, %v", p, err)
	}

	// Another jti spliced into a signed proof: Parse reports it (it cannot
	// know better), Verify refuses it.
	parts := strings.Split(good, ".")
	forged := testClaims()
	forged["jti"] = "someone-elses-jti"
	spliced := parts[0] + "." + seg(forged) + "." + parts[2]
	u, err = Parse(spliced, testCheck())
	if err != nil {
		t.Fatalf("Parse(spliced) = %v, want it parsed", err)
	}
	if u.JTI != "someone-elses-jti" {
		t.Fatalf("Parse(spliced).JTI = %q", u.JTI)
	}
	if _, err := u.Verify(); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("Verify(spliced) = %v, want ErrInvalidProof", err)
	}

	// What Parse refuses, Verify refuses the same way.
	for name, proof := range map[string]string{
		"no jti":    craft(t, key, jose.ES256, nil, map[string]any{"htm": "POST", "htu": testURL, "iat": testNow.Unix()}, true),
		"typ JWT":   craft(t, key, jose.ES256, map[jose.HeaderKey]any{jose.HeaderType: "JWT"}, testClaims(), true),
		"no jwk":    craft(t, key, jose.ES256, nil, testClaims(), false),
		"malformed": "a.b.c",
	} {
		_, perr := Parse(proof, testCheck())
		_, verr := Verify(proof, testCheck())
		if !errors.Is(perr, ErrInvalidProof) || perr.Error() != verr.Error() {
			t.Errorf("%s: Parse = %v, Verify = %v, want the same ErrInvalidProof", name, perr, verr)
		}
	}
}
