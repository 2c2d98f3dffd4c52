package jwa

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

// TestParsePrivateKeyPEM: the first private key of a PEM file in any of
// the three encodings, after other blocks such as certificates; refusals
// say what was wrong.
func TestParsePrivateKeyPEM(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	block := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }
	pkcs8 := func(k any) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sec1, _ := x509.MarshalECPrivateKey(ec)
	cert := block("CERTIFICATE", []byte("not parsed"))
	for _, tc := range []struct {
		name, pem, wantErr string
	}{
		{"PKCS#8 ECDSA", block("PRIVATE KEY", pkcs8(ec)), ""},
		{"PKCS#8 Ed25519", block("PRIVATE KEY", pkcs8(ed)), ""},
		{"PKCS#1 RSA after a certificate", cert + block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rs)), ""},
		{"SEC 1 ECDSA", block("EC PRIVATE KEY", sec1), ""},
		{"empty", "", "no PEM private key found"},
		{"only a certificate", cert, "no PEM private key found"},
		{"encrypted", block("ENCRYPTED PRIVATE KEY", []byte{1}), "encrypted"},
		{"garbage in a key block", block("PRIVATE KEY", []byte("garbage")), "cannot parse the PRIVATE KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParsePrivateKeyPEM([]byte(tc.pem))
			switch {
			case tc.wantErr == "" && (err != nil || s == nil):
				t.Fatalf("ParsePrivateKeyPEM = %v, %v", s, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("ParsePrivateKeyPEM error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
