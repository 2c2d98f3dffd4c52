package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/dpop"
)

const resourceURL = "https://orders.example.com/orders"

// holder is a client's DPoP key. Its proofs carry iat from the test's fake
// clock, which dpop.Signer (on the wall clock) cannot do.
type holder struct {
	key *ecdsa.PrivateKey
	jkt string
}

func newHolder(t testing.TB) holder {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := dpop.Thumbprint(jose.JSONWebKey{Key: k.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return holder{key: k, jkt: jkt}
}

// claims are a proof's claims for method and url with token, at now.
func (h holder) claims(method, url, token string, now time.Time) map[string]any {
	return map[string]any{
		"jti": rand.Text(),
		"htm": method,
		"htu": url,
		"iat": now.Unix(),
		"ath": dpop.ATH(token),
	}
}

// proof signs claims as a DPoP proof with the holder's key embedded; hdr
// adds or, with nil values, removes protected headers.
func (h holder) proof(t testing.TB, claims map[string]any, hdr map[jose.HeaderKey]any) string {
	t.Helper()
	headers := map[jose.HeaderKey]any{jose.HeaderType: dpop.Type}
	maps.Copy(headers, hdr)
	maps.DeleteFunc(headers, func(_ jose.HeaderKey, v any) bool { return v == nil })
	_, embedded := headers["jwk"]
	return signWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: h.key},
		&jose.SignerOptions{EmbedJWK: !embedded, ExtraHeaders: headers}, claims)
}

// boundToken is a valid access token of is bound to jkt.
func boundToken(t testing.TB, is *testIssuer, k testKey, jkt string) string {
	c := is.claims()
	c["cnf"] = map[string]any{"jkt": jkt}
	return sign(t, k, "at+jwt", c)
}

func TestVerifyDPoPAccepts(t *testing.T) {
	is, k, v, clock := setup(t)
	h := newHolder(t)
	token := boundToken(t, is, k, h.jkt)
	for _, tt := range []struct {
		name   string
		url    string
		mutate func(map[string]any)
	}{
		{name: "exact", url: resourceURL},
		{name: "request URL with query", url: resourceURL + "?page=2"},
		{name: "htu in another spelling", url: resourceURL, mutate: func(c map[string]any) { c["htu"] = "HTTPS://Orders.Example.com:443/orders" }},
		{name: "iat within the skew", url: resourceURL, mutate: func(c map[string]any) { c["iat"] = clock.now().Add(-dpop.DefaultSkew + time.Second).Unix() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := h.claims("GET", resourceURL, token, clock.now())
			if tt.mutate != nil {
				tt.mutate(c)
			}
			got, err := v.VerifyDPoP(t.Context(), token, h.proof(t, c, nil), "GET", tt.url)
			if err != nil {
				t.Fatalf("VerifyDPoP() error = %v", err)
			}
			if got.KeyThumbprint != h.jkt || got.Subject != "user-123" {
				t.Errorf("VerifyDPoP() = %+v, want KeyThumbprint %s", got, h.jkt)
			}
		})
	}
}

