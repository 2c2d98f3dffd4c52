package jwks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/jwa"
)

// TestThrottlesUnknownKeyIDs: made-up key ids cannot make the broker
// fetch a client's JWK Set more than once per MinRefresh.
func TestThrottlesUnknownKeyIDs(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	}))
	defer srv.Close()
	now := time.Unix(1700000000, 0)
	sets := NewCache(Options{Client: srv.Client(), Now: func() time.Time { return now }})
	ks := sets.KeySet(srv.URL)
	sign := func(kid string) string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid))
		jws, _ := s.Sign([]byte(`{"iss":"robot"}`))
		out, _ := jws.CompactSerialize()
		return out
	}
	ctx := context.Background()
	if _, err := ks.VerifySignature(ctx, sign("k1")); err != nil {
		t.Fatalf("VerifySignature(k1) = %v", err)
	}
	for i := range 50 {
		if _, err := ks.VerifySignature(ctx, sign("made-up-"+string(rune('a'+i%26)))); err == nil {
			t.Fatal("a token with an unknown kid verified")
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetched %d times, want 1 (unknown kids throttled)", n)
	}
	// The same cache serves a reload: asking again for the URL fetches nothing.
	if _, err := sets.KeySet(srv.URL).VerifySignature(ctx, sign("k1")); err != nil || fetches.Load() != 1 {
		t.Fatalf("after reload: %v, %d fetches", err, fetches.Load())
	}
	now = now.Add(DefaultMinRefresh)
	_, _ = ks.VerifySignature(ctx, sign("rotated"))
	if n := fetches.Load(); n != 2 {
		t.Fatalf("after MinRefresh: %d fetches, want 2", n)
	}
	// HMAC and none are never accepted, whatever the set holds.
	if _, err := ks.VerifySignature(ctx, "eyJhbGciOiJub25lIn0.eyJpc3MiOiJyb2JvdCJ9."); err == nil {
		t.Fatal("alg none verified")
	}
}

// TestMaxAgeAndOutages: a key withdrawn from the set stops verifying once
// the cache is older than MaxAge; a key server that is down then keeps the
// cached keys serving; symmetric keys in a published set are never used.
func TestMaxAgeAndOutages(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var mode atomic.Int32 // 0 publish k1 (+ an HMAC key), 1 publish nothing useful, 2 down
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case 0:
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
				{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"},
				{Key: []byte("shared-secret-shared-secret-1234"), KeyID: "hmac", Algorithm: "HS256"},
			}})
		case 1:
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{})
		default:
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	now := time.Unix(1700000000, 0)
	r := NewRemote(srv.URL, Options{Client: srv.Client(), Now: func() time.Time { return now }})
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	jws, _ := signer.Sign([]byte(`{"iss":"x"}`))
	tok, _ := jws.CompactSerialize()
	ctx := context.Background()
	if _, err := r.VerifySignature(ctx, tok); err != nil {
		t.Fatalf("VerifySignature = %v", err)
	}
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("shared-secret-shared-secret-1234")}, (&jose.SignerOptions{}).WithHeader("kid", "hmac"))
	hjws, _ := hs.Sign([]byte(`{"iss":"x"}`))
	htok, _ := hjws.CompactSerialize()
	if _, err := r.VerifySignature(ctx, htok); err == nil {
		t.Fatal("an HMAC token verified against a published symmetric key")
	}
	mode.Store(2)
	now = now.Add(DefaultMaxAge + time.Minute)
	if _, err := r.VerifySignature(ctx, tok); err != nil {
		t.Fatalf("key server down after MaxAge: %v; want the cached key to keep serving", err)
	}
	mode.Store(1)
	now = now.Add(DefaultMaxAge + time.Minute)
	if _, err := r.VerifySignature(ctx, tok); err == nil {
		t.Fatal("a withdrawn key still verifies after MaxAge")
	}
}

