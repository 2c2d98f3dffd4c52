package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// privateBytes returns byte strings that would reveal a private key.
func privateBytes(t *testing.T, k key) [][]byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k.private)
	if err != nil {
		t.Fatal(err)
	}
	out := [][]byte{der, []byte(base64.StdEncoding.EncodeToString(der))}
	if ec, ok := k.private.(*ecdsa.PrivateKey); ok {
		d, err := ec.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d, []byte(base64.StdEncoding.EncodeToString(d)), []byte(base64.RawURLEncoding.EncodeToString(d)))
	}
	return out
}

func TestKEKSealsPrivateKeys(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	kek := bytes.Repeat([]byte{0x42}, 32)
	m := newManager(t, store, clk, Options{KEK: kek, Algorithms: []string{"RS256", "EdDSA"}})
	blob, _, err := store.GetKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, marker := range []string{"PRIVATE KEY", "-----BEGIN", `"seal":"none"`} {
		if bytes.Contains(blob, []byte(marker)) {
			t.Errorf("stored key set contains %q", marker)
		}
	}
	st := m.state.Load()
	for _, sk := range st.signing {
		for _, secret := range privateBytes(t, key{private: sk.priv}) {
			if bytes.Contains(blob, secret) {
				t.Errorf("stored key set contains private material of %s in clear", sk.kid)
			}
		}
	}
	var set keySet
	if err := json.Unmarshal(blob, &set); err != nil {
		t.Fatal(err)
	}
	for alg, as := range set.Algs {
		for _, k := range []storedKey{as.Active, as.Next} {
			if k.Seal != sealAESGCM {
				t.Errorf("%s key %s seal = %q, want %q", alg, k.KID, k.Seal, sealAESGCM)
			}
		}
	}

	tests := []struct {
		name string
		kek  []byte
		want string
	}{
		{"wrong KEK", bytes.Repeat([]byte{0x43}, 32), "wrong key-encryption key"},
		{"no KEK", nil, "no key-encryption key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{KEK: tc.kek, Now: clk.Now, Algorithms: []string{"RS256", "EdDSA"}}
			_, err := New(context.Background(), store, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(%s) error = %v, want one containing %q", tc.name, err, tc.want)
			}
		})
	}
	// A wrong KEK must not overwrite the stored set either.
	after, _, _ := store.GetKeys(context.Background())
	if !bytes.Equal(after, blob) {
		t.Error("a failed New changed the stored key set")
	}

	// A key moved to another kid does not open: the kid is bound as
	// additional data.
	as := set.Algs["ES256"]
	as.Active.KID = as.Next.KID + "x"
	if _, err := m.sealer.decode(as.Active); err == nil {
		t.Error("decode of a sealed key under another kid = nil error")
	}
}

func TestNoKEKWarnsAndStoresClear(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	log, buf := logBuffer()
	m, err := New(context.Background(), store, Options{Now: clk.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "UNENCRYPTED") {
		t.Errorf("log = %q, want a WARN about unencrypted keys", buf.String())
	}
	blob, _, _ := store.GetKeys(context.Background())
	if !bytes.Contains(blob, []byte(`"seal":"none"`)) {
		t.Error("stored set without KEK does not mark keys as unsealed")
	}
	// A later replica configured with a KEK still loads the clear set.
	m2 := newManager(t, store, clk, Options{KEK: bytes.Repeat([]byte{1}, 32)})
	if activeKid(t, m2, "ES256") != activeKid(t, m, "ES256") {
		t.Error("Manager with a KEK signs with another key than the clear set's")
	}
	// Its next write seals every private key left in clear.
	if err := m2.RotateNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	blob, _, _ = store.GetKeys(context.Background())
	if bytes.Contains(blob, []byte(`"seal":"none"`)) {
		t.Error("stored set still has keys in clear after a write with a KEK")
	}
	for _, secret := range privateBytes(t, key{private: m2.state.Load().signing["ES256"].priv}) {
		if bytes.Contains(blob, secret) {
			t.Error("stored set contains the active private key in clear after a write with a KEK")
		}
	}
}

func TestLogsNeverCarryPrivateKeys(t *testing.T) {
	clk := newClock()
	log, buf := logBuffer()
	m, err := New(context.Background(), newStore(clk), Options{Now: clk.Now, Logger: log, KEK: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RotateNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "signing key rotated") {
		t.Errorf("log = %q, want the rotation logged", buf.String())
	}
	for _, secret := range privateBytes(t, key{private: m.state.Load().signing["ES256"].priv}) {
		if bytes.Contains(buf.Bytes(), secret) {
			t.Error("log contains private key material")
		}
	}
}
