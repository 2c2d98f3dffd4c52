package verify

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

func TestVerifyAccepts(t *testing.T) {
	is, es, v, clock := setup(t)
	rs, ed := newKey(t, jose.RS256), newKey(t, jose.EdDSA)
	is.publish(rs, ed)

	tests := []struct {
		name   string
		key    testKey
		typ    string
		mutate func(map[string]any)
	}{
		{name: "ES256", key: es, typ: "at+jwt"},
		{name: "RS256", key: rs, typ: "at+jwt"},
		{name: "EdDSA", key: ed, typ: "at+jwt"},
		{name: "typ media type", key: es, typ: "application/at+jwt"},
		{name: "typ upper case", key: es, typ: "AT+JWT"},
		{name: "aud as string", key: es, typ: "at+jwt", mutate: func(c map[string]any) { c["aud"] = testAudience }},
		{name: "expired within leeway", key: es, typ: "at+jwt", mutate: func(c map[string]any) {
			c["exp"] = clock.now().Add(-DefaultLeeway + time.Second).Unix()
		}},
		{name: "iat in future within leeway", key: es, typ: "at+jwt", mutate: func(c map[string]any) {
			c["iat"] = clock.now().Add(DefaultLeeway - time.Second).Unix()
		}},
		{name: "no kid", key: testKey{alg: jose.ES256, priv: es.priv}, typ: "at+jwt"},
		{name: "no nbf", key: es, typ: "at+jwt", mutate: func(c map[string]any) { delete(c, "nbf") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := is.claims()
			if tt.mutate != nil {
				tt.mutate(c)
			}
			got, err := v.Verify(t.Context(), sign(t, tt.key, tt.typ, c))
			if err != nil {
				t.Fatalf("Verify() error = %v, want nil", err)
			}
			if got.Subject != "user-123" || got.Issuer != is.url() || !got.HasScope("orders:read") {
				t.Errorf("Verify() claims = %+v, want sub user-123, iss %s, scope orders:read", got, is.url())
			}
		})
	}
}