// TestRefusesCompressionAndExtensions: a JWS whose protected header asks for
// compression (zip, a JWE-only parameter that go-jose ignores on a JWS) or
// names an extension (crit, b64) is refused, even when a trusted key signed
// it — by the remote and the static key sets alike.
func TestRefusesCompressionAndExtensions(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}
	body, _ := json.Marshal(set)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	defer srv.Close()
	static, err := ParseStatic(body, nil)
	if err != nil {
		t.Fatal(err)
	}
	remote := NewRemote(srv.URL, Options{Client: srv.Client()})
	sign := func(opts *jose.SignerOptions) string {
		t.Helper()
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts.WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		jws, err := s.Sign([]byte(`{"iss":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		out, err := jws.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	good := sign(&jose.SignerOptions{})
	hostile := map[string]string{
		"zip DEF":            sign((&jose.SignerOptions{}).WithHeader("zip", "DEF")),
		"zip empty":          sign((&jose.SignerOptions{}).WithHeader("zip", "")),
		"crit b64 (true)":    sign((&jose.SignerOptions{}).WithHeader("b64", true).WithCritical("b64")),
		"b64 without crit":   sign((&jose.SignerOptions{}).WithHeader("b64", true)),
		"crit of an unknown": sign((&jose.SignerOptions{}).WithHeader("exp", 1).WithCritical("exp")),
	}
	ctx := context.Background()
	for name, ks := range map[string]interface {
		VerifySignature(context.Context, string) ([]byte, error)
	}{"remote": remote, "static": static} {
		if _, err := ks.VerifySignature(ctx, good); err != nil {
			t.Fatalf("%s: VerifySignature(good) = %v", name, err)
		}
		for hname, tok := range hostile {
			if p, err := ks.VerifySignature(ctx, tok); err == nil {
				t.Errorf("%s: VerifySignature(%s) = %s, want refusal", name, hname, p)
			} else if !errors.Is(err, jwa.ErrHeader) {
				t.Errorf("%s: VerifySignature(%s) = %v, want jwa.ErrHeader", name, hname, err)
			}
		}
	}
}

// TestRefusesNonCanonicalEncoding: go-jose's lenient base64url would let
// one signed token verify under many spellings (CR, LF, the unused low
// bits of a segment's last character); only the canonical one verifies,
// by the remote and the static key sets alike.
func TestRefusesNonCanonicalEncoding(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	body, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	defer srv.Close()
	static, err := ParseStatic(body, nil)
	if err != nil {
		t.Fatal(err)
	}
	remote := NewRemote(srv.URL, Options{Client: srv.Client()})
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	// {"iss":"x"} is 11 bytes: its segment has unused bits; an ES256
	// signature (64 bytes) does too.
	jws, _ := s.Sign([]byte(`{"iss":"x"}`))
	good, _ := jws.CompactSerialize()
	parts := strings.Split(good, ".")
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	flip := func(seg string) string {
		return seg[:len(seg)-1] + string(alphabet[strings.IndexByte(alphabet, seg[len(seg)-1])^1])
	}
	bad := map[string]string{
		"unused bits of the payload":   parts[0] + "." + flip(parts[1]) + "." + parts[2],
		"unused bits of the signature": parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"CRLF in the header":           parts[0][:3] + "\r\n" + parts[0][3:] + "." + parts[1] + "." + parts[2],
		"LF at the end":                good + "\n",
	}
	ctx := context.Background()
	for name, ks := range map[string]interface {
		VerifySignature(context.Context, string) ([]byte, error)
	}{"remote": remote, "static": static} {
		if _, err := ks.VerifySignature(ctx, good); err != nil {
			t.Fatalf("%s: VerifySignature(good) = %v", name, err)
		}
		for bname, tok := range bad {
			if p, err := ks.VerifySignature(ctx, tok); !errors.Is(err, jwa.ErrEncoding) {
				t.Errorf("%s: VerifySignature(%s) = %s, %v; want jwa.ErrEncoding", name, bname, p, err)
			}
		}
	}
}
