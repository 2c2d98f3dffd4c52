package jwa

import (
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
