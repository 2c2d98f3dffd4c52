package clientauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/connectors/jwks"
)

func assertionForm(assertion string) clientauth.Request {
	return clientauth.Request{Form: url.Values{"client_assertion_type": {oauth.AssertionTypeJWTBearer}, "client_assertion": {assertion}}}
}

// signWith signs claims with key under kid, adding extra protected headers.
func signWith(t testing.TB, key *ecdsa.PrivateKey, kid string, claims map[string]any, extra map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	for k, v := range extra {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAssertionAudience: aud is the issuer or the token endpoint, alone —
// a string, or an array of exactly that one value (RFC 7523bis, OpenID
// Connect Core §9). An array that also names another party is refused: the
// assertion could be replayed there, or was made for there.
func TestAssertionAudience(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tokenEndpoint := runtimetest.Issuer + "/token"
	for _, tc := range []struct {
		name string
		aud  any
		ok   bool
	}{
		{"issuer", runtimetest.Issuer, true},
		{"token endpoint", tokenEndpoint, true},
		{"PAR endpoint", runtimetest.Issuer + "/par", true},
		{"[issuer]", []string{runtimetest.Issuer}, true},
		{"[token endpoint]", []string{tokenEndpoint}, true},
		{"[issuer, foreign]", []string{runtimetest.Issuer, "https://evil.example"}, false},
		{"[foreign, token endpoint]", []string{"https://evil.example/token", tokenEndpoint}, false},
		{"[issuer, token endpoint]", []string{runtimetest.Issuer, tokenEndpoint}, false},
		{"[issuer, issuer]", []string{runtimetest.Issuer, runtimetest.Issuer}, false},
		{"[]", []string{}, false},
		{"missing", nil, false},
		{"empty string", "", false},
		{"issuer with a trailing slash", runtimetest.Issuer + "/", false},
		{"token endpoint with a trailing slash", tokenEndpoint + "/", false},
		{"another endpoint of ours", runtimetest.Issuer + "/introspect", false},
		{"issuer in other case", "https://BROKER.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.claims(func(c map[string]any) {
				if tc.aud == nil {
					delete(c, "aud")
				} else {
					c["aud"] = tc.aud
				}
			})
			cl, err := f.a.Authenticate(ctx, f.Runtime, assertionForm(f.assertion(t, c, f.key)))
			switch {
			case tc.ok && (err != nil || cl.ID != "robot"):
				t.Fatalf("Authenticate(aud %v) = %v, want robot", tc.aud, err)
			case !tc.ok && code(err) != oauth.ErrInvalidClient:
				t.Fatalf("Authenticate(aud %v) = %v, want invalid_client", tc.aud, err)
			}
		})
	}
}

// TestAssertionTimes: exp - now is bounded whatever iat says, and an iat
// in the future beyond the allowed skew is refused (it would otherwise let
// an assertion claim a short life it does not have).
func TestAssertionTimes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := f.Clock.Now()
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		ok   bool
	}{
		{"no iat", func(c map[string]any) { delete(c, "iat") }, true},
		{"iat just ahead, within the skew", func(c map[string]any) { c["iat"] = now.Add(20 * time.Second).Unix() }, true},
		{"iat in the past", func(c map[string]any) { c["iat"] = now.Add(-time.Hour).Unix() }, true},
		{"iat an hour ahead", func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }, false},
		{"iat a year ahead, exp soon", func(c map[string]any) { c["iat"] = now.AddDate(1, 0, 0).Unix() }, false},
		{"iat and exp years ahead", func(c map[string]any) {
			c["iat"], c["exp"] = now.AddDate(5, 0, 0).Unix(), now.AddDate(5, 0, 0).Add(time.Minute).Unix()
		}, false},
		{"no iat, exp years ahead", func(c map[string]any) { delete(c, "iat"); c["exp"] = now.AddDate(5, 0, 0).Unix() }, false},
		{"iat not a number", func(c map[string]any) { c["iat"] = "soon" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := f.a.Authenticate(ctx, f.Runtime, assertionForm(f.assertion(t, f.claims(tc.edit), f.key)))
			switch {
			case tc.ok && (err != nil || cl.ID != "robot"):
				t.Fatalf("Authenticate = %v, want robot", err)
			case !tc.ok && code(err) != oauth.ErrInvalidClient:
				t.Fatalf("Authenticate = %v, want invalid_client", err)
			}
		})
	}
}

// TestAssertionRefusesCompressionAndExtensions: an assertion signed by the
// client's own key whose header asks for compression (zip) or an extension
// (crit, b64) is refused; go-jose alone would ignore zip.
func TestAssertionRefusesCompressionAndExtensions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for name, extra := range map[string]map[string]any{
		"zip DEF":  {"zip": "DEF"},
		"crit b64": {"b64": true, "crit": []string{"b64"}},
		"b64":      {"b64": true},
	} {
		t.Run(name, func(t *testing.T) {
			tok := signWith(t, f.key, "k1", f.claims(nil), extra)
			if _, err := f.a.Authenticate(ctx, f.Runtime, assertionForm(tok)); code(err) != oauth.ErrInvalidClient {
				t.Fatalf("Authenticate(%s) = %v, want invalid_client", name, err)
			}
		})
	}
	if _, err := f.a.Authenticate(ctx, f.Runtime, assertionForm(signWith(t, f.key, "k1", f.claims(nil), nil))); err != nil {
		t.Fatalf("Authenticate(plain header) = %v", err)
	}
}

// jwksServer serves key as a JWK Set under kid and counts its fetches.
func jwksServer(t *testing.T, key *ecdsa.PrivateKey, kid string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var fetches atomic.Int32
	body, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &fetches
}

