package tokens

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// richClaims are mapped claims of every JSON shape, with names that
// collide with registered claims (dropped: the broker's own win) and
// standard claims released only with their scope.
func richClaims() map[string]any {
	return map[string]any{
		// Released with openid alone.
		"dept":     "R&D <eng> \"core\" \\ tab\t nl\n cr\r bs\b ff\f nul\x00 del\x7f",
		"unicode":  "Zoë — 日本語 😀 \u2028\u2029 bad:\xff\xfe end",
		"nested":   map[string]any{"b": []any{1.0, "x", map[string]any{"deep": true, "z": nil}}, "a": map[string]any{}},
		"empty":    []any{},
		"nil_list": []any(nil),
		"strs":     []string{"a<", "b>", "c&"},
		"none":     []string(nil),
		"null":     nil,
		"yes":      true,
		"no":       false,
		"int":      42,
		"int64":    int64(-9007199254740993),
		"uint64":   uint64(18446744073709551615),
		"float":    3.25,
		"whole":    1700000000.0,
		"tiny":     1e-7,
		"huge":     1e21,
		"neg":      -0.000001,
		"zero":     0.0,
		"raw":      json.RawMessage(`{"pre":"encoded"}`),
		"ptr":      &struct{ N int }{7},
		// Standard claims gated by scope.
		"email": "alice@acme.com", "email_verified": true, "name": "Alice <Admin>", "groups": []any{"eng", "r&d"},
		// Registered and reserved names: never released from a mapping.
		"iss": "https://evil.example", "sub": "mallory", "aud": "evil", "exp": 1.0, "iat": 2.0, "nbf": 3.0,
		"jti": "forged", "act": map[string]any{"sub": "forged"}, "cnf": map[string]any{"jkt": "forged"},
		"fb_fam": "forged", "typ": "x", "azp": "evil", "scope": "admin", "client_id": "evil", "sid": "forged",
		"amr": []any{"forged"}, "nonce": "forged", "at_hash": "forged", "auth_time": 5.0, "acr": "forged",
	}
}

// TestPayloadMatchesEncodeClaims: the one-pass encoder writes the JSON
// that encodeClaims (the registered struct, then Releasable of the mapped
// claims as a map) writes for the same claims, byte for byte, for access
// and ID tokens with and without their optional claims and scopes.
func TestPayloadMatchesEncodeClaims(t *testing.T) {
	extra := richClaims()
	scopeSets := [][]string{nil, {"openid"}, {"openid", "email", "profile", "groups"}}
	for _, tc := range []struct {
		name string
		at   accessTokenClaims
		auds []string
	}{
		{"minimal", accessTokenClaims{Issuer: "https://broker.test", Subject: "sub", ClientID: "svc", Expiry: 1900000000, IssuedAt: 1800000000, JTI: "j"}, []string{"api"}},
		{"no audience", accessTokenClaims{Issuer: "https://broker.test", Subject: "sub", ClientID: "svc", Expiry: 1, IssuedAt: 0, JTI: "j"}, nil},
		{"empty audience list", accessTokenClaims{Issuer: "i", Subject: "s", ClientID: "c", JTI: "j"}, []string{}},
		{"everything", accessTokenClaims{
			Issuer: "https://broker.test/<x>&", Subject: "sub \u2028 é", ClientID: "svc", Expiry: 1900000000, IssuedAt: -5,
			JTI: "jti", Scope: "openid email", AuthTime: 1700000000, SID: "sid-1", Family: "fam",
			Act: map[string]any{"sub": "client-b", "act": map[string]any{"sub": "client-a"}},
			Cnf: &confirmation{JKT: "thumb"},
		}, []string{"api", "billing<>"}},
	} {
		for _, scopes := range scopeSets {
			old := tc.at
			aud, err := json.Marshal(tc.auds)
			if len(tc.auds) == 1 {
				aud, err = json.Marshal(tc.auds[0])
			}
			if err != nil {
				t.Fatal(err)
			}
			old.Audience = aud
			want, err := encodeClaims(old, Releasable(extra, scopes))
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendAccessToken(nil, &tc.at, tc.auds, extra, scopes)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("access token %s, scopes %v:\n got %s\nwant %s", tc.name, scopes, got, want)
			}
			if !json.Valid(got) {
				t.Errorf("access token %s: not valid JSON: %s", tc.name, got)
			}
		}
	}
	for _, tc := range []struct {
		name string
		id   idTokenClaims
	}{
		{"minimal", idTokenClaims{Issuer: "https://broker.test", Subject: "sub", Audience: "svc", AZP: "svc", Expiry: 1900000000, IssuedAt: 1800000000}},
		{"everything", idTokenClaims{Issuer: "https://broker.test", Subject: "sub", Audience: "svc", AZP: "svc", Expiry: 1900000000, IssuedAt: 1800000000,
			AuthTime: 1700000000, Nonce: "n<&>", AtHash: "hash", SID: "sid", AMR: []string{"pwd", "mfa"}}},
		{"empty amr", idTokenClaims{Issuer: "i", Subject: "s", Audience: "a", AZP: "a", AMR: []string{}}},
	} {
		for _, scopes := range scopeSets {
			for _, ex := range []map[string]any{nil, {}, {"sub": "only reserved"}, extra} {
				want, err := encodeClaims(tc.id, Releasable(ex, scopes))
				if err != nil {
					t.Fatal(err)
				}
				got, err := appendIDToken([]byte("reused buffer"), &tc.id, ex, scopes)
				if err != nil {
					t.Fatal(err)
				}
				got = got[len("reused buffer"):]
				if string(got) != string(want) {
					t.Errorf("ID token %s, scopes %v, %d extras:\n got %s\nwant %s", tc.name, scopes, len(ex), got, want)
				}
			}
		}
	}
}

