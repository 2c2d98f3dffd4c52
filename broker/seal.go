package broker

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// sealer encrypts connector data (upstream refresh tokens) before it goes
// to storage, with AES-256-GCM under a key derived from the configured
// key-encryption key. Without a key it passes data through unchanged (the
// broker warns at start).
type sealer struct {
	aead cipher.AEAD
}

const sealVersion = 1

func newSealer(kek []byte) (*sealer, error) {
	if len(kek) == 0 {
		return &sealer{}, nil
	}
	key, err := hkdf.Key(sha256.New, kek, nil, "fedbroker connector data v1", 32)
	if err != nil {
		return nil, fmt.Errorf("broker: derive connector data key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("broker: connector data key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("broker: connector data key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts data; the family or session id it belongs to is bound as
// additional data so a sealed blob cannot be moved to another record.
func (s *sealer) seal(data []byte) []byte {
	if s.aead == nil || len(data) == 0 {
		return data
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(data)+s.aead.Overhead()+1)
	_, _ = rand.Read(nonce)
	out := append([]byte{sealVersion}, nonce...)
	return s.aead.Seal(out, nonce, data, []byte("connector-data"))
}

var errUnseal = errors.New("broker: connector data cannot be decrypted (key-encryption key changed?)")

func (s *sealer) open(blob []byte) ([]byte, error) {
	if s.aead == nil || len(blob) == 0 {
		return blob, nil
	}
	ns := s.aead.NonceSize()
	if len(blob) < 1+ns+s.aead.Overhead() || blob[0] != sealVersion {
		return nil, errUnseal
	}
	out, err := s.aead.Open(nil, blob[1:1+ns], blob[1+ns:], []byte("connector-data"))
	if err != nil {
		return nil, errUnseal
	}
	return out, nil
}
