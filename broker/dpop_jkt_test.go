package broker

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestDPoPAuthorizationCodeBinding: an authorization request with dpop_jkt
// (RFC 9449 §10) binds its code to that key: the code is redeemed only
// with a proof of it, and a malformed dpop_jkt is refused at /authorize.
func TestDPoPAuthorizationCodeBinding(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	key, thief := newDPoPSigner(t), newDPoPSigner(t)
	tokenURL := h.issuer + "/token"

	login := func() (code, verifier string) {
		t.Helper()
		p := newPKCE()
		params := authParams(p)
		params.Set("dpop_jkt", key.Thumbprint())
		code, _ = h.login(h.newBrowser(), params, "alice", alicePassword)
		return code, p.verifier
	}
	redeem := func(code, verifier string, proofs ...string) tokenResponse {
		t.Helper()
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appRedirect}, "client_id": {"app"}, "code_verifier": {verifier}}
		return h.dpopToken(form, "", "", proofs...)
	}

	t.Run("no proof", func(t *testing.T) {
		code, verifier := login()
		if tr := redeem(code, verifier); tr.status != http.StatusBadRequest || tr.Error != "invalid_grant" {
			t.Fatalf("bound code without a proof = %d %q, want 400 invalid_grant", tr.status, tr.Error)
		}
	})
	t.Run("another key", func(t *testing.T) {
		code, verifier := login()
		if tr := redeem(code, verifier, mustProof(t, thief, http.MethodPost, tokenURL, "", "")); tr.status != http.StatusBadRequest || tr.Error != "invalid_grant" {
			t.Fatalf("bound code with another key = %d %q, want 400 invalid_grant", tr.status, tr.Error)
		}
	})
	t.Run("the key", func(t *testing.T) {
		code, verifier := login()
		tr := redeem(code, verifier, mustProof(t, key, http.MethodPost, tokenURL, "", ""))
		if tr.status != http.StatusOK || tr.TokenType != "DPoP" || cnfJKT(t, tr.AccessToken) != key.Thumbprint() {
			t.Fatalf("bound code with its key = %d %q %q", tr.status, tr.TokenType, tr.Error)
		}
	})
	t.Run("SSO session", func(t *testing.T) {
		// A code from a live session is bound too.
		br := h.newBrowser()
		p := newPKCE()
		if _, loc := h.login(br, authParams(p), "alice", alicePassword); loc == nil {
			t.Fatal("first sign-in gave no redirect")
		}
		p2 := newPKCE()
		params := authParams(p2)
		params.Set("dpop_jkt", key.Thumbprint())
		r := h.authorize(br, params)
		loc := r.location
		if loc == nil || loc.Query().Get("code") == "" {
			t.Fatalf("SSO authorize = %d %q, want a redirect with a code", r.status, r.location)
		}
		if tr := redeem(loc.Query().Get("code"), p2.verifier); tr.Error != "invalid_grant" {
			t.Fatalf("bound SSO code without a proof = %d %q, want invalid_grant", tr.status, tr.Error)
		}
	})
	for _, bad := range []string{"short", strings.Repeat("A", 44), strings.Repeat("+", 43), "a b"} {
		t.Run("malformed "+bad, func(t *testing.T) {
			params := authParams(newPKCE())
			params.Set("dpop_jkt", bad)
			r := h.authorize(h.newBrowser(), params)
			loc := r.location
			if loc == nil || loc.Query().Get("error") != "invalid_request" {
				t.Fatalf("authorize with dpop_jkt %q = %d %q, want a redirect with invalid_request", bad, r.status, r.location)
			}
		})
	}
}
