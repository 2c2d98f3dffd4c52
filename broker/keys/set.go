package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker/seal"
	"github.com/fedbroker/fedbroker/jwa"
)

// setFormat is the version of the stored key-set encoding.
const setFormat = 1

// Sealing schemes of a stored private key.
const (
	sealNone   = "none"    // PKCS#8 DER in clear
	sealAESGCM = "A256GCM" // nonce || AES-256-GCM(PKCS#8 DER), additional data = kid
)

// keySet is the stored form of every signing key, shared by all replicas.
type keySet struct {
	Format int `json:"format"`
	// Generation counts rotations of the whole set; Rotate uses it to
	// tell whether another replica rotated since this one last looked.
	Generation int64 `json:"generation"`
	// Revision is the key set's own generation number: it goes up by one
	// with every write of the set, rotation or not, so it never goes
	// backwards while any replica runs. A replica never installs a set of
	// an older revision than the one it holds, and repairs storage that
	// went back (see reconcile). It is independent of the storage's
	// version counter, which restarts when storage loses the record.
	Revision int64 `json:"revision,omitempty"`
	// SetID is random, new with every write: two records of one revision
	// with different ids were written independently (storage lost the
	// first before the second was written).
	SetID string `json:"set_id,omitempty"`
	// Default is the fleet's default signing algorithm: every replica's
	// signing.algorithm must be it (see checkDefault). Written by the
	// first writer, changed only by SetAlgorithm; empty in a set stored by
	// a broker that predates it, which the next write fills in.
	Default string             `json:"default,omitempty"`
	Algs    map[string]*algSet `json:"algs"`
}

// newSetID returns a random set id.
func newSetID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// clone returns a deep copy of set.
func (set *keySet) clone() (*keySet, error) {
	data, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("keys: copy key set: %w", err)
	}
	return decodeSet(data)
}

// algSet holds the keys of one algorithm.
type algSet struct {
	Active storedKey `json:"active"`
	Next   storedKey `json:"next"`
	// Retired keys keep only their public half.
	Retired []storedKey `json:"retired,omitempty"`
	// RotatedAt is when Active started signing.
	RotatedAt time.Time `json:"rotated_at"`
}

// storedKey is one key. Public is PKIX DER; Private is PKCS#8 DER, sealed
// as Seal says, and empty for retired keys.
type storedKey struct {
	KID      string    `json:"kid"`
	Alg      string    `json:"alg"`
	Public   []byte    `json:"public"`
	Seal     string    `json:"seal,omitempty"`
	Private  []byte    `json:"private,omitempty"`
	Created  time.Time `json:"created"`
	RetireAt time.Time `json:"retire_at,omitzero"`
}

// key is a decoded key held in memory.
type key struct {
	kid      string
	alg      string
	public   crypto.PublicKey
	private  crypto.Signer // nil for retired keys
	retireAt time.Time     // zero unless retired
}

// generate makes a fresh private key for alg.
func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "EdDSA":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("keys: unsupported algorithm %q", alg)
}

// thumbprint returns the RFC 7638 SHA-256 thumbprint of pub, base64url.
func thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("keys: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// newKey generates a key for alg, identified by its thumbprint.
func newKey(alg string) (key, error) {
	priv, err := generate(alg)
	if err != nil {
		return key{}, err
	}
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return key{}, err
	}
	return key{kid: kid, alg: alg, public: priv.Public(), private: priv}, nil
}

// sealer encrypts and decrypts private keys with the broker's one AEAD
// (broker/seal), keyed directly with the KEK and bound to the key id; a nil
// aead stores them in clear.
type sealer struct{ aead *seal.AEAD }

func newSealer(kek []byte) (sealer, error) {
	if kek == nil {
		return sealer{}, nil
	}
	a, err := seal.New(kek)
	if err != nil {
		return sealer{}, fmt.Errorf("keys: key-encryption key: %w", err)
	}
	return sealer{aead: a}, nil
}

