// Package dpop implements OAuth 2.0 Demonstrating Proof of Possession
// (DPoP, RFC 9449): checking a DPoP proof JWT on the server side (Verify),
// creating proofs on the client side (Signer), the JWK thumbprint that binds
// an access token to a key (Thumbprint, the cnf.jkt claim), the access token
// hash of a proof (ATH), and a bounded in-memory cache of proof identifiers
// for replay detection (ReplayCache).
//
// Verify checks one proof against one request. It does not detect replays:
// callers record each accepted proof's JTI (with a ReplayCache, or shared
// storage when several replicas serve the same URL) and refuse one seen
// before.
//
// The package imports only the standard library, go-jose and the module's
// jwa package, so that any service or client may use it.
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/jwa"
)

const (
	// Header is the HTTP header carrying the proof (RFC 9449 §4.1).
	Header = "DPoP"
	// DefaultSkew is how far a proof's iat may be from the server's clock,
	// either way, unless Check.Skew says otherwise.
	DefaultSkew = 60 * time.Second
	// MaxProofSize is the longest proof Verify parses; a longer one is
	// refused before any decoding.
	MaxProofSize = 8 << 10
	// MaxJTILength is the longest jti a proof may carry.
	MaxJTILength = 256
	// Type is the typ header of a DPoP proof.
	Type = "dpop+jwt"

	// minRSABits is the smallest RSA modulus accepted in a proof's jwk.
	minRSABits = 2048
)

// DefaultAlgorithms are the JWS algorithms Verify accepts when
// Check.Algorithms is nil.
var DefaultAlgorithms = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}

var (
	// ErrInvalidProof is wrapped by every refusal of a proof, except a
	// missing or wrong nonce, with a detail that names the failed check.
	ErrInvalidProof = errors.New("invalid DPoP proof")
	// ErrUseNonce is wrapped by the refusal of a proof that lacks the
	// nonce the server requires, or carries another one. Verify checks the
	// nonce last, so an error wrapping ErrUseNonce means that the proof
	// passed every other check: the server answers use_dpop_nonce with a
	// fresh nonce (RFC 9449 §8).
	ErrUseNonce = errors.New("DPoP proof needs the server's nonce")
)

// Check is what Verify compares a proof with.
type Check struct {
	// Method is the request's HTTP method, compared exactly with htm.
	Method string
	// URL is the request's absolute URL as the server publishes it; its
	// query and fragment are ignored. It is compared with htu after RFC
	// 3986 normalisation of both (scheme and host case, default ports,
	// percent-encoding, dot segments).
	URL string
	// Now is the server's time; zero means time.Now().
	Now time.Time
	// Skew is how far iat may be from Now, either way; 0 means DefaultSkew.
	Skew time.Duration
	// Algorithms are the accepted JWS algorithms; nil means
	// DefaultAlgorithms. Each must be an asymmetric algorithm of package
	// jwa: never "none" nor an HMAC.
	Algorithms []string
	// AccessToken, when not empty, is the access token presented with the
	// proof: the proof must carry ath, the base64url SHA-256 of it.
	AccessToken string
	// Nonce, when not empty, is the nonce the server requires: the proof's
	// nonce must equal it, else the error wraps ErrUseNonce.
	Nonce string
}

// Proof is a verified DPoP proof.
type Proof struct {
	JTI      string    // jti: the proof's unique identifier, for replay detection
	Method   string    // htm
	URL      string    // htu as sent
	IssuedAt time.Time // iat
	Nonce    string    // nonce, when sent
	ATH      string    // ath, when sent
	// Key is the public key of the jwk header, which signed the proof.
	Key jose.JSONWebKey
	// Thumbprint is the RFC 7638 SHA-256 thumbprint of Key, base64url
	// without padding: the cnf.jkt value of a token bound to Key.
	Thumbprint string
}

