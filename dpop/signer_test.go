package dpop

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// foreignSigner is a crypto.Signer of no type NewSigner knows.
type foreignSigner struct{ crypto.Signer }

func (f foreignSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("not used")
}

func TestSignerRoundTrip(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, tt := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"P-256", ecKey(t, elliptic.P256()), "ES256"},
		{"P-384", ecKey(t, elliptic.P384()), "ES384"},
		{"RSA", rsaKey(t, 2048), "RS256"},
		{"Ed25519", ed, "EdDSA"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSigner(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Thumbprint(jose.JSONWebKey{Key: tt.key.Public()})
			if s.Thumbprint() != want {
				t.Errorf("Thumbprint() = %q, want %q", s.Thumbprint(), want)
			}
			proof, err := s.Proof("POST", testURL+"?q=1#frag", testToken, "n-1")
			if err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(tt.alg)})
			if err != nil {
				t.Fatalf("alg is not %s: %v", tt.alg, err)
			}
			if jwk := jws.Signatures[0].Protected.JSONWebKey; jwk == nil || !jwk.IsPublic() {
				t.Errorf("jwk header = %+v, want the public key", jwk)
			}
			p, err := Verify(proof, Check{Method: "POST", URL: testURL, AccessToken: testToken, Nonce: "n-1"})
			if err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			if p.URL != testURL || p.Thumbprint != want || p.Nonce != "n-1" || time.Since(p.IssuedAt) > 2*time.Second {
				t.Errorf("Verify() = %+v; want htu without query and fragment, iat now", p)
			}
		})
	}
}

func TestSignerProofOmitsAthAndNonce(t *testing.T) {
	s, err := NewSigner(ecKey(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	proof, err := s.Proof("GET", testURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Verify(proof, Check{Method: "GET", URL: testURL})
	if err != nil {
		t.Fatal(err)
	}
	if p.ATH != "" || p.Nonce != "" {
		t.Errorf("Verify() = %+v, want no ath and no nonce", p)
	}
	// A proof made without a token is no good with one.
	if _, err := Verify(proof, Check{Method: "GET", URL: testURL, AccessToken: testToken}); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("Verify() with a token error = %v, want ErrInvalidProof", err)
	}
}

func TestSignerFreshJTI(t *testing.T) {
	s, err := NewSigner(ecKey(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 50 {
		proof, err := s.Proof("POST", testURL, "", "")
		if err != nil {
			t.Fatal(err)
		}
		p, err := Verify(proof, Check{Method: "POST", URL: testURL})
		if err != nil {
			t.Fatal(err)
		}
		if seen[p.JTI] || len(p.JTI) < 20 {
			t.Fatalf("jti %q repeated or short", p.JTI)
		}
		seen[p.JTI] = true
	}
}

func TestNewSignerRefuses(t *testing.T) {
	for name, key := range map[string]crypto.Signer{
		"P-521":         ecKey(t, elliptic.P521()),
		"RSA 1024":      rsaKey(t, 1024),
		"foreign":       foreignSigner{ecKey(t, elliptic.P256())},
		"nil interface": nil,
	} {
		if s, err := NewSigner(key); err == nil {
			t.Errorf("NewSigner(%s) = %v, want an error", name, s)
		}
	}
}

func TestSignerProofRefuses(t *testing.T) {
	s, err := NewSigner(ecKey(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ method, url string }{
		{"", testURL},
		{"POST", "/relative"},
		{"POST", "ftp://rs.example.com/x"},
		{"POST", "https://" + strings.Repeat("a", maxURLLength)},
	} {
		if p, err := s.Proof(tt.method, tt.url, "", ""); err == nil {
			t.Errorf("Proof(%q, %q) = %q, want an error", tt.method, tt.url, p)
		}
	}
}

// A signer with its clock set back makes proofs that servers refuse as
// stale: Verify does compare iat with its own clock.
func TestSignerClock(t *testing.T) {
	s, err := NewSigner(ecKey(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return time.Now().Add(-2 * DefaultSkew) }
	proof, err := s.Proof("POST", testURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(proof, Check{Method: "POST", URL: testURL}); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("Verify(stale) error = %v, want ErrInvalidProof", err)
	}
}