func TestVerifyDPoPRefuses(t *testing.T) {
	is, k, v, clock := setup(t, WithRequiredScopes("orders:read"))
	h, thief := newHolder(t), newHolder(t)
	now := clock.now()
	token := boundToken(t, is, k, h.jkt)
	unbound := sign(t, k, "at+jwt", is.claims())
	expired := is.claims()
	expired["cnf"] = map[string]any{"jkt": h.jkt}
	expired["exp"] = now.Add(-time.Hour).Unix()
	noScope := is.claims()
	noScope["cnf"] = map[string]any{"jkt": h.jkt}
	noScope["scope"] = "openid"
	noScopeToken := sign(t, k, "at+jwt", noScope)
	with := func(f func(map[string]any)) map[string]any {
		c := h.claims("GET", resourceURL, token, now)
		f(c)
		return c
	}
	good := h.proof(t, h.claims("GET", resourceURL, token, now), nil)
	parts := strings.Split(good, ".")
	privJWK := jose.JSONWebKey{Key: h.key}

	replayed := h.proof(t, h.claims("GET", resourceURL, token, now), nil)
	if _, err := v.VerifyDPoP(t.Context(), token, replayed, "GET", resourceURL); err != nil {
		t.Fatalf("first use of a proof: %v", err)
	}

	tests := []struct {
		name    string
		token   string
		proof   string
		method  string // default GET
		wantErr []error
	}{
		{name: "wrong htm", proof: h.proof(t, with(func(c map[string]any) { c["htm"] = "POST" }), nil), wantErr: []error{ErrInvalidDPoPProof, dpop.ErrInvalidProof}},
		{name: "request method differs", proof: good, method: "DELETE", wantErr: []error{ErrInvalidDPoPProof, dpop.ErrInvalidProof}},
		{name: "wrong htu", proof: h.proof(t, with(func(c map[string]any) { c["htu"] = "https://orders.example.com/admin" }), nil), wantErr: []error{ErrInvalidDPoPProof, dpop.ErrInvalidProof}},
		{name: "htu of another host", proof: h.proof(t, with(func(c map[string]any) { c["htu"] = "https://evil.example.com/orders" }), nil), wantErr: []error{ErrInvalidDPoPProof}},
		{name: "stale iat", proof: h.proof(t, with(func(c map[string]any) { c["iat"] = now.Add(-dpop.DefaultSkew - time.Second).Unix() }), nil), wantErr: []error{ErrInvalidDPoPProof}},
		{name: "future iat", proof: h.proof(t, with(func(c map[string]any) { c["iat"] = now.Add(dpop.DefaultSkew + time.Second).Unix() }), nil), wantErr: []error{ErrInvalidDPoPProof}},
		{name: "replayed jti", proof: replayed, wantErr: []error{ErrInvalidDPoPProof, errReplayed}},
		{name: "proof signed by another key", proof: thief.proof(t, thief.claims("GET", resourceURL, token, now), nil), wantErr: []error{ErrInvalidDPoPProof, errWrongKey}},
		{name: "missing ath", proof: h.proof(t, with(func(c map[string]any) { delete(c, "ath") }), nil), wantErr: []error{ErrInvalidDPoPProof}},
		{name: "wrong ath", proof: h.proof(t, with(func(c map[string]any) { c["ath"] = dpop.ATH(unbound) }), nil), wantErr: []error{ErrInvalidDPoPProof}},
		{name: "ath not base64 of the hash", proof: h.proof(t, with(func(c map[string]any) { c["ath"] = token }), nil), wantErr: []error{ErrInvalidDPoPProof}},
		{name: "malformed proof", proof: "not.a.proof", wantErr: []error{ErrInvalidDPoPProof}},
		{name: "empty proof", proof: "", wantErr: []error{ErrInvalidDPoPProof}},
		{name: "tampered proof", proof: parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"x"}`)) + "." + parts[2], wantErr: []error{ErrInvalidDPoPProof}},
		{name: "oversized proof", proof: good + strings.Repeat("A", dpop.MaxProofSize), wantErr: []error{ErrInvalidDPoPProof}},
		{name: "proof with typ JWT", proof: h.proof(t, with(func(map[string]any) {}), map[jose.HeaderKey]any{jose.HeaderType: "JWT"}), wantErr: []error{ErrInvalidDPoPProof}},
		{name: "alg none", proof: b64(t, map[string]any{"alg": "none", "typ": dpop.Type, "jwk": jose.JSONWebKey{Key: h.key.Public()}}) + "." + parts[1] + ".", wantErr: []error{ErrInvalidDPoPProof}},
		{name: "private key in jwk", proof: h.proof(t, with(func(map[string]any) {}), map[jose.HeaderKey]any{"jwk": privJWK}), wantErr: []error{ErrInvalidDPoPProof}},
		{name: "access token as proof", proof: token, wantErr: []error{ErrInvalidDPoPProof}},
		{name: "DPoP with unbound token", token: unbound, proof: h.proof(t, h.claims("GET", resourceURL, unbound, now), nil), wantErr: []error{ErrNotDPoPBound}},
		{name: "expired bound token", token: sign(t, k, "at+jwt", expired), proof: good, wantErr: []error{ErrExpired}},
		{name: "forged bound token", token: boundToken(t, is, newKey(t, jose.ES256), h.jkt), proof: good, wantErr: []error{ErrUnknownKey}},
		{name: "bound token without the scope", token: noScopeToken, proof: h.proof(t, h.claims("GET", resourceURL, noScopeToken, now), nil), wantErr: []error{ErrInsufficientScope}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, method := tt.token, tt.method
			if tok == "" {
				tok = token
			}
			if method == "" {
				method = "GET"
			}
			got, err := v.VerifyDPoP(t.Context(), tok, tt.proof, method, resourceURL)
			if err == nil {
				t.Fatalf("VerifyDPoP() = %+v, want an error", got)
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("VerifyDPoP() error = %v, want it to match %v", err, want)
				}
			}
		})
	}
	// Every refusal above is the mutation's: the unchanged proof passes.
	if _, err := v.VerifyDPoP(t.Context(), token, good, "GET", resourceURL); err != nil {
		t.Fatalf("VerifyDPoP(good) error = %v", err)
	}
}

func TestVerifyRefusesBoundAsBearer(t *testing.T) {
	is, k, v, _ := setup(t)
	h := newHolder(t)
	if c, err := v.Verify(t.Context(), boundToken(t, is, k, h.jkt)); !errors.Is(err, ErrDPoPRequired) {
		t.Errorf("Verify(bound token) = %+v, %v; want ErrDPoPRequired", c, err)
	}
	for name, cnf := range map[string]any{
		"cnf a string":       "x",
		"cnf without jkt":    map[string]any{"x5t#S256": "abc"},
		"jkt empty":          map[string]any{"jkt": ""},
		"jkt a number":       map[string]any{"jkt": 1},
		"cnf an empty array": []any{},
	} {
		t.Run(name, func(t *testing.T) {
			c := is.claims()
			c["cnf"] = cnf
			token := sign(t, k, "at+jwt", c)
			if _, err := v.Verify(t.Context(), token); !errors.Is(err, ErrMalformed) {
				t.Errorf("Verify() error = %v, want ErrMalformed", err)
			}
			proof := h.proof(t, h.claims("GET", resourceURL, token, is.clock.now()), nil)
			if _, err := v.VerifyDPoP(t.Context(), token, proof, "GET", resourceURL); !errors.Is(err, ErrMalformed) {
				t.Errorf("VerifyDPoP() error = %v, want ErrMalformed", err)
			}
		})
	}
}

// A replay cache of two entries forgets the oldest proofs: the option is
// applied, and the cache does not grow past it.
func TestDPoPReplayCacheSize(t *testing.T) {
	is, k, v, clock := setup(t, WithDPoPReplayCache(2))
	h := newHolder(t)
	token := boundToken(t, is, k, h.jkt)
	var proofs []string
	for i := range 3 {
		c := h.claims("GET", resourceURL, token, clock.now())
		c["iat"] = clock.now().Add(time.Duration(i) * time.Second).Unix() // expires later than the one before
		proofs = append(proofs, h.proof(t, c, nil))
		if _, err := v.VerifyDPoP(t.Context(), token, proofs[i], "GET", resourceURL); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.replay.Len(); n != 2 {
		t.Errorf("replay cache holds %d, want 2", n)
	}
	if _, err := v.VerifyDPoP(t.Context(), token, proofs[2], "GET", resourceURL); !errors.Is(err, errReplayed) {
		t.Errorf("replay of the newest proof: %v, want refused", err)
	}
}

func TestDPoPOptions(t *testing.T) {
	is := newTestIssuer(t, newFakeClock())
	is.publish(newKey(t, jose.ES256))
	for name, opt := range map[string]Option{
		"base relative":       WithDPoPBaseURL("/api"),
		"base ftp":            WithDPoPBaseURL("ftp://api.example.com"),
		"base with query":     WithDPoPBaseURL("https://api.example.com/?x=1"),
		"base with fragment":  WithDPoPBaseURL("https://api.example.com/#x"),
		"base with user":      WithDPoPBaseURL("https://u@api.example.com"),
		"base empty":          WithDPoPBaseURL(""),
		"replay cache size 0": WithDPoPReplayCache(0),
	} {
		if v, err := New(t.Context(), is.url(), testAudience, opt); err == nil {
			v.Close()
			t.Errorf("New(%s) succeeded, want an error", name)
		}
	}
}

// The proof's claims are JSON with the exact names of RFC 9449 §4.2.
func TestHolderProofShape(t *testing.T) {
	h := newHolder(t)
	p := h.proof(t, h.claims("GET", resourceURL, "t", time.Now()), nil)
	body, err := base64.RawURLEncoding.DecodeString(strings.Split(p, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"jti", "htm", "htu", "iat", "ath"} {
		if _, ok := m[name]; !ok {
			t.Errorf("proof lacks %s", name)
		}
	}
	if got, err := dpop.Verify(p, dpop.Check{Method: "GET", URL: resourceURL, AccessToken: "t"}); err != nil || got.Thumbprint != h.jkt {
		t.Errorf("dpop.Verify() = %+v, %v", got, err)
	}
}
