package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/jwa"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// hs256 builds an HS256 token by hand, keyed with key: the classic
// algorithm-confusion forgery that uses a public key as an HMAC secret.
func hs256(header map[string]any, payload, key []byte) string {
	h, _ := json.Marshal(header)
	input := b64(h) + "." + b64(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + b64(mac.Sum(nil))
}

func TestVerifyRejects(t *testing.T) {
	clk := newClock()
	m := newManager(t, newStore(clk), clk, Options{Algorithms: []string{"EdDSA"}})
	payload := claims(t, clk.Now())
	good, err := m.Sign("ES256", payload, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	h := header(t, good)
	parts := strings.Split(good, ".")

	// A key with the same kid that is not ours.
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreignSigner, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256,
		Key: jose.JSONWebKey{Key: stranger, KeyID: h.KeyID}}, nil)
	foreignJWS, _ := foreignSigner.Sign(payload)
	foreign, _ := foreignJWS.CompactSerialize()
	unknownSigner, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256,
		Key: jose.JSONWebKey{Key: stranger, KeyID: "not-ours"}}, nil)
	unknownJWS, _ := unknownSigner.Sign(payload)
	unknown, _ := unknownJWS.CompactSerialize()

	// Our public key, in the forms an attacker would try as an HMAC secret.
	pubDER, _ := x509.MarshalPKIXPublicKey(m.state.Load().verify[h.KeyID].public)
	jwksBody, _ := m.JWKS()

	none := b64([]byte(`{"alg":"none","kid":"`+h.KeyID+`"}`)) + "." + parts[1] + "."
	tampered := parts[0] + "." + b64([]byte(strings.Replace(string(payload), "alice", "admin", 1))) + "." + parts[2]
	edTok, _ := m.Sign("EdDSA", payload, "JWT")
	// Header swapped to claim EdDSA while the kid is the ES256 key.
	swapped := b64([]byte(`{"alg":"EdDSA","kid":"`+h.KeyID+`","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]

	tests := []struct {
		name  string
		token string
		algs  []string
	}{
		{"alg none", none, nil},
		{"HS256 keyed with public key DER", hs256(map[string]any{"alg": "HS256", "kid": h.KeyID}, payload, pubDER), nil},
		{"HS256 keyed with JWKS body", hs256(map[string]any{"alg": "HS256", "kid": h.KeyID}, payload, jwksBody), nil},
		{"HS256 allowlisted explicitly", hs256(map[string]any{"alg": "HS256", "kid": h.KeyID}, payload, pubDER), []string{"HS256"}},
		{"foreign key reusing our kid", foreign, nil},
		{"unknown kid", unknown, nil},
		{"tampered payload", tampered, nil},
		{"truncated signature", good[:len(good)-4], nil},
		{"empty signature", parts[0] + "." + parts[1] + ".", nil},
		{"alg not in allowlist", good, []string{"RS256"}},
		{"alg of another of our keys", edTok, []string{"ES256"}},
		{"header alg swapped", swapped, nil},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, nil},
		{"garbage", "not.a.token", nil},
		{"empty", "", nil},
		{"oversized", strings.Repeat("A", 1<<20) + "." + parts[1] + "." + parts[2], nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, typ, err := m.Verify(tc.token, tc.algs...)
			if err == nil {
				t.Errorf("Verify(%s) = %s, %q, nil error; want rejection", tc.name, p, typ)
			}
		})
	}
	if _, _, err := m.Verify(unknown); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify(unknown kid) = %v, want ErrUnknownKey", err)
	}
	if _, _, err := m.Verify(good); err != nil {
		t.Errorf("Verify(good) = %v after the attack cases", err)
	}
}

func TestVerifyAcceptsNextKey(t *testing.T) {
	clk := newClock()
	m := newManager(t, newStore(clk), clk, Options{})
	st := m.state.Load()
	next := st.set.Algs["ES256"].Next
	k, err := m.sealer.decode(next)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256,
		Key: jose.JSONWebKey{Key: k.private, KeyID: k.kid}}, nil)
	jws, _ := s.Sign([]byte(`{"sub":"x"}`))
	tok, _ := jws.CompactSerialize()
	// Another replica that rotated first already signs with Next.
	if _, _, err := m.Verify(tok); err != nil {
		t.Errorf("Verify(token signed with the published next key) = %v", err)
	}
}

// TestVerifyRefusesCompressionAndExtensions: one of the broker's own keys
// signing a token whose header asks for compression (zip) or an extension
// (crit, b64) does not make Verify accept it; go-jose alone ignores zip.
func TestVerifyRefusesCompressionAndExtensions(t *testing.T) {
	clk := newClock()
	m := newManager(t, newStore(clk), clk, Options{})
	st := m.state.Load()
	sk := st.signing["ES256"]
	payload := claims(t, clk.Now())
	sign := func(opts *jose.SignerOptions) string {
		t.Helper()
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: sk.priv, KeyID: sk.kid}}, opts.WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		jws, err := s.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jws.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if _, _, err := m.Verify(sign(&jose.SignerOptions{})); err != nil {
		t.Fatalf("Verify(token signed with the active key) = %v", err)
	}
	for name, tok := range map[string]string{
		"zip DEF":  sign((&jose.SignerOptions{}).WithHeader("zip", "DEF")),
		"crit b64": sign((&jose.SignerOptions{}).WithHeader("b64", true).WithCritical("b64")),
		"b64":      sign((&jose.SignerOptions{}).WithHeader("b64", true)),
	} {
		if p, _, err := m.Verify(tok); !errors.Is(err, jwa.ErrHeader) {
			t.Errorf("Verify(%s) = %s, %v; want a jwa.ErrHeader refusal", name, p, err)
		}
	}
}

// TestVerifyRefusesNonCanonicalEncoding: one of the broker's own tokens
// respelled (CR, LF, the unused low bits of a segment's last character),
// which go-jose's lenient base64url would still verify, is refused; the
// token's string is then unique to what was signed.
func TestVerifyRefusesNonCanonicalEncoding(t *testing.T) {
	clk := newClock()
	m := newManager(t, newStore(clk), clk, Options{})
	good, err := m.Sign("ES256", claims(t, clk.Now()), "JWT")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	flip := func(seg string) string {
		return seg[:len(seg)-1] + string(alphabet[strings.IndexByte(alphabet, seg[len(seg)-1])^1])
	}
	bad := map[string]string{
		// An ES256 signature is 64 bytes: 86 characters, 4 unused bits.
		"unused bits of the signature": parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"LF in the payload":            parts[0] + "." + parts[1][:5] + "\n" + parts[1][5:] + "." + parts[2],
		"CRLF at the end":              good + "\r\n",
	}
	if len(parts[1])%4 != 0 {
		bad["unused bits of the payload"] = parts[0] + "." + flip(parts[1]) + "." + parts[2]
	}
	for name, tok := range bad {
		if p, _, err := m.Verify(tok); !errors.Is(err, jwa.ErrEncoding) {
			t.Errorf("Verify(%s) = %s, %v; want jwa.ErrEncoding", name, p, err)
		}
	}
	if _, _, err := m.Verify(good); err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}
}
