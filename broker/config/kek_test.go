package config

import (
	"bytes"
	"encoding/base64"
	"testing"
)

// TestSigningKEK: every base64 form Validate accepts decodes to the same key
// the broker uses; wrong lengths and garbage are errors.
func TestSigningKEK(t *testing.T) {
	key := bytes.Repeat([]byte{0xfb}, 32)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		s := Signing{KeyEncryptionKey: enc.EncodeToString(key)}
		got, err := s.KEK()
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("KEK(%q) = %x, %v; want the key", s.KeyEncryptionKey, got, err)
		}
	}
	if k, err := (Signing{}).KEK(); k != nil || err != nil {
		t.Errorf("KEK() with none configured = %x, %v; want nil, nil", k, err)
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString(key[:16])} {
		if _, err := (Signing{KeyEncryptionKey: bad}).KEK(); err == nil {
			t.Errorf("KEK(%q) = nil error, want one", bad)
		}
	}
}