func TestVerifyClaims(t *testing.T) {
	is, k, v, clock := setup(t)
	c := is.claims()
	got, err := v.Verify(t.Context(), sign(t, k, "at+jwt", c))
	if err != nil {
		t.Fatalf("Verify() error = %v", err)
	}
	now := clock.now()
	raw := map[string]any{}
	b, _ := json.Marshal(c)
	_ = json.Unmarshal(b, &raw)
	want := &Claims{
		Issuer:    is.url(),
		Subject:   "user-123",
		Audience:  []string{testAudience, "billing-api"},
		Expiry:    now.Add(5 * time.Minute),
		IssuedAt:  now,
		NotBefore: now,
		ClientID:  "web-app",
		Scope:     "openid orders:read orders:write",
		JTI:       "jti-1",
		Groups:    []string{"eng", "oncall"},
		Roles:     []string{"admin"},
		Raw:       raw,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("Verify() claims mismatch (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		f    func(string) bool
		arg  string
		want bool
	}{
		{got.HasScope, "orders:write", true},
		{got.HasScope, "orders", false},
		{got.HasScope, "", false},
		{got.HasGroup, "oncall", true},
		{got.HasGroup, "admins", false},
		{got.HasRole, "admin", true},
		{got.HasRole, "eng", false},
	} {
		if r := tc.f(tc.arg); r != tc.want {
			t.Errorf("Has*(%q) = %v, want %v", tc.arg, r, tc.want)
		}
	}
}

// b64 encodes a JSON value as a base64url JWS segment.
func b64(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestVerifyRefuses(t *testing.T) {
	is, k, v, clock := setup(t, WithRequiredScopes("orders:read"))
	now := clock.now()
	rsa := newKey(t, jose.RS256)
	is.publish(rsa)
	unpublished := newKey(t, jose.ES256)
	attacker := newKey(t, jose.ES256)

	valid := func(mut func(map[string]any)) map[string]any {
		c := is.claims()
		if mut != nil {
			mut(c)
		}
		return c
	}
	good := sign(t, k, "at+jwt", valid(nil))
	parts := strings.Split(good, ".")

	pubJWK, err := json.Marshal(k.public())
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hmacWith := func(secret []byte) string {
		return signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: secret},
			(&jose.SignerOptions{}).WithType("at+jwt").WithHeader(jose.HeaderKey("kid"), k.kid), valid(nil))
	}

	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"expired", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["exp"] = now.Add(-DefaultLeeway - time.Second).Unix() })), ErrExpired},
		{"not yet valid", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["nbf"] = now.Add(DefaultLeeway + time.Minute).Unix() })), ErrNotYetValid},
		{"iat in future beyond leeway", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["iat"] = now.Add(DefaultLeeway + time.Minute).Unix() })), ErrNotYetValid},
		{"wrong issuer", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["iss"] = "https://evil.example" })), ErrWrongIssuer},
		{"issuer with trailing slash", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["iss"] = is.url() + "/" })), ErrWrongIssuer},
		{"wrong audience list", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["aud"] = []string{"billing-api"} })), ErrWrongAudience},
		{"wrong audience string", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["aud"] = "billing-api" })), ErrWrongAudience},
		{"audience prefix", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["aud"] = testAudience + "-x" })), ErrWrongAudience},
		{"no audience", sign(t, k, "at+jwt", valid(func(c map[string]any) { delete(c, "aud") })), ErrWrongAudience},
		{"missing exp", sign(t, k, "at+jwt", valid(func(c map[string]any) { delete(c, "exp") })), ErrMalformed},
		{"missing iat", sign(t, k, "at+jwt", valid(func(c map[string]any) { delete(c, "iat") })), ErrMalformed},
		{"missing sub", sign(t, k, "at+jwt", valid(func(c map[string]any) { delete(c, "sub") })), ErrMalformed},
		{"exp as string", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["exp"] = "soon" })), ErrMalformed},
		{"groups as string", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["groups"] = "eng" })), ErrMalformed},
		{"payload not JSON", sign(t, k, "at+jwt", []byte("hello")), ErrMalformed},
		{"missing scope", sign(t, k, "at+jwt", valid(func(c map[string]any) { c["scope"] = "openid orders:write" })), ErrInsufficientScope},
		{"ID token typ JWT", sign(t, k, "JWT", valid(nil)), ErrWrongType},
		{"missing typ", sign(t, k, "", valid(nil)), ErrWrongType},
		{"typ other", sign(t, k, "logout+jwt", valid(nil)), ErrWrongType},
		{"alg none", b64(t, map[string]any{"alg": "none", "typ": "at+jwt", "kid": k.kid}) + "." + parts[1] + ".", ErrInvalidSignature},
		{"alg none with signature", b64(t, map[string]any{"alg": "none", "typ": "at+jwt", "kid": k.kid}) + "." + parts[1] + "." + parts[2], ErrInvalidSignature},
		{"HS256 keyed with public JWK", hmacWith(pubJWK), ErrInvalidSignature},
		{"HS256 keyed with public PEM", hmacWith(pubPEM), ErrInvalidSignature},
		{"tampered payload", parts[0] + "." + b64(t, valid(func(c map[string]any) { c["sub"] = "admin" })) + "." + parts[2], ErrInvalidSignature},
		{"tampered header", b64(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": k.kid, "x": 1}) + "." + parts[1] + "." + parts[2], ErrInvalidSignature},
		{"tampered signature", parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64)), ErrInvalidSignature},
		{"signature from other key with published kid", sign(t, testKey{kid: k.kid, alg: jose.ES256, priv: attacker.priv}, "at+jwt", valid(nil)), ErrInvalidSignature},
		{"embedded jwk of attacker", signWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: attacker.priv},
			(&jose.SignerOptions{EmbedJWK: true}).WithType("at+jwt"), valid(nil)), ErrInvalidSignature},
		{"embedded jwk of attacker with published kid", signWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: attacker.priv},
			(&jose.SignerOptions{EmbedJWK: true}).WithType("at+jwt").WithHeader("kid", k.kid), valid(nil)), ErrInvalidSignature},
		{"RS256 header with EC kid", sign(t, testKey{kid: k.kid, alg: jose.RS256, priv: rsa.priv}, "at+jwt", valid(nil)), ErrInvalidSignature},
		{"ES256 token with RSA kid", sign(t, testKey{kid: rsa.kid, alg: jose.ES256, priv: k.priv}, "at+jwt", valid(nil)), ErrInvalidSignature},
		{"PS256 outside allowlist", sign(t, testKey{kid: rsa.kid, alg: jose.PS256, priv: rsa.priv}, "at+jwt", valid(nil)), ErrInvalidSignature},
		{"unknown kid", sign(t, unpublished, "at+jwt", valid(nil)), ErrUnknownKey},
		{"empty", "", ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"JWE shape", "a.b.c.d.e", ErrMalformed},
		{"garbage base64", "!!!.@@@.###", ErrMalformed},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("nope")) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, ErrMalformed},
		{"space inside", parts[0] + ". " + parts[1] + "." + parts[2], ErrMalformed},
		{"1 MB token", strings.Repeat("a", 1<<20-2) + ".b.c", ErrMalformed},
		{"zip header", signWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: k.priv},
			(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", k.kid).WithHeader("zip", "DEF"), valid(nil)), ErrMalformed},
		{"crit header", signWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: k.priv},
			(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", k.kid).WithHeader("crit", []string{"exp"}), valid(nil)), ErrMalformed},
		{"signature respelled in its unused bits", parts[0] + "." + parts[1] + "." + respell(parts[2]), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), tt.token)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Verify() claims = %+v, want nil", got)
			}
		})
	}
}