// TestPayloadPrecedence: the broker's registered claims win over mapped
// claims of the same name, which are left out (no duplicate keys), and
// standard claims need their scope.
func TestPayloadPrecedence(t *testing.T) {
	c := accessTokenClaims{Issuer: "https://broker.test", Subject: "sub-alice", ClientID: "svc", Expiry: 2, IssuedAt: 1, JTI: "j",
		Act: map[string]any{"sub": "svc"}}
	b, err := appendAccessToken(nil, &c, []string{"api"}, richClaims(), []string{"openid"})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"iss": "https://broker.test", "sub": "sub-alice", "aud": "api", "client_id": "svc", "exp": 2.0, "iat": 1.0, "jti": "j",
		"act": map[string]any{"sub": "svc"}}
	for k, v := range want {
		if diff := cmp.Diff(v, got[k]); diff != "" {
			t.Errorf("claim %s (-want +got):\n%s", k, diff)
		}
	}
	for _, k := range []string{"email", "name", "groups", "email_verified", "nbf", "cnf", "fb_fam", "typ", "scope", "sid", "acr"} {
		if _, ok := got[k]; ok {
			t.Errorf("claim %s released: %v", k, got[k])
		}
	}
	if n := strings.Count(string(b), `"sub":`); n != 2 { // the token's and act's
		t.Errorf(`"sub": appears %d times, want 2: %s`, n, b)
	}
}

// TestPayloadRefusesWhatJSONCannotCarry: NaN and infinities fail the
// token, as encoding/json fails them.
func TestPayloadRefusesWhatJSONCannotCarry(t *testing.T) {
	c := idTokenClaims{Issuer: "i", Subject: "s", Audience: "a", AZP: "a"}
	for _, v := range []any{math.NaN(), math.Inf(1), []any{math.Inf(-1)}, map[string]any{"x": math.NaN()}, func() {}} {
		if _, err := appendIDToken(nil, &c, map[string]any{"bad": v}, nil); err == nil {
			t.Errorf("appendIDToken(%T) succeeded, want an error", v)
		}
		if _, err := encodeClaims(c, map[string]any{"bad": v}); err == nil {
			t.Errorf("encodeClaims(%T) succeeded; the test's premise is wrong", v)
		}
	}
}

// FuzzAppendValue: strings and numbers are written as encoding/json
// writes them.
func FuzzAppendValue(f *testing.F) {
	for _, s := range []string{"", "plain", "<>&", "\"\\", "\x00\x1f\x7f", "\u2028\u2029", "\xff", "\xed\xa0\x80", "é日😀", "a\xc3"} {
		f.Add(s, 0.0)
	}
	for _, x := range []float64{1, -1, 0.1, 1e-6, 1e-7, 9.999e20, 1e21, -1e-300, 123456789012345678, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		f.Add("", x)
	}
	f.Fuzz(func(t *testing.T, s string, x float64) {
		for _, v := range []any{s, x, []any{s, x}, map[string]any{s: x}} {
			want, wantErr := json.Marshal(v)
			got, err := appendValue(nil, v)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("appendValue(%#v) error = %v, json.Marshal error = %v", v, err, wantErr)
			}
			if err == nil && string(got) != string(want) {
				t.Fatalf("appendValue(%#v) = %s, json.Marshal = %s", v, got, want)
			}
		}
		if got := appendString(nil, s); !utf8.Valid(got) {
			t.Fatalf("appendString(%q) = %q, not valid UTF-8", s, got)
		}
	})
}
