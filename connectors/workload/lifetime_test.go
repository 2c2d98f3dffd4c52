package workload

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/jwa"
)

// TestLifetimeBoundWithoutIssuedAt: max_lifetime bounds exp - now
// directly, so a token that leaves out iat, or puts iat in the future,
// cannot be exchanged with an exp years ahead. A future iat beyond the
// clock skew is refused on its own.
func TestLifetimeBoundWithoutIssuedAt(t *testing.T) {
	is := newTestIssuer(t)
	now := time.Unix(1767323045, 0)
	const maxLifetime = time.Hour
	v := is.openAt(t, now, maxLifetime)
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want error // nil: accepted
	}{
		{"good", nil, nil},
		{"no iat, short exp", func(c map[string]any) { delete(c, "iat") }, nil},
		{"no iat, exp at max_lifetime", func(c map[string]any) { delete(c, "iat"); c["exp"] = now.Add(maxLifetime).Unix() }, nil},
		{"no iat, exp at max_lifetime plus the skew", func(c map[string]any) { delete(c, "iat"); c["exp"] = now.Add(maxLifetime + clockSkew).Unix() }, nil},
		{"no iat, exp past max_lifetime plus the skew", func(c map[string]any) {
			delete(c, "iat")
			c["exp"] = now.Add(maxLifetime + clockSkew + time.Second).Unix()
		}, ErrLifetime},
		{"no iat, exp years ahead", func(c map[string]any) { delete(c, "iat"); c["exp"] = now.AddDate(5, 0, 0).Unix() }, ErrLifetime},
		{"no iat nor nbf, exp years ahead", func(c map[string]any) {
			delete(c, "iat")
			delete(c, "nbf")
			c["exp"] = now.AddDate(5, 0, 0).Unix()
		}, ErrLifetime},
		{"iat past, exp years ahead", func(c map[string]any) {
			c["iat"] = now.Add(-time.Minute).Unix()
			c["exp"] = now.AddDate(5, 0, 0).Unix()
		}, ErrLifetime},
		{"iat within the skew ahead", func(c map[string]any) { c["iat"] = now.Add(clockSkew).Unix() }, nil},
		{"iat years ahead, exp just after it", func(c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = now.AddDate(5, 0, 0).Unix(), now.Unix(), now.AddDate(5, 0, 0).Add(time.Minute).Unix()
		}, ErrUntrusted},
		{"iat an hour ahead, exp soon", func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }, ErrUntrusted},
		{"iat past the skew ahead", func(c map[string]any) { c["iat"] = now.Add(clockSkew + time.Second).Unix() }, ErrUntrusted},
		{"iat not a number", func(c map[string]any) { c["iat"] = "yesterday" }, ErrUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.VerifyToken(context.Background(), is.token(t, is.claims(now, tc.edit), nil))
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("VerifyToken() = %v, want accepted", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("VerifyToken() = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestRefusesCompressionAndExtensions: a token signed by the issuer's own
// key whose header asks for compression (zip) or an extension (crit, b64)
// is refused as untrusted, with the static key file as with a JWKS URL.
func TestRefusesCompressionAndExtensions(t *testing.T) {
	is := newTestIssuer(t)
	now := time.Unix(1767323045, 0)
	v := is.openAt(t, now, 0)
	for name, extra := range map[string]map[string]any{
		"zip DEF":  {"zip": "DEF"},
		"crit b64": {"b64": true, "crit": []string{"b64"}},
		"b64":      {"b64": true},
	} {
		_, err := v.VerifyToken(context.Background(), is.token(t, is.claims(now, nil), extra))
		// The key set's error is kept as text only (%v): the header refusal
		// shows in the audit log.
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), jwa.ErrHeader.Error()) {
			t.Errorf("VerifyToken(%s) = %v, want ErrUntrusted for a refused header", name, err)
		}
	}
	if _, err := v.VerifyToken(context.Background(), is.token(t, is.claims(now, nil), nil)); err != nil {
		t.Fatalf("VerifyToken(plain header) = %v", err)
	}
}

// TestUnknownKeyIDsDoNotHammerJWKS: subject tokens naming made-up key ids
// make the broker fetch the workload issuer's JWKS once, not once per
// token; after the refresh interval, once more.
func TestUnknownKeyIDsDoNotHammerJWKS(t *testing.T) {
	is := newTestIssuer(t)
	now := time.Unix(1767323045, 0)
	clock := now
	cfg := Config{Issuer: is.URL(), Audiences: []string{"https://sso.acme.com"}, Algorithms: []string{"ES256"}}
	v, err := cfg.Open(context.Background(), "k8s", openOptions(is, func() time.Time { return clock }))
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	attack := func(round int) {
		t.Helper()
		for i := range 20 {
			key := is.key
			if i%2 == 1 {
				key = stranger
			}
			tok := sign(t, key, jose.ES256, fmt.Sprintf("made-up-%d-%d", round, i), is.claims(clock, nil), nil)
			if _, err := v.VerifyToken(context.Background(), tok); !errors.Is(err, ErrUntrusted) {
				t.Fatalf("token with an unknown kid = %v, want ErrUntrusted", err)
			}
		}
	}
	attack(0)
	if n := is.fetches.Load(); n < 1 || n > 2 {
		t.Fatalf("20 tokens with unknown kids fetched the issuer's JWKS %d times, want 1 or 2", n)
	}
	if _, err := v.VerifyToken(context.Background(), is.token(t, is.claims(clock, nil), nil)); err != nil {
		t.Fatalf("good token after the attack = %v", err)
	}
	before := is.fetches.Load()
	clock = clock.Add(time.Minute)
	attack(1)
	if n := is.fetches.Load() - before; n > 1 {
		t.Fatalf("20 tokens after the refresh interval fetched %d times, want at most 1", n)
	}
}
