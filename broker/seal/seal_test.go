package seal

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	a, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	blob := a.Seal([]byte("upstream refresh token"), []byte("record-1"))
	got, err := a.Open(blob, []byte("record-1"))
	if err != nil || string(got) != "upstream refresh token" {
		t.Fatalf("Open = %q, %v; want the plaintext", got, err)
	}
	other, _ := Derive(key, "another purpose")
	tampered := bytes.Clone(blob)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name string
		a    *AEAD
		blob []byte
		ad   string
	}{
		{"moved to another record", a, blob, "record-2"},
		{"no additional data", a, blob, ""},
		{"other key", other, blob, "record-1"},
		{"tampered", a, tampered, "record-1"},
		{"truncated", a, blob[:10], "record-1"},
		{"empty", a, nil, "record-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := tc.a.Open(tc.blob, []byte(tc.ad)); !errors.Is(err, ErrOpen) {
				t.Fatalf("Open = %q, %v; want ErrOpen", got, err)
			}
		})
	}
}

func TestNonceIsFresh(t *testing.T) {
	a, _ := New(bytes.Repeat([]byte{1}, KeySize))
	if bytes.Equal(a.Seal([]byte("x"), nil), a.Seal([]byte("x"), nil)) {
		t.Fatal("two seals of the same plaintext are equal: nonce reused")
	}
}

func TestNewRejectsBadKey(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New(%d bytes) accepted", n)
		}
	}
}
