package jwa

import (
	"errors"
	"strings"
	"testing"
)

func TestNoSymmetricAlgorithm(t *testing.T) {
	for _, a := range append(Names(), Signing()...) {
		if strings.HasPrefix(a, "HS") || strings.EqualFold(a, "none") || !IsAsymmetric(a) {
			t.Errorf("%q is listed", a)
		}
	}
	for _, a := range []string{"HS256", "none", "", "es256", "RS1"} {
		if IsAsymmetric(a) || CanSign(a) {
			t.Errorf("%q is accepted", a)
		}
	}
	if Signing()[0] != "ES256" {
		t.Errorf("default signing algorithm = %s, want ES256", Signing()[0])
	}
}

// TestLeftHash uses the at_hash of OpenID Connect Core's example (A.3):
// RS256 over the access token jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y.
func TestLeftHash(t *testing.T) {
	if got := LeftHash("RS256", "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"); got != "77QmUPtjPfzWtF2AnpK9RQ" {
		t.Errorf("LeftHash = %s, want 77QmUPtjPfzWtF2AnpK9RQ", got)
	}
	if len(LeftHash("EdDSA", "x")) != len(LeftHash("ES512", "x")) || len(LeftHash("ES384", "x")) == len(LeftHash("ES256", "x")) {
		t.Error("hash length does not follow the algorithm")
	}
}

// headerKey stands for go-jose's HeaderKey, which jwa does not import.
type headerKey string

func TestCheckHeader(t *testing.T) {
	for _, ok := range []map[headerKey]any{nil, {}, {"typ": "JWT"}, {"typ": "JWT", "cty": "JWT", "x5t": "abc"}} {
		if err := CheckHeader(ok); err != nil {
			t.Errorf("CheckHeader(%v) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []map[headerKey]any{
		{"zip": "DEF"}, {"zip": ""}, {"zip": nil}, {"crit": []any{"exp"}}, {"crit": []any{}},
		{"b64": false}, {"b64": true}, {"typ": "JWT", "zip": "DEF"},
	} {
		if err := CheckHeader(bad); !errors.Is(err, ErrHeader) {
			t.Errorf("CheckHeader(%v) = %v, want ErrHeader", bad, err)
		}
	}
}

func TestCheckCompact(t *testing.T) {
	// Segments of lengths 0, 2, 3 and 4 mod 4: "e30" is {}, "QQ" is A,
	// "QUI" is AB, "QUJD" is ABC.
	for _, ok := range []string{"e30.QUJD.QQ", "e30..QUI", "e30.e30.QUJD"} {
		if err := CheckCompact(ok); err != nil {
			t.Errorf("CheckCompact(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{
		"", "e30", "e30.e30", "e30.e30.e30.e30", "e30.e30.e30.", // not three segments
		"e30.QR.QQ", "e30.QUJ.QQ", "e31.QQ.QQ", // unused bits set
		"e30.QQ==.QQ", "e30.Q\nQ.QQ", "e30.QQ.QQ\r\n", " e30.QQ.QQ", // padding, CR, LF, space
		"e30.Q.QQ", "e30.QQ+/.QQ", "e30.QQ.Q\x00", // impossible length, standard alphabet, NUL
	} {
		if err := CheckCompact(bad); !errors.Is(err, ErrEncoding) {
			t.Errorf("CheckCompact(%q) = %v, want ErrEncoding", bad, err)
		}
	}
}
