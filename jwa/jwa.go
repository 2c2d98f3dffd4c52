// Package jwa names the JSON Web Algorithms (RFC 7518, RFC 8037) of the
// project: the ones the broker signs with, and the ones it accepts in a
// signed JWT it did not sign itself (a client assertion, a workload's or
// upstream's token, or one of the broker's own tokens checked by a
// service). Only asymmetric algorithms are listed, so a secret or a public
// key can never double as an HMAC key. CheckCompact and CheckHeader say
// which JWS forms and headers the broker accepts. It is a leaf package,
// without a JOSE library: any other package may import it.
package jwa

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
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

// ErrHeader is CheckHeader's refusal: a JWS header asks for something the
// broker does not do.
var ErrHeader = errors.New("jwa: JWS header parameter not accepted")

// refusedHeaders are the JOSE header parameters no JWS the broker verifies
// may carry, whatever their value:
//   - zip (RFC 7516 §4.1.3) is compression, defined for JWE only; go-jose
//     ignores it on a JWS, so a signer could mean a payload other than the
//     one verified.
//   - crit (RFC 7515 §4.1.11) names extensions the recipient must
//     understand; the broker understands none.
//   - b64 (RFC 7797) is such an extension (an unencoded payload), never
//     used by a JWT (RFC 7797 §7).
var refusedHeaders = []string{"zip", "crit", "b64"}

// CheckHeader refuses a JWS header carrying a parameter of refusedHeaders.
// extra is the header's parameters beyond the ones a JOSE library parses
// itself, such as go-jose's Header.ExtraHeaders (map[jose.HeaderKey]any):
// call it on every signature's header after parsing, before trusting the
// payload. The error wraps ErrHeader.
func CheckHeader[K ~string, V any](extra map[K]V) error {
	for _, name := range refusedHeaders {
		if _, ok := extra[K(name)]; ok {
			return fmt.Errorf("%w: %q", ErrHeader, name)
		}
	}
	return nil
}

// strictRawURL decodes unpadded base64url and refuses a last character
// whose unused bits are set (RFC 4648 §3.5).
var strictRawURL = base64.RawURLEncoding.Strict()

// ErrEncoding is CheckCompact's refusal: a token that is not three
// segments of canonical base64url.
var ErrEncoding = errors.New("jwa: JWS not in canonical compact serialization")

// CheckCompact refuses a compact JWS (RFC 7515 §7.1) unless it is three
// dot-separated segments, each in canonical unpadded base64url (RFC 7515
// §2): the encoding of exactly the bytes it decodes to. A lenient decoder
// (Go's base64, used by go-jose) ignores CR and LF and the unused low bits
// of a segment's last character, and go-jose verifies the signature over
// the bytes re-encoded, so without this check one signed token has many
// spellings that all verify — and a token's string would not identify
// what was signed. It decodes nothing else: parsing and verifying is the
// JOSE library's job.
//
// A segment is canonical when the strict decoder, which refuses unused
// bits that are set, decodes it and it holds no CR or LF, which every
// decoder of encoding/base64 skips: the same verdict as decoding and
// encoding again (FuzzCheckCompact), without the second encoding, on
// every token the broker and verify/ look at.
func CheckCompact(token string) error {
	n := 0
	for seg := range strings.SplitSeq(token, ".") {
		n++
		if n > 3 {
			break
		}
		if strings.ContainsAny(seg, "\r\n") {
			return fmt.Errorf("%w: segment %d", ErrEncoding, n)
		}
		if _, err := strictRawURL.DecodeString(seg); err != nil {
			return fmt.Errorf("%w: segment %d", ErrEncoding, n)
		}
	}
	if n != 3 {
		return fmt.Errorf("%w: %d segments, want 3", ErrEncoding, n)
	}
	return nil
}