// TestUnknownKeyIDsDoNotHammerJWKSURI: client assertions naming made-up key
// ids, for a client whose keys are at a jwks_uri, make the broker fetch
// that JWK Set once, not once per assertion — across a configuration
// reload too, which shares the throttled key cache.
func TestUnknownKeyIDsDoNotHammerJWKSURI(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv, fetches := jwksServer(t, key, "k1")
	f := runtimetest.New(t, "", func(c *config.Config) {
		c.Clients = append(c.Clients, config.Client{ID: "robot", Name: "Robot", TokenEndpointAuthMethod: "private_key_jwt", JWKSURI: srv.URL, GrantTypes: []string{"client_credentials"}})
	})
	a := clientauth.New(clientauth.Deps{Issuer: runtimetest.Issuer, Replay: f.Store, Now: f.Clock.Now})
	ctx := context.Background()
	claims := func() map[string]any {
		now := f.Clock.Now()
		return map[string]any{"iss": "robot", "sub": "robot", "aud": runtimetest.Issuer, "jti": oauth.RandomToken(12), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	}
	attack := func(rt *runtime.Runtime, round int) {
		t.Helper()
		for i := range 20 {
			// Half signed by the client's key under a made-up kid, half by
			// a stranger's.
			k := key
			if i%2 == 1 {
				k, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			}
			tok := signWith(t, k, fmt.Sprintf("made-up-%d-%d", round, i), claims(), nil)
			if _, err := a.Authenticate(ctx, rt, assertionForm(tok)); code(err) != oauth.ErrInvalidClient {
				t.Fatalf("assertion with an unknown kid = %v, want invalid_client", err)
			}
		}
	}
	attack(f.Runtime, 0)
	if n := fetches.Load(); n < 1 || n > 2 {
		t.Fatalf("20 assertions with unknown kids fetched the client's JWKS %d times, want 1 or 2", n)
	}
	if cl, err := a.Authenticate(ctx, f.Runtime, assertionForm(signWith(t, key, "k1", claims(), nil))); err != nil || cl.ID != "robot" {
		t.Fatalf("good assertion after the attack = %v", err)
	}

	// Two reloads sharing one key cache, as the server's do.
	sets := jwks.NewCache(jwks.Options{Now: f.Clock.Now})
	before := fetches.Load()
	for round := 1; round <= 2; round++ {
		rt, err := runtime.Compile(ctx, f.Config, runtime.Deps{Issuer: runtimetest.Issuer, Now: f.Clock.Now, ReplayCache: f.Store, KeySets: sets})
		if err != nil {
			t.Fatal(err)
		}
		attack(rt, round)
		rt.Close()
	}
	if n := fetches.Load() - before; n < 1 || n > 2 {
		t.Fatalf("40 assertions with unknown kids across a reload fetched %d times, want 1 or 2", n)
	}
	// Past the refresh interval one more fetch is allowed, not twenty.
	f.Clock.Advance(jwks.DefaultMinRefresh)
	before = fetches.Load()
	attack(f.Runtime, 3)
	if n := fetches.Load() - before; n > 1 {
		t.Fatalf("20 assertions after the refresh interval fetched %d times, want at most 1", n)
	}
}

// TestAssertionNonCanonicalEncoding: go-jose decodes each segment with
// lenient base64url (the unused low bits of the last character, CR and LF
// are ignored) and verifies the re-encoded bytes, so a validly signed
// assertion has many spellings. Only the canonical one is accepted: a
// token's string is then unique to what was signed.
func TestAssertionNonCanonicalEncoding(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	// flipLow toggles the lowest bit of segment i's last character, which
	// is unused when the segment's length is not a multiple of 4.
	flipLow := func(i int) func([]string) bool {
		return func(p []string) bool {
			seg := p[i]
			if len(seg)%4 == 0 {
				return false
			}
			p[i] = seg[:len(seg)-1] + string(alphabet[strings.IndexByte(alphabet, seg[len(seg)-1])^1])
			return true
		}
	}
	for name, mutate := range map[string]func([]string) bool{
		"CRLF inside the payload":      func(p []string) bool { p[1] = p[1][:4] + "\r\n" + p[1][4:]; return true },
		"LF inside the signature":      func(p []string) bool { p[2] = p[2][:8] + "\n" + p[2][8:]; return true },
		"LF at the end":                func(p []string) bool { p[2] += "\n"; return true },
		"unused bits of the header":    flipLow(0),
		"unused bits of the payload":   flipLow(1),
		"unused bits of the signature": flipLow(2),
	} {
		t.Run(name, func(t *testing.T) {
			// Its own jti each, so a replay refusal hides nothing.
			parts := strings.Split(f.assertion(t, f.claims(nil), f.key), ".")
			for tries := 0; !mutate(parts); tries++ {
				if tries > 20 {
					t.Skip("no unused bits in 20 signatures")
				}
				parts = strings.Split(f.assertion(t, f.claims(nil), f.key), ".")
			}
			tok := strings.Join(parts, ".")
			if _, err := f.a.Authenticate(ctx, f.Runtime, assertionForm(tok)); code(err) != oauth.ErrInvalidClient {
				t.Fatalf("Authenticate(%q) = %v, want invalid_client", tok, err)
			}
		})
	}
	if _, err := f.a.Authenticate(ctx, f.Runtime, assertionForm(f.assertion(t, f.claims(nil), f.key))); err != nil {
		t.Fatalf("Authenticate(canonical) = %v", err)
	}
}
