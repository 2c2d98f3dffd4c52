package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	testURL   = "https://rs.example.com/orders"
	testToken = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testCheck is the request every test proof is made for.
func testCheck() Check {
	return Check{Method: "POST", URL: testURL, Now: testNow, AccessToken: testToken}
}

// testClaims are valid claims for testCheck.
func testClaims() map[string]any {
	return map[string]any{
		"jti": "e1j3V_bKic8-LAEB",
		"htm": "POST",
		"htu": testURL,
		"iat": testNow.Unix(),
		"ath": ATH(testToken),
	}
}

// craft signs claims with go-jose: alg and key as given, the public key
// embedded as jwk when embed is set, and the extra protected headers hdr
// (typ "dpop+jwt" unless hdr names typ).
func craft(t testing.TB, key any, alg jose.SignatureAlgorithm, hdr map[jose.HeaderKey]any, claims any, embed bool) string {
	t.Helper()
	h := map[jose.HeaderKey]any{jose.HeaderType: Type}
	maps.Copy(h, hdr)
	for k, v := range h {
		if v == nil {
			delete(h, k)
		}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, &jose.SignerOptions{EmbedJWK: embed, ExtraHeaders: h})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(body)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func seg(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestVerifyAccepts(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rs := rsaKey(t, 2048)
	tests := []struct {
		name  string
		key   crypto.Signer
		alg   jose.SignatureAlgorithm
		check func(*Check)
		claim func(map[string]any)
	}{
		{name: "ES256", key: ecKey(t, elliptic.P256()), alg: jose.ES256},
		{name: "ES384", key: ecKey(t, elliptic.P384()), alg: jose.ES384},
		{name: "RS256", key: rs, alg: jose.RS256},
		{name: "PS256", key: rs, alg: jose.PS256},
		{name: "EdDSA", key: ed, alg: jose.EdDSA},
		{name: "ES512 when allowed", key: ecKey(t, elliptic.P521()), alg: jose.ES512, check: func(c *Check) { c.Algorithms = []string{"ES512"} }},
		{name: "no access token, no ath", key: ed, alg: jose.EdDSA, check: func(c *Check) { c.AccessToken = "" }, claim: func(m map[string]any) { delete(m, "ath") }},
		{name: "iat at the edge of the skew, past", key: ed, alg: jose.EdDSA, claim: func(m map[string]any) { m["iat"] = testNow.Add(-DefaultSkew).Unix() }},
		{name: "iat at the edge of the skew, future", key: ed, alg: jose.EdDSA, claim: func(m map[string]any) { m["iat"] = testNow.Add(DefaultSkew).Unix() }},
		{name: "fractional iat", key: ed, alg: jose.EdDSA, claim: func(m map[string]any) { m["iat"] = float64(testNow.Unix()) + 0.5 }},
		{name: "wider skew", key: ed, alg: jose.EdDSA, check: func(c *Check) { c.Skew = 5 * time.Minute }, claim: func(m map[string]any) { m["iat"] = testNow.Add(-4 * time.Minute).Unix() }},
		{name: "nonce", key: ed, alg: jose.EdDSA, check: func(c *Check) { c.Nonce = "n-1" }, claim: func(m map[string]any) { m["nonce"] = "n-1" }},
		{name: "htu normalised", key: ed, alg: jose.EdDSA, claim: func(m map[string]any) { m["htu"] = "HTTPS://RS.Example.COM:443/x/../%6Frders" }},
		{name: "request URL with query", key: ed, alg: jose.EdDSA, check: func(c *Check) { c.URL = testURL + "?page=2#top" }},
		{name: "unknown claims and headers", key: ed, alg: jose.EdDSA, claim: func(m map[string]any) { m["extra"] = []int{1} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, m := testCheck(), testClaims()
			if tt.check != nil {
				tt.check(&c)
			}
			if tt.claim != nil {
				tt.claim(m)
			}
			p, err := Verify(craft(t, tt.key, tt.alg, nil, m, true), c)
			if err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			want, err := Thumbprint(jose.JSONWebKey{Key: tt.key.Public()})
			if err != nil {
				t.Fatal(err)
			}
			if p.Thumbprint != want || p.JTI != m["jti"] || p.Method != "POST" || p.URL != m["htu"] {
				t.Errorf("Verify() = %+v, want thumbprint %s and the sent claims", p, want)
			}
			if !p.Key.IsPublic() {
				t.Errorf("Proof.Key is not a public key")
			}
			if c.AccessToken != "" && p.ATH != ATH(testToken) {
				t.Errorf("Proof.ATH = %q", p.ATH)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	ec := ecKey(t, elliptic.P256())
	other := ecKey(t, elliptic.P256())
	good := craft(t, ec, jose.ES256, nil, testClaims(), true)
	parts := strings.Split(good, ".")
	pubJWK := jose.JSONWebKey{Key: ec.Public()}
	privJWK := jose.JSONWebKey{Key: ec}
	with := func(f func(map[string]any)) map[string]any {
		m := testClaims()
		f(m)
		return m
	}
	tests := []struct {
		name  string
		proof string
		check func(*Check)
		why   string // the refusal's detail contains it
		nonce bool   // want ErrUseNonce rather than ErrInvalidProof
	}{
		{name: "empty", why: "not a compact JWS", proof: ""},
		{name: "oversized", why: "exceeds 8192", proof: good + strings.Repeat("A", MaxProofSize)},
		{name: "two segments", why: "not a compact JWS", proof: parts[0] + "." + parts[1]},
		{name: "four segments", why: "not a compact JWS", proof: good + ".e30"},
		{name: "JSON serialization", why: "not a compact JWS", proof: `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`},
		{name: "non-canonical base64", why: "jwa: JWS not in canonical compact serialization: segment 3", proof: parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + "B"},
		{name: "padding", why: "jwa: JWS not in canonical compact serialization: segment 3", proof: good + "=="},
		{name: "whitespace", why: "jwa: JWS not in canonical compact serialization: segment 2", proof: parts[0] + ".\n" + parts[1] + "." + parts[2]},
		{name: "tampered payload", why: "signature does not verify with the jwk header", proof: parts[0] + "." + seg(with(func(m map[string]any) { m["htm"] = "GET" })) + "." + parts[2]},
		{name: "typ JWT", why: "typ \"JWT\", want \"dpop+jwt\"", proof: craft(t, ec, jose.ES256, map[jose.HeaderKey]any{jose.HeaderType: "JWT"}, testClaims(), true)},
		{name: "typ upper case", why: "typ \"DPOP+JWT\", want \"dpop+jwt\"", proof: craft(t, ec, jose.ES256, map[jose.HeaderKey]any{jose.HeaderType: "DPOP+JWT"}, testClaims(), true)},
		{name: "typ missing", why: "typ \"\", want \"dpop+jwt\"", proof: craft(t, ec, jose.ES256, map[jose.HeaderKey]any{jose.HeaderType: nil}, testClaims(), true)},
		{name: "typ not a string", why: "typ \"\", want \"dpop+jwt\"", proof: craft(t, ec, jose.ES256, map[jose.HeaderKey]any{jose.HeaderType: 1}, testClaims(), true)},
		{name: "alg none", why: "unexpected signature algorithm \"none\"", proof: seg(map[string]any{"alg": "none", "typ": Type, "jwk": pubJWK}) + "." + parts[1] + "."},
		{name: "alg HS256 with oct jwk", why: "unexpected signature algorithm \"HS256\"", proof: craft(t, []byte(strings.Repeat("k", 32)), jose.HS256, map[jose.HeaderKey]any{"jwk": map[string]string{"kty": "oct", "k": "a2tr"}}, testClaims(), false)},
		{name: "alg HS256 keyed with the public jwk", why: "unexpected signature algorithm \"HS256\"", proof: craft(t, []byte(seg(pubJWK)), jose.HS256, map[jose.HeaderKey]any{"jwk": pubJWK}, testClaims(), false)},
		{name: "alg outside the allowlist", why: "unexpected signature algorithm \"ES256\"", proof: craft(t, ec, jose.ES256, nil, testClaims(), true), check: func(c *Check) { c.Algorithms = []string{"EdDSA"} }},
		{name: "ES512 not in the defaults", why: "unexpected signature algorithm \"ES512\"", proof: craft(t, ecKey(t, elliptic.P521()), jose.ES512, nil, testClaims(), true)},
		{name: "no jwk", why: "no jwk header", proof: craft(t, ec, jose.ES256, nil, testClaims(), false)},
		{name: "private key in jwk", why: "JWK contains private parameters", proof: craft(t, ec, jose.ES256, map[jose.HeaderKey]any{"jwk": privJWK}, testClaims(), false)},
		{name: "symmetric jwk", why: "JWK contains private parameters", proof: craft(t, ec, jose.ES256, map[jose.HeaderKey]any{"jwk": map[string]string{"kty": "oct", "k": "a2tr"}}, testClaims(), false)},
		{name: "jwk of another key", why: "signature does not verify with the jwk header", proof: craft(t, ec, jose.ES256, map[jose.HeaderKey]any{"jwk": jose.JSONWebKey{Key: other.Public()}}, testClaims(), false)},
		{name: "jwk curve does not fit alg", why: "jwk does not fit alg \"ES256\"", proof: craft(t, ecKey(t, elliptic.P384()), jose.ES384, map[jose.HeaderKey]any{"alg": "ES256"}, testClaims(), true)},
		{name: "jwk alg differs", why: "jwk alg \"ES384\", proof alg \"ES256\"", proof: craft(t, ec, jose.ES256, map[jose.HeaderKey]any{"jwk": jose.JSONWebKey{Key: ec.Public(), Algorithm: "ES384"}}, testClaims(), false)},
		{name: "RSA key of 1024 bits", why: "RSA key shorter than 2048 bits", proof: craft(t, rsaKey(t, 1024), jose.RS256, nil, testClaims(), true)},
		{name: "crit header", why: "jwa: JWS header parameter not accepted: \"crit\"", proof: craft(t, ec, jose.ES256, map[jose.HeaderKey]any{"crit": []string{"exp"}, "exp": 1}, testClaims(), true)},
		{name: "zip header", why: "jwa: JWS header parameter not accepted: \"zip\"", proof: craft(t, ec, jose.ES256, map[jose.HeaderKey]any{"zip": "DEF"}, testClaims(), true)},
		{name: "claims not an object", why: "claims: json: cannot unmarshal array into Go value of type d", proof: craft(t, ec, jose.ES256, nil, []string{"jti"}, true)},
		{name: "no jti", why: "no jti", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { delete(m, "jti") }), true)},
		{name: "empty jti", why: "no jti", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["jti"] = "" }), true)},
		{name: "jti too long", why: "jti longer than 256 bytes", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["jti"] = strings.Repeat("j", MaxJTILength+1) }), true)},
		{name: "jti a number", why: "claims: json: cannot unmarshal number into Go struct field p", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["jti"] = 7 }), true)},
		{name: "no htm", why: "no htm", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { delete(m, "htm") }), true)},
		{name: "wrong htm", why: "htm \"GET\", want \"POST\"", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htm"] = "GET" }), true)},
		{name: "htm lower case", why: "htm \"post\", want \"POST\"", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htm"] = "post" }), true)},
		{name: "no htu", why: "no htu", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { delete(m, "htu") }), true)},
		{name: "htu other path", why: "htu does not match the request URL", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htu"] = "https://rs.example.com/admin" }), true)},
		{name: "htu other host", why: "htu does not match the request URL", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htu"] = "https://evil.example.com/orders" }), true)},
		{name: "htu http", why: "htu does not match the request URL", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htu"] = "http://rs.example.com/orders" }), true)},
		{name: "htu other port", why: "htu does not match the request URL", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htu"] = "https://rs.example.com:8443/orders" }), true)},
		{name: "htu trailing slash", why: "htu does not match the request URL", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htu"] = testURL + "/" }), true)},
		{name: "htu encoded slash", why: "htu does not match the request URL", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htu"] = "https://rs.example.com/ord%2Fers" }), true)},
		{name: "htu with user info", why: "htu does not match the request URL", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htu"] = "https://u@rs.example.com/orders" }), true)},
		{name: "htu relative", why: "htu does not match the request URL", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htu"] = "/orders" }), true)},
		{name: "htu bad escape", why: "htu does not match the request URL", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["htu"] = "https://rs.example.com/%zz" }), true)},
		{name: "no iat", why: "no iat", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { delete(m, "iat") }), true)},
		{name: "iat a string", why: "claims: json: cannot unmarshal string into Go struct field p", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["iat"] = "1772366400" }), true)},
		{name: "stale iat", why: "iat too old", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["iat"] = testNow.Add(-DefaultSkew - time.Second).Unix() }), true)},
		{name: "future iat", why: "iat in the future", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["iat"] = testNow.Add(DefaultSkew + time.Second).Unix() }), true)},
		{name: "negative iat", why: "iat out of range", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["iat"] = -1 }), true)},
		{name: "huge iat", why: "iat out of range", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["iat"] = 1e300 }), true)},
		{name: "stale iat with narrow skew", why: "iat too old", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["iat"] = testNow.Add(-10 * time.Second).Unix() }), true), check: func(c *Check) { c.Skew = 5 * time.Second }},
		{name: "missing ath", why: "no ath", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { delete(m, "ath") }), true)},
		{name: "wrong ath", why: "ath does not match the access token", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["ath"] = ATH("another-token") }), true)},
		{name: "ath a number", why: "claims: json: cannot unmarshal number into Go struct field p", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["ath"] = 1 }), true)},
		{name: "missing nonce", why: "no nonce", proof: good, check: func(c *Check) { c.Nonce = "n-2" }, nonce: true},
		{name: "wrong nonce", why: "stale or unknown nonce", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) { m["nonce"] = "n-1" }), true), check: func(c *Check) { c.Nonce = "n-2" }, nonce: true},
		{name: "right nonce, stale iat", why: "iat too old", proof: craft(t, ec, jose.ES256, nil, with(func(m map[string]any) {
			m["nonce"] = "n-2"
			m["iat"] = 1
		}), true), check: func(c *Check) { c.Nonce = "n-2" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testCheck()
			if tt.check != nil {
				tt.check(&c)
			}
			p, err := Verify(tt.proof, c)
			if err == nil {
				t.Fatalf("Verify() = %+v, want an error", p)
			}
			if p != nil {
				t.Errorf("Verify() returned a proof with error %v", err)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("Verify() error = %v, want the detail %q", err, tt.why)
			}
			if got := errors.Is(err, ErrUseNonce); got != tt.nonce {
				t.Errorf("Verify() error = %v; errors.Is(ErrUseNonce) = %v, want %v", err, got, tt.nonce)
			}
			if got := errors.Is(err, ErrInvalidProof); got == tt.nonce {
				t.Errorf("Verify() error = %v; errors.Is(ErrInvalidProof) = %v, want %v", err, got, !tt.nonce)
			}
		})
	}
	// The unmodified proof passes, so every refusal above is the mutation's.
	if _, err := Verify(good, testCheck()); err != nil {
		t.Fatalf("Verify(good) error = %v", err)
	}
}

