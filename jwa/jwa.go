// Package jwa names the JSON Web Algorithms (RFC 7518, RFC 8037) of the
// project: the ones the broker signs with, and the ones it accepts in a
// signed JWT it did not sign itself (a client assertion, a workload's or
// upstream's token, or one of the broker's own tokens checked by a
// service). Only asymmetric algorithms are listed, so a secret or a public
// key can never double as an HMAC key. It is a leaf package: any other
// package may import it.
package jwa

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"hash"
	"slices"
)

// asymmetric is the one list; Asymmetric and Names hand out copies.
var asymmetric = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// signing are the algorithms the broker's own keys sign with, the default
// first.
var signing = []string{"ES256", "RS256", "EdDSA"}

// Signing returns the algorithms the broker can sign with, its default
// first.
func Signing() []string { return slices.Clone(signing) }

// CanSign reports whether the broker can sign with alg.
func CanSign(alg string) bool { return slices.Contains(signing, alg) }

// Asymmetric returns the accepted asymmetric signature algorithms in the
// string type a JOSE library wants, such as
// jwa.Asymmetric[jose.SignatureAlgorithm]() for go-jose (the package itself
// imports none, so that anything may import it).
func Asymmetric[T ~string]() []T {
	out := make([]T, len(asymmetric))
	for i, a := range asymmetric {
		out[i] = T(a)
	}
	return out
}

// Names returns the accepted algorithms' names ("RS256", ...), as
// discovery documents and configuration list them.
func Names() []string { return slices.Clone(asymmetric) }

// IsAsymmetric reports whether alg names an accepted algorithm.
func IsAsymmetric(alg string) bool { return slices.Contains(asymmetric, alg) }

// LeftHash is at_hash / c_hash (OpenID Connect Core §3.1.3.6,
// §3.3.2.11): the base64url left half of the token's hash, with the hash
// that matches the signing algorithm alg (SHA-512 for EdDSA over Ed25519).
func LeftHash(alg, token string) string {
	var h hash.Hash
	switch alg {
	case "EdDSA", "ES512", "RS512", "PS512":
		h = sha512.New()
	case "ES384", "RS384", "PS384":
		h = sha512.New384()
	default:
		h = sha256.New()
	}
	h.Write([]byte(token))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}
