package oauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"

	"github.com/fedbroker/fedbroker/broker/config"
)

// Token types of RFC 8693 §3, and the token-exchange grant type.
const (
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// Client authentication (RFC 6749 §2.3, RFC 7523 §2.2, OpenID Connect Core
// §9); the methods a client may be configured with are config's.
const (
	AuthSecretBasic        = config.AuthClientSecretBasic
	AuthSecretPost         = config.AuthClientSecretPost
	AuthPrivateKeyJWT      = config.AuthPrivateKeyJWT
	AuthNone               = "none"
	AssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// PKCE (RFC 7636): S256 is the only method the broker accepts.
const PKCEMethodS256 = "S256"

var (
	pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	pkceVerifier  = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
)

// ValidChallenge reports whether challenge has the shape of an S256
// code_challenge (RFC 7636 §4.2).
func ValidChallenge(challenge string) bool { return pkceChallenge.MatchString(challenge) }

// ValidVerifier reports whether verifier has the shape of a code_verifier
// (RFC 7636 §4.1).
func ValidVerifier(verifier string) bool { return pkceVerifier.MatchString(verifier) }

// VerifierMatches reports, in constant time, whether verifier hashes to the
// S256 challenge (RFC 7636 §4.6).
func VerifierMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	return ConstantTimeEqual(base64.RawURLEncoding.EncodeToString(sum[:]), challenge)
}

// RandomToken returns n random bytes, base64url without padding.
func RandomToken(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never fails on supported platforms (Go 1.24+).
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ConstantTimeEqual compares two secrets without leaking where they differ.
func ConstantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Dedupe returns xs without repeats, in first-seen order.
func Dedupe(xs []string) []string {
	seen := make(map[string]bool, len(xs))
	out := xs[:0:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// WriteJSON writes v as a JSON response with status.
func WriteJSON(rw http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_, err = rw.Write(append(body, '\n'))
	return err
}