func TestVerifyUnusableCheck(t *testing.T) {
	proof := craft(t, ecKey(t, elliptic.P256()), jose.ES256, nil, testClaims(), true)
	for name, f := range map[string]func(*Check){
		"no method":         func(c *Check) { c.Method = "" },
		"relative URL":      func(c *Check) { c.URL = "/orders" },
		"ftp URL":           func(c *Check) { c.URL = "ftp://rs.example.com/orders" },
		"negative skew":     func(c *Check) { c.Skew = -time.Second },
		"HMAC algorithm":    func(c *Check) { c.Algorithms = []string{"ES256", "HS256"} },
		"none algorithm":    func(c *Check) { c.Algorithms = []string{"none"} },
		"empty algorithms":  func(c *Check) { c.Algorithms = []string{} },
		"URL without host":  func(c *Check) { c.URL = "https:///orders" },
		"URL with userinfo": func(c *Check) { c.URL = "https://a:b@rs.example.com/orders" },
	} {
		t.Run(name, func(t *testing.T) {
			c := testCheck()
			f(&c)
			_, err := Verify(proof, c)
			if err == nil || errors.Is(err, ErrInvalidProof) || errors.Is(err, ErrUseNonce) {
				t.Errorf("Verify() error = %v, want a configuration error", err)
			}
		})
	}
}

func TestThumbprint(t *testing.T) {
	// RFC 7638 §3.1.
	var k jose.JSONWebKey
	err := k.UnmarshalJSON([]byte(`{"kty":"RSA","e":"AQAB","alg":"RS256","kid":"2011-04-29",` +
		`"n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(k)
	if err != nil || got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Errorf("Thumbprint() = %q, %v; want the RFC 7638 value", got, err)
	}
	ec := ecKey(t, elliptic.P256())
	pub, _ := Thumbprint(jose.JSONWebKey{Key: ec.Public()})
	priv, _ := Thumbprint(jose.JSONWebKey{Key: ec})
	if pub == "" || pub != priv {
		t.Errorf("Thumbprint(public) = %q, Thumbprint(private) = %q; want equal", pub, priv)
	}
	for name, k := range map[string]jose.JSONWebKey{"symmetric": {Key: []byte("secret")}, "empty": {}} {
		if tp, err := Thumbprint(k); err == nil {
			t.Errorf("Thumbprint(%s) = %q, want an error", name, tp)
		}
	}
}

func TestATH(t *testing.T) {
	// RFC 9449 §7.1.
	if got := ATH(testToken); got != "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo" {
		t.Errorf("ATH() = %q, want the RFC 9449 value", got)
	}
}
