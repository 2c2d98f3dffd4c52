package tokens

import (
	"errors"

	"github.com/fedbroker/fedbroker/broker/seal"
)

// Sealer encrypts connector data (an upstream refresh token, say) before it
// goes to storage, under a key derived from the configured key-encryption
// key. A sealed blob is bound to the sign-in session it belongs to (the
// grant's session id), so a blob copied into another session's records
// does not open. Without a key-encryption key it passes data through
// unchanged (the broker warns at start).
type Sealer struct {
	aead *seal.AEAD
}

// Sealed blob versions: the first byte of a sealed blob.
const (
	// sealV1 blobs were bound to a constant; they still open, so sign-ins
	// sealed before the upgrade keep refreshing.
	sealV1 = 1
	// sealV2 blobs are bound to the grant's session id.
	sealV2 = 2
)

var v1AD = []byte("connector-data")

// NewSealer derives the connector-data key from kek; an empty kek seals
// nothing.
func NewSealer(kek []byte) (*Sealer, error) {
	if len(kek) == 0 {
		return &Sealer{}, nil
	}
	a, err := seal.Derive(kek, "fedbroker connector data v1")
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: a}, nil
}

// ErrUnseal means connector data did not open: the key-encryption key
// changed, or the blob was moved from another session.
var ErrUnseal = errors.New("tokens: connector data cannot be decrypted (key-encryption key changed, or data moved from another session)")

func sessionAD(sessionID string) []byte { return []byte("connector-data\x00" + sessionID) }

// Seal encrypts data for the session sessionID.
func (s *Sealer) Seal(data []byte, sessionID string) []byte {
	if s.aead == nil || len(data) == 0 {
		return data
	}
	return append([]byte{sealV2}, s.aead.Seal(data, sessionAD(sessionID))...)
}

// Open decrypts data sealed for the session sessionID.
func (s *Sealer) Open(blob []byte, sessionID string) ([]byte, error) {
	if s.aead == nil || len(blob) == 0 {
		return blob, nil
	}
	var (
		out []byte
		err error
	)
	switch blob[0] {
	case sealV2:
		out, err = s.aead.Open(blob[1:], sessionAD(sessionID))
	case sealV1:
		out, err = s.aead.Open(blob[1:], v1AD)
	default:
		return nil, ErrUnseal
	}
	if err != nil {
		return nil, ErrUnseal
	}
	return out, nil
}
