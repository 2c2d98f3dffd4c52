package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Signer makes DPoP proofs with one private key, for clients: tests, the
// demo application, command-line tools. It is safe for concurrent use.
type Signer struct {
	signer     jose.Signer
	thumbprint string
	now        func() time.Time
}

// NewSigner returns a Signer for key, whose type chooses the algorithm:
// an ECDSA P-256 key signs with ES256, P-384 with ES384, an RSA key (of at
// least 2048 bits) with RS256, an Ed25519 key with EdDSA. Other keys are
// refused.
func NewSigner(key crypto.Signer) (*Signer, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		default:
			return nil, errors.New("dpop: NewSigner: ECDSA key not on P-256 or P-384")
		}
	case *rsa.PrivateKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("dpop: NewSigner: RSA key shorter than %d bits", minRSABits)
		}
		alg = jose.RS256
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	default:
		return nil, fmt.Errorf("dpop: NewSigner: key type %T not supported", key)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, &jose.SignerOptions{
		EmbedJWK:     true,
		ExtraHeaders: map[jose.HeaderKey]any{jose.HeaderType: Type},
	})
	if err != nil {
		return nil, fmt.Errorf("dpop: NewSigner: %w", err)
	}
	tp, err := Thumbprint(jose.JSONWebKey{Key: key.Public()})
	if err != nil {
		return nil, err
	}
	return &Signer{signer: s, thumbprint: tp, now: time.Now}, nil
}

// signedClaims are the claims of a proof the Signer makes.
type signedClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// Proof returns a fresh proof for a request of method to url (its query
// and fragment are left out of htu), with a random jti and iat now. It
// carries ath when accessToken is not empty, for a request to a protected
// resource with that token, and nonce when nonce is not empty.
func (s *Signer) Proof(method, url, accessToken, nonce string) (string, error) {
	if method == "" {
		return "", errors.New("dpop: Proof: empty method")
	}
	htu, _, _ := strings.Cut(url, "#")
	htu, _, _ = strings.Cut(htu, "?")
	if _, err := normalizeURL(htu); err != nil {
		return "", fmt.Errorf("dpop: Proof: %w", err)
	}
	var id [18]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	c := signedClaims{
		JTI:   base64.RawURLEncoding.EncodeToString(id[:]),
		HTM:   method,
		HTU:   htu,
		IAT:   s.now().Unix(),
		Nonce: nonce,
	}
	if accessToken != "" {
		c.ATH = ATH(accessToken)
	}
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := s.signer.Sign(body)
	if err != nil {
		return "", fmt.Errorf("dpop: Proof: %w", err)
	}
	return jws.CompactSerialize()
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of the Signer's
// public key: the cnf.jkt of the tokens bound to it.
func (s *Signer) Thumbprint() string { return s.thumbprint }
