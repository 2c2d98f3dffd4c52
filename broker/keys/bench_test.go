package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// benchPayload is an ID-token payload of about 400 bytes.
func benchPayload(b *testing.B) []byte {
	b.Helper()
	p, err := json.Marshal(map[string]any{
		"iss": "https://broker.example.com", "sub": "u_8f14e45fceea167a5a36dedd4bea2543",
		"aud": "internal-dashboard", "exp": 1767326645, "iat": 1767326345, "auth_time": 1767326300,
		"nonce": "n-0S6_WzA2Mj", "email": "alice@example.com", "email_verified": true,
		"name": "Alice Example", "groups": []string{"engineering", "platform", "oncall-primary"},
		"amr": []string{"pwd", "mfa"}, "sid": "s_6512bd43d9caa6e02c990b0a82652dca",
		"at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
	})
	if err != nil {
		b.Fatal(err)
	}
	if len(p) < 350 || len(p) > 450 {
		b.Fatalf("payload is %d bytes, want about 400", len(p))
	}
	return p
}

func benchManager(b *testing.B, alg string) *Manager {
	b.Helper()
	clk := newClock()
	m, err := New(context.Background(), newStore(clk), Options{Algorithm: alg, Now: clk.Now, KEK: make([]byte, 32), MaxTokenLifetime: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func benchSign(b *testing.B, alg string) {
	m := benchManager(b, alg)
	p := benchPayload(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Sign("", p, "JWT"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignES256(b *testing.B) { benchSign(b, "ES256") }
func BenchmarkSignRS256(b *testing.B) { benchSign(b, "RS256") }
func BenchmarkSignEdDSA(b *testing.B) { benchSign(b, "EdDSA") }

func BenchmarkVerifyES256(b *testing.B) {
	m := benchManager(b, "ES256")
	tok, err := m.Sign("", benchPayload(b), "JWT")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := m.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawJoseSignES256 is a bare go-jose signer on the same payload,
// the floor Sign is compared against.
func BenchmarkRawJoseSignES256(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "kid"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		b.Fatal(err)
	}
	p := benchPayload(b)
	b.ReportAllocs()
	for b.Loop() {
		jws, err := s.Sign(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.CompactSerialize(); err != nil {
			b.Fatal(err)
		}
	}
}
