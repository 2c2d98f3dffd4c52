// Package jwa names the JSON Web Algorithms (RFC 7518, RFC 8037) the
// project accepts in a signed JWT it did not sign itself: a client
// assertion, a workload's or upstream's token, or one of the broker's own
// tokens checked by a service. Only asymmetric algorithms are listed, so a
// secret or a public key can never double as an HMAC key. It is a leaf
// package: any other package may import it.
package jwa

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"hash"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
)

// asymmetric is the one list; Asymmetric and Names hand out copies.
var asymmetric = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// Asymmetric returns the accepted asymmetric signature algorithms.
func Asymmetric() []jose.SignatureAlgorithm { return slices.Clone(asymmetric) }

// Names returns the accepted algorithms' names ("RS256", ...), as
// discovery documents and configuration list them.
func Names() []string {
	out := make([]string, len(asymmetric))
	for i, a := range asymmetric {
		out[i] = string(a)
	}
	return out
}

// IsAsymmetric reports whether alg names an accepted algorithm.
func IsAsymmetric(alg string) bool {
	return slices.Contains(asymmetric, jose.SignatureAlgorithm(alg))
}

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
