package keys

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// compactSigner signs compact JWSs with one key and one protected header,
// encoded once: base64url({"alg","kid","typ"}) and the dot are a fixed
// prefix of every signing input. go-jose's cryptosigner does the
// cryptography (hash, signature, and for ECDSA the JWS r||s form).
type compactSigner struct {
	alg    jose.SignatureAlgorithm
	prefix string
	opaque jose.OpaqueSigner
}

// compactKey is the key of a compactSigner in signingKey.signers, apart
// from the go-jose Signers cached there under their typ (a string).
type compactKey struct{ typ string }

// protectedHeader is the protected header of the broker's tokens. Its fields are in
// the order go-jose writes them (its header is a map, encoded with sorted
// keys), so the header is the one Sign produces.
type protectedHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ,omitempty"`
}

func (k *signingKey) compact(typ string) (*compactSigner, error) {
	ck := compactKey{typ}
	if s, ok := k.signers.Load(ck); ok {
		return s.(*compactSigner), nil
	}
	h, err := json.Marshal(protectedHeader{Alg: k.alg, Kid: k.kid, Typ: typ})
	if err != nil {
		return nil, fmt.Errorf("keys: header for %s: %w", k.kid, err)
	}
	opaque := cryptosigner.Opaque(k.priv)
	alg := jose.SignatureAlgorithm(k.alg)
	if !slices.Contains(opaque.Algs(), alg) {
		return nil, fmt.Errorf("keys: key %s cannot sign %s", k.kid, k.alg)
	}
	s := &compactSigner{alg: alg, prefix: base64.RawURLEncoding.EncodeToString(h) + ".", opaque: opaque}
	got, _ := k.signers.LoadOrStore(ck, s)
	return got.(*compactSigner), nil
}

// inputPool holds signing-input buffers between signatures.
var inputPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// sign returns the compact JWS of payload: the prefix, payload in
// base64url, and the signature over both.
func (s *compactSigner) sign(payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	bp := inputPool.Get().(*[]byte)
	defer inputPool.Put(bp)
	in := append((*bp)[:0], s.prefix...)
	in = enc.AppendEncode(in, payload)
	sig, err := s.opaque.SignPayload(in, s.alg)
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	in = append(in, '.')
	in = enc.AppendEncode(in, sig)
	*bp = in
	return string(in), nil
}

// SignCompact is Sign without go-jose's per-token work around the
// signature: the protected header (alg, kid and, unless typ is empty, typ)
// is encoded once per key and typ, the payload is base64url-encoded once,
// and go-jose's cryptosigner signs the signing input. The token is the
// same compact JWS that Sign returns for the same key, payload and typ
// (ECDSA and RSA-PSS signatures aside, which differ on every call), and
// verifies with go-jose, go-oidc and verify/. payload is the encoded JSON
// claims; SignCompact neither reads nor keeps it after it returns. It
// does no I/O.
func (m *Manager) SignCompact(alg string, payload []byte, typ string) (string, error) {
	k, err := m.activeKey(alg)
	if err != nil {
		return "", err
	}
	s, err := k.compact(typ)
	if err != nil {
		return "", err
	}
	return s.sign(payload)
}