// proofClaims are the claims of a proof. Pointers tell a missing claim
// from an empty one; encoding/json refuses a claim of the wrong type.
type proofClaims struct {
	JTI   *string  `json:"jti"`
	HTM   *string  `json:"htm"`
	HTU   *string  `json:"htu"`
	IAT   *float64 `json:"iat"`
	ATH   *string  `json:"ath"`
	Nonce *string  `json:"nonce"`
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidProof, fmt.Sprintf(format, args...))
}

// Verify checks proof, the value of a DPoP header, against c (RFC 9449
// §4.3): one compact JWS no longer than MaxProofSize; typ exactly
// "dpop+jwt"; an accepted algorithm; a jwk header holding a public key
// (never private or symmetric material) that fits the algorithm and
// verifies the signature; claims jti (at most MaxJTILength bytes), htm
// equal to c.Method, htu equal to c.URL (see Check.URL), iat within the
// skew of now, ath when c.AccessToken is set and nonce when c.Nonce is set.
//
// A refused proof yields an error wrapping ErrInvalidProof, or ErrUseNonce
// for a nonce that is missing or wrong. An unusable c (no method, a URL
// that is not absolute http or https, a negative skew, a symmetric
// algorithm) yields an error wrapping neither.
//
// Verify keeps no state: it does not detect a replayed proof.
func Verify(proof string, c Check) (*Proof, error) {
	algs, want, err := c.prepare()
	if err != nil {
		return nil, err
	}
	if len(proof) > MaxProofSize {
		return nil, invalid("%d bytes exceeds %d", len(proof), MaxProofSize)
	}
	if proof == "" || strings.Count(proof, ".") != 2 {
		return nil, invalid("not a compact JWS")
	}
	if err := jwa.CheckCompact(proof); err != nil {
		return nil, invalid("%v", err)
	}
	jws, err := jose.ParseSignedCompact(proof, algs)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, invalid("%d signatures", len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if err := jwa.CheckHeader(h.ExtraHeaders); err != nil {
		return nil, invalid("%v", err)
	}
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != Type {
		return nil, invalid("typ %q, want %q", typ, Type)
	}
	key := h.JSONWebKey
	if key == nil {
		return nil, invalid("no jwk header")
	}
	if err := fitsAlgorithm(key, h.Algorithm); err != nil {
		return nil, err
	}
	body, err := jws.Verify(key)
	if err != nil {
		return nil, invalid("signature does not verify with the jwk header")
	}
	var pc proofClaims
	if err := json.Unmarshal(body, &pc); err != nil {
		return nil, invalid("claims: %v", err)
	}
	p, err := c.checkClaims(&pc, want)
	if err != nil {
		return nil, err
	}
	p.Key = *key
	if p.Thumbprint, err = Thumbprint(*key); err != nil {
		return nil, invalid("jwk: %v", err)
	}
	// Last, so that ErrUseNonce means the proof is otherwise good.
	if c.Nonce != "" && subtle.ConstantTimeCompare([]byte(p.Nonce), []byte(c.Nonce)) != 1 {
		if p.Nonce == "" {
			return nil, fmt.Errorf("%w: no nonce", ErrUseNonce)
		}
		return nil, fmt.Errorf("%w: stale or unknown nonce", ErrUseNonce)
	}
	return p, nil
}

// prepare validates c and returns the accepted algorithms and the
// normalised URL.
func (c *Check) prepare() ([]jose.SignatureAlgorithm, string, error) {
	if c.Method == "" {
		return nil, "", errors.New("dpop: Check.Method is empty")
	}
	if c.Skew < 0 {
		return nil, "", fmt.Errorf("dpop: Check.Skew %s is negative", c.Skew)
	}
	want, err := normalizeURL(c.URL)
	if err != nil {
		return nil, "", fmt.Errorf("dpop: Check.URL: %w", err)
	}
	names := c.Algorithms
	if names == nil {
		names = DefaultAlgorithms
	}
	if len(names) == 0 {
		return nil, "", errors.New("dpop: Check.Algorithms is empty")
	}
	algs := make([]jose.SignatureAlgorithm, len(names))
	for i, a := range names {
		if !jwa.IsAsymmetric(a) {
			return nil, "", fmt.Errorf("dpop: Check.Algorithms: %q is not an accepted asymmetric algorithm", a)
		}
		algs[i] = jose.SignatureAlgorithm(a)
	}
	return algs, want, nil
}

// checkClaims checks jti, htm, htu, iat and ath.
func (c *Check) checkClaims(pc *proofClaims, wantURL string) (*Proof, error) {
	switch {
	case pc.JTI == nil || *pc.JTI == "":
		return nil, invalid("no jti")
	case len(*pc.JTI) > MaxJTILength:
		return nil, invalid("jti longer than %d bytes", MaxJTILength)
	case pc.HTM == nil:
		return nil, invalid("no htm")
	case pc.HTU == nil:
		return nil, invalid("no htu")
	case pc.IAT == nil:
		return nil, invalid("no iat")
	}
	if *pc.HTM != c.Method {
		return nil, invalid("htm %q, want %q", *pc.HTM, c.Method)
	}
	if got, err := normalizeURL(*pc.HTU); err != nil || got != wantURL {
		return nil, invalid("htu does not match the request URL")
	}
	iat := *pc.IAT
	// NumericDate: seconds since the epoch, before the year 5138.
	if iat < 0 || iat > 1e11 || math.IsNaN(iat) {
		return nil, invalid("iat out of range")
	}
	sec, frac := math.Modf(iat)
	issued := time.Unix(int64(sec), int64(frac*1e9))
	now, skew := c.Now, c.Skew
	if now.IsZero() {
		now = time.Now()
	}
	if skew == 0 {
		skew = DefaultSkew
	}
	if issued.Before(now.Add(-skew)) {
		return nil, invalid("iat too old")
	}
	if issued.After(now.Add(skew)) {
		return nil, invalid("iat in the future")
	}
	p := &Proof{JTI: *pc.JTI, Method: *pc.HTM, URL: *pc.HTU, IssuedAt: issued}
	if pc.Nonce != nil {
		p.Nonce = *pc.Nonce
	}
	if pc.ATH != nil {
		p.ATH = *pc.ATH
	}
	if c.AccessToken != "" {
		if pc.ATH == nil {
			return nil, invalid("no ath")
		}
		if subtle.ConstantTimeCompare([]byte(p.ATH), []byte(ATH(c.AccessToken))) != 1 {
			return nil, invalid("ath does not match the access token")
		}
	}
	return p, nil
}

// fitsAlgorithm refuses a jwk header that is not a whole public key of the
// type alg signs with.
func fitsAlgorithm(k *jose.JSONWebKey, alg string) error {
	if !k.Valid() || !k.IsPublic() {
		return invalid("jwk is not a public key")
	}
	if k.Algorithm != "" && k.Algorithm != alg {
		return invalid("jwk alg %q, proof alg %q", k.Algorithm, alg)
	}
	var ok bool
	switch key := k.Key.(type) {
	case *ecdsa.PublicKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		ok = want != nil && key.Curve == want
	case *rsa.PublicKey:
		ok = strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
		if ok && key.N.BitLen() < minRSABits {
			return invalid("RSA key shorter than %d bits", minRSABits)
		}
	case ed25519.PublicKey:
		ok = alg == "EdDSA"
	}
	if !ok {
		return invalid("jwk does not fit alg %q", alg)
	}
	return nil
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of k's public key,
// base64url without padding: the cnf.jkt value (RFC 9449 §6.1) of a token
// bound to k. Symmetric keys have none.
func Thumbprint(k jose.JSONWebKey) (string, error) {
	if _, sym := k.Key.([]byte); sym || k.Key == nil {
		return "", errors.New("dpop: thumbprint of a key that is not asymmetric")
	}
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("dpop: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// ATH returns the ath claim for accessToken: the base64url SHA-256 of its
// ASCII bytes, without padding (RFC 9449 §4.2).
func ATH(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