// encode turns k into its stored form; the private key is sealed when a
// KEK is configured.
func (s sealer) encode(k key, created time.Time) (storedKey, error) {
	pub, err := x509.MarshalPKIXPublicKey(k.public)
	if err != nil {
		return storedKey{}, fmt.Errorf("keys: encode public key %s: %w", k.kid, err)
	}
	sk := storedKey{KID: k.kid, Alg: k.alg, Public: pub, Created: created, RetireAt: k.retireAt}
	if k.private == nil {
		return sk, nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.private)
	if err != nil {
		return storedKey{}, fmt.Errorf("keys: encode private key %s: %w", k.kid, err)
	}
	if s.aead == nil {
		sk.Seal, sk.Private = sealNone, der
		return sk, nil
	}
	sk.Seal, sk.Private = sealAESGCM, s.aead.Seal(der, []byte(k.kid))
	clear(der)
	return sk, nil
}

// errWrongKEK means a sealed private key did not open.
var errWrongKEK = errors.New("keys: cannot decrypt signing key: wrong key-encryption key or corrupt key set")

// decode turns a stored key back into a key, opening the private half.
func (s sealer) decode(sk storedKey) (key, error) {
	if !jwa.CanSign(sk.Alg) {
		return key{}, fmt.Errorf("keys: stored key %s has unsupported algorithm %q", sk.KID, sk.Alg)
	}
	pub, err := x509.ParsePKIXPublicKey(sk.Public)
	if err != nil {
		return key{}, fmt.Errorf("keys: stored public key %s: %w", sk.KID, err)
	}
	k := key{kid: sk.KID, alg: sk.Alg, public: pub, retireAt: sk.RetireAt}
	if len(sk.Private) == 0 {
		return k, nil
	}
	der := sk.Private
	switch sk.Seal {
	case sealNone:
	case sealAESGCM:
		if s.aead == nil {
			return key{}, fmt.Errorf("keys: stored key %s is encrypted and no key-encryption key is configured", sk.KID)
		}
		der, err = s.aead.Open(der, []byte(sk.KID))
		if err != nil {
			return key{}, fmt.Errorf("%w (key %s)", errWrongKEK, sk.KID)
		}
		defer clear(der)
	default:
		return key{}, fmt.Errorf("keys: stored key %s has unknown seal %q", sk.KID, sk.Seal)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return key{}, fmt.Errorf("keys: stored private key %s: %w", sk.KID, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok || !samePublic(signer.Public(), pub) {
		return key{}, fmt.Errorf("keys: stored private key %s does not match its public key", sk.KID)
	}
	if a, err := algFor(signer.Public()); err != nil || a != sk.Alg {
		return key{}, fmt.Errorf("keys: stored key %s is not a %s key", sk.KID, sk.Alg)
	}
	k.private = signer
	return k, nil
}

// samePublic reports whether a and b are the same public key.
func samePublic(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// algFor returns the signing algorithm used with a public key.
func algFor(pub crypto.PublicKey) (string, error) {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve == elliptic.P256() {
			return "ES256", nil
		}
		return "", fmt.Errorf("keys: unsupported EC curve %s", p.Curve.Params().Name)
	case *rsa.PublicKey:
		if p.N.BitLen() < 2048 {
			return "", fmt.Errorf("keys: RSA key of %d bits, want at least 2048", p.N.BitLen())
		}
		return "RS256", nil
	case ed25519.PublicKey:
		return "EdDSA", nil
	}
	return "", fmt.Errorf("keys: unsupported key type %T", pub)
}

// decodeSet parses a stored key set.
func decodeSet(data []byte) (*keySet, error) {
	var set keySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("keys: decode key set: %w", err)
	}
	if set.Format != setFormat {
		return nil, fmt.Errorf("keys: key set format %d, want %d", set.Format, setFormat)
	}
	if set.Algs == nil {
		set.Algs = map[string]*algSet{}
	}
	return &set, nil
}

// etagOf returns a strong ETag for body.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
}
