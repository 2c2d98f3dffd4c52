// Package seal is the broker's one authenticated encryption of data at
// rest: AES-256-GCM with a random nonce, the sealed form being
// nonce || ciphertext. Additional data binds a blob to the record it
// belongs to (a signing key's id, a session's id), so a blob copied into
// another record does not open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// KeySize is the size of a sealing key: AES-256.
const KeySize = 32

// ErrOpen means a blob did not open: the wrong key, other additional data
// (a blob moved to another record), or corrupt data. It never says which.
var ErrOpen = errors.New("seal: cannot decrypt")

// AEAD seals and opens blobs under one key.
type AEAD struct{ aead cipher.AEAD }

// New returns an AEAD keyed with key, which must be KeySize bytes.
func New(key []byte) (*AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &AEAD{aead: gcm}, nil
}

// Derive returns an AEAD keyed with a key derived from secret for one
// purpose (HKDF-SHA256 with info), so one configured key-encryption key
// can serve several uses without their blobs being interchangeable.
func Derive(secret []byte, info string) (*AEAD, error) {
	key, err := hkdf.Key(sha256.New, secret, nil, info, KeySize)
	if err != nil {
		return nil, fmt.Errorf("seal: derive key: %w", err)
	}
	return New(key)
}

// Seal encrypts plain, bound to additional data ad.
func (a *AEAD) Seal(plain, ad []byte) []byte {
	ns := a.aead.NonceSize()
	out := make([]byte, ns, ns+len(plain)+a.aead.Overhead())
	_, _ = rand.Read(out) // never fails on supported platforms (Go 1.24+)
	return a.aead.Seal(out, out[:ns], plain, ad)
}

// Open decrypts a blob made by Seal with the same additional data.
func (a *AEAD) Open(blob, ad []byte) ([]byte, error) {
	ns := a.aead.NonceSize()
	if len(blob) < ns+a.aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := a.aead.Open(nil, blob[:ns], blob[ns:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}
