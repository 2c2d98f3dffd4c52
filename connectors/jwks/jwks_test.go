package jwks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
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
