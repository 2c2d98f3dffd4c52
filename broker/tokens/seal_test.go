package tokens

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"testing"
)

func TestSealerBindsTheSession(t *testing.T) {
	s, err := NewSealer(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	blob := s.Seal([]byte("upstream-refresh-token"), "sid-A")
	if got, err := s.Open(blob, "sid-A"); err != nil || string(got) != "upstream-refresh-token" {
		t.Fatalf("Open(own session) = %q, %v", got, err)
	}
	if got, err := s.Open(blob, "sid-B"); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Open(blob moved to another session) = %q, %v; want ErrUnseal", got, err)
	}
	if bytes.Contains(blob, []byte("upstream-refresh-token")) {
		t.Fatal("sealed blob contains the plaintext")
	}
	other, _ := NewSealer(bytes.Repeat([]byte{8}, 32))
	if _, err := other.Open(blob, "sid-A"); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Open with another key-encryption key: %v; want ErrUnseal", err)
	}
	for _, bad := range [][]byte{{sealV2}, {7, 1, 2, 3}, append([]byte{sealV2}, make([]byte, 40)...)} {
		if _, err := s.Open(bad, "sid-A"); !errors.Is(err, ErrUnseal) {
			t.Errorf("Open(%x) = %v; want ErrUnseal", bad, err)
		}
	}
}

// TestSealerOpensVersion1 keeps sign-ins sealed before session binding
// refreshable: version 1 blobs were bound to a constant.
func TestSealerOpensVersion1(t *testing.T) {
	kek := bytes.Repeat([]byte{9}, 32)
	key, _ := hkdf.Key(sha256.New, kek, nil, "fedbroker connector data v1", 32)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcm.NonceSize())
	v1 := gcm.Seal(append([]byte{sealV1}, nonce...), nonce, []byte("old"), []byte("connector-data"))
	s, _ := NewSealer(kek)
	if got, err := s.Open(v1, "any-session"); err != nil || string(got) != "old" {
		t.Fatalf("Open(v1) = %q, %v", got, err)
	}
}

func TestSealerWithoutKeyPassesThrough(t *testing.T) {
	s, _ := NewSealer(nil)
	if got := s.Seal([]byte("x"), "sid"); string(got) != "x" {
		t.Fatalf("Seal without key = %q", got)
	}
}