// respell changes the unused low bits of a base64url segment's last
// character: the decoded bytes stay the same.
func respell(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[last^1])
}

func TestVerifyTypedErrors(t *testing.T) {
	is, k, v, clock := setup(t)
	exp := clock.now().Add(-time.Hour).Truncate(time.Second)
	c := is.claims()
	c["exp"] = exp.Unix()
	_, err := v.Verify(t.Context(), sign(t, k, "at+jwt", c))
	ee, ok := errors.AsType[*ExpiredError](err)
	if !ok {
		t.Fatalf("Verify() error = %v, want *ExpiredError", err)
	}
	if !ee.Expiry.Equal(exp) {
		t.Errorf("ExpiredError.Expiry = %v, want %v", ee.Expiry, exp)
	}
	if errors.Is(err, ErrInvalidSignature) {
		t.Errorf("expired error %v also matches ErrInvalidSignature", err)
	}

	claims, err := v.Verify(t.Context(), sign(t, k, "at+jwt", is.claims()))
	if err != nil {
		t.Fatal(err)
	}
	err = claims.RequireScopes("orders:read", "orders:delete", "admin")
	se, ok := errors.AsType[*ScopeError](err)
	if !ok || !errors.Is(err, ErrInsufficientScope) {
		t.Fatalf("RequireScopes() error = %v, want *ScopeError matching ErrInsufficientScope", err)
	}
	if diff := cmp.Diff([]string{"orders:delete", "admin"}, se.Missing); diff != "" {
		t.Errorf("ScopeError.Missing mismatch (-want +got):\n%s", diff)
	}
	if err := claims.RequireScopes("orders:read", "openid"); err != nil {
		t.Errorf("RequireScopes(held scopes) = %v, want nil", err)
	}
}

func TestVerifyOversizedTokenDoesNoWork(t *testing.T) {
	is, _, v, _ := setup(t)
	before := is.hits()
	big := strings.Repeat("x", 1<<20)
	start := time.Now()
	for range 100 {
		if _, err := v.Verify(t.Context(), big); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Verify(1 MB) error = %v, want ErrMalformed", err)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("100 oversized tokens took %v; want an early refusal", el)
	}
	if got := is.hits(); got != before {
		t.Errorf("JWKS fetches after oversized tokens = %d, want %d", got, before)
	}
}

func TestNewOptionErrors(t *testing.T) {
	clock := newFakeClock()
	is := newTestIssuer(t, clock)
	is.publish(newKey(t, jose.ES256))
	tests := []struct {
		name     string
		issuer   string
		audience string
		opts     []Option
	}{
		{"empty issuer", "", testAudience, nil},
		{"empty audience", is.url(), "", nil},
		{"alg none", is.url(), testAudience, []Option{WithAlgorithms("none")}},
		{"alg HS256", is.url(), testAudience, []Option{WithAlgorithms(jose.ES256, jose.HS256)}},
		{"empty algs", is.url(), testAudience, []Option{WithAlgorithms()}},
		{"negative leeway", is.url(), testAudience, []Option{WithLeeway(-time.Second)}},
		{"huge leeway", is.url(), testAudience, []Option{WithLeeway(time.Hour)}},
		{"tiny refresh interval", is.url(), testAudience, []Option{WithRefreshInterval(time.Millisecond)}},
		{"nil client", is.url(), testAudience, []Option{WithHTTPClient(nil)}},
		{"nil clock", is.url(), testAudience, []Option{WithClock(nil)}},
		{"nil logger", is.url(), testAudience, []Option{WithLogger(nil)}},
		{"bad scope", is.url(), testAudience, []Option{WithRequiredScopes("a b")}},
		{"bad realm", is.url(), testAudience, []Option{WithRealm(`x"y`)}},
		{"quote in default realm", is.url(), `aud"x`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(t.Context(), tt.issuer, tt.audience, tt.opts...)
			if err == nil {
				v.Close()
				t.Fatalf("New() error = nil, want an error")
			}
		})
	}
}

func TestWithAlgorithmsNarrows(t *testing.T) {
	is, k, v, _ := setup(t, WithAlgorithms(jose.RS256))
	_ = v
	_, err := v.Verify(t.Context(), sign(t, k, "at+jwt", is.claims()))
	if !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("Verify(ES256 with RS256-only allowlist) error = %v, want ErrInvalidSignature", err)
	}
}

func TestWithLeeway(t *testing.T) {
	is, k, v, clock := setup(t, WithLeeway(0))
	c := is.claims()
	c["exp"] = clock.now().Add(-time.Second).Unix()
	if _, err := v.Verify(t.Context(), sign(t, k, "at+jwt", c)); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify(exp 1s ago, leeway 0) error = %v, want ErrExpired", err)
	}
}
