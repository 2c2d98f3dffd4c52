package grants_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/grants"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/dpop"
)

const tokenURL = runtimetest.Issuer + "/token"

func newSigner(t testing.TB) *dpop.Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := dpop.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// proof is a proof of s for a token request (POST to the token endpoint).
func proof(t testing.TB, s *dpop.Signer, nonce string) []string {
	t.Helper()
	p, err := s.Proof(http.MethodPost, tokenURL, "", nonce)
	if err != nil {
		t.Fatal(err)
	}
	return []string{p}
}

// appCode stores a code for the public client app as a login would.
func (f fixture) appCode(t testing.TB) string {
	t.Helper()
	code := oauth.RandomToken(32)
	ac := storage.AuthCode{
		ClientID: "app", RedirectURI: "http://127.0.0.1:9999/cb",
		CodeChallenge: challenge(verifier), CodeChallengeMethod: "S256", FamilyID: oauth.RandomToken(16),
		Grant:  storage.Grant{ClientID: "app", Subject: "sub-alice", Scopes: []string{"openid", "offline_access"}, ConnectorID: "local", AuthTime: f.Clock.Now()},
		Expiry: f.Clock.Now().Add(time.Minute),
	}
	if err := f.Store.CreateCode(context.Background(), code, ac); err != nil {
		t.Fatal(err)
	}
	return code
}

func (f fixture) token(t testing.TB, client string, req grants.Request) (*tokens.Response, error) {
	t.Helper()
	return f.g.Token(context.Background(), f.Runtime, f.Client(t, client), req)
}

// wantJKT checks that the access token is DPoP-bound to jkt, in the JSON
// shape verifiers read: "cnf":{"jkt":"..."}.
func (f fixture) wantJKT(t *testing.T, resp *tokens.Response, jkt string) {
	t.Helper()
	if resp.TokenType != "DPoP" {
		t.Errorf("token_type = %q, want DPoP", resp.TokenType)
	}
	at, err := f.a.CheckAccessToken(context.Background(), resp.AccessToken)
	if err != nil {
		t.Fatalf("CheckAccessToken: %v", err)
	}
	if at.JKT != jkt {
		t.Errorf("cnf.jkt = %q, want %q", at.JKT, jkt)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(resp.AccessToken, ".")[1])
	if err != nil || !bytes.Contains(payload, []byte(`"cnf":{"jkt":"`+jkt+`"}`)) {
		t.Errorf("access token payload %s lacks \"cnf\":{\"jkt\":%q}", payload, jkt)
	}
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := oauthCode(err); got != code {
		t.Errorf("%s: %q (%v), want %q", what, got, err, code)
	}
}

// TestDPoPPublicClientBindsTheFamily: code → DPoP-bound tokens; the
// public client's refresh family is bound to the key: the same key
// refreshes, another key or no proof is refused without rotating it.
func TestDPoPPublicClientBindsTheFamily(t *testing.T) {
	f := newFixture(t)
	key, other := newSigner(t), newSigner(t)
	resp, err := f.token(t, "app", grants.Request{GrantType: "authorization_code", Code: f.appCode(t), RedirectURI: "http://127.0.0.1:9999/cb", CodeVerifier: verifier, DPoP: proof(t, key, "")})
	if err != nil {
		t.Fatal(err)
	}
	f.wantJKT(t, resp, key.Thumbprint())
	if resp.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	if got, _ := f.a.Introspect(context.Background(), f.Client(t, "svc"), resp.AccessToken); got["token_type"] != "DPoP" || got["cnf"].(map[string]any)["jkt"] != key.Thumbprint() {
		t.Errorf("Introspect = %v, want token_type DPoP and cnf.jkt", got)
	}
	if got, _ := f.a.Introspect(context.Background(), f.Client(t, "app"), resp.RefreshToken); got["cnf"] == nil || got["cnf"].(map[string]any)["jkt"] != key.Thumbprint() {
		t.Errorf("Introspect(refresh token) = %v, want the family's cnf.jkt", got)
	}
	if _, err := f.a.Userinfo(context.Background(), resp.AccessToken); !errors.Is(err, tokens.ErrKeyBinding) {
		t.Errorf("Userinfo(bound token as bearer) = %v, want ErrKeyBinding", err)
	}
	for jkt, want := range map[string]error{"": tokens.ErrKeyBinding, other.Thumbprint(): tokens.ErrKeyBinding, key.Thumbprint(): nil} {
		if _, err := f.a.UserinfoBound(context.Background(), resp.AccessToken, jkt); !errors.Is(err, want) {
			t.Errorf("UserinfoBound(jkt %q) = %v, want %v", jkt, err, want)
		}
	}
	refresh := func(s *dpop.Signer) (*tokens.Response, error) {
		req := grants.Request{GrantType: "refresh_token", RefreshToken: resp.RefreshToken}
		if s != nil {
			req.DPoP = proof(t, s, "")
		}
		return f.token(t, "app", req)
	}
	_, err = refresh(other)
	wantCode(t, "refresh with another key", err, oauth.ErrInvalidGrant)
	_, err = refresh(nil)
	wantCode(t, "refresh without a proof", err, oauth.ErrInvalidDPoPProof)
	next, err := refresh(key)
	if err != nil {
		t.Fatalf("refresh with the bound key (after refused attempts): %v", err)
	}
	f.wantJKT(t, next, key.Thumbprint())
	if !strings.Contains(f.audit.String(), `"dpop_rejected"`) {
		t.Error("no dpop_rejected audit event")
	}
}

// TestDPoPConfidentialClientRefreshIsNotBound: a confidential client's
// refresh token is not bound (RFC 9449 §5), but each access token is bound
// to the proof that came with its request.
func TestDPoPConfidentialClientRefreshIsNotBound(t *testing.T) {
	f := newFixture(t)
	key, other := newSigner(t), newSigner(t)
	resp, err := f.token(t, "svc", grants.Request{GrantType: "authorization_code", Code: f.code(t, "openid", "offline_access"), RedirectURI: "https://svc.example.com/callback", CodeVerifier: verifier, DPoP: proof(t, key, "")})
	if err != nil {
		t.Fatal(err)
	}
	f.wantJKT(t, resp, key.Thumbprint())
	bearer, err := f.token(t, "svc", grants.Request{GrantType: "refresh_token", RefreshToken: resp.RefreshToken})
	if err != nil || bearer.TokenType != "Bearer" {
		t.Fatalf("refresh without a proof = %+v, %v; want a bearer token", bearer, err)
	}
	if at, _ := f.a.CheckAccessToken(context.Background(), bearer.AccessToken); at == nil || at.JKT != "" {
		t.Errorf("bearer access token claims %v, want no cnf", at)
	}
	bound, err := f.token(t, "svc", grants.Request{GrantType: "refresh_token", RefreshToken: bearer.RefreshToken, DPoP: proof(t, other, "")})
	if err != nil {
		t.Fatal(err)
	}
	f.wantJKT(t, bound, other.Thumbprint())
}

// TestDPoPProofRefused: every bad proof is invalid_dpop_proof and issues
// nothing.
func TestDPoPProofRefused(t *testing.T) {
	f := newFixture(t)
	key := newSigner(t)
	mk := func(method, url, ath string) string {
		p, err := key.Proof(method, url, ath, "")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	replayed := mk(http.MethodPost, tokenURL, "")
	if _, err := f.token(t, "svc", grants.Request{GrantType: "client_credentials", DPoP: []string{replayed}}); err != nil {
		t.Fatalf("first use: %v", err)
	}
	for name, proofs := range map[string][]string{
		"wrong htm":        {mk(http.MethodGet, tokenURL, "")},
		"wrong htu":        {mk(http.MethodPost, runtimetest.Issuer+"/userinfo", "")},
		"other host htu":   {mk(http.MethodPost, "https://evil.test/token", "")},
		"replayed jti":     {replayed},
		"two headers":      {mk(http.MethodPost, tokenURL, ""), mk(http.MethodPost, tokenURL, "")},
		"oversized":        {strings.Repeat("a", 9<<10) + "." + "b.c"},
		"malformed":        {"not-a-jwt"},
		"empty":            {""},
		"unsigned":         {"eyJhbGciOiJub25lIiwidHlwIjoiZHBvcCtqd3QifQ.eyJqdGkiOiJ4In0."},
		"signature broken": {replayed[:len(replayed)-4] + "AAAA"},
	} {
		_, err := f.token(t, "svc", grants.Request{GrantType: "client_credentials", DPoP: proofs})
		wantCode(t, name, err, oauth.ErrInvalidDPoPProof)
	}
	// Stale: the broker's clock is past the proof's iat plus the skew.
	stale := mk(http.MethodPost, tokenURL, "")
	f.Clock.Advance(config.DefaultDPoPSkew + 5*time.Second)
	_, err := f.token(t, "svc", grants.Request{GrantType: "client_credentials", DPoP: []string{stale}})
	wantCode(t, "stale iat", err, oauth.ErrInvalidDPoPProof)
}

// TestDPoPReplayAcrossReplicas: two replicas sharing the store accept a
// proof once between them.
func TestDPoPReplayAcrossReplicas(t *testing.T) {
	f := newFixture(t)
	sealer, _ := tokens.NewSealer(nil)
	replica := grants.New(grants.Deps{Tokens: f.a, Sealer: sealer, Store: f.Store, Now: f.Clock.Now, Audit: observe.NewAudit(slog.New(slog.DiscardHandler))})
	p := proof(t, newSigner(t), "")
	if _, err := f.token(t, "svc", grants.Request{GrantType: "client_credentials", DPoP: p}); err != nil {
		t.Fatal(err)
	}
	_, err := replica.Token(context.Background(), f.Runtime, f.Client(t, "svc"), grants.Request{GrantType: "client_credentials", DPoP: p})
	wantCode(t, "proof replayed at another replica", err, oauth.ErrInvalidDPoPProof)
}

// TestDPoPRequired: a client with require_dpop gets nothing without a
// proof, and bound tokens with one.
func TestDPoPRequired(t *testing.T) {
	f := newFixtureWith(t, "", func(c *config.Config) {
		for i := range c.Clients {
			c.Clients[i].RequireDPoP = true
		}
	})
	_, err := f.token(t, "svc", grants.Request{GrantType: "client_credentials"})
	wantCode(t, "require_dpop without a proof", err, oauth.ErrInvalidDPoPProof)
	key := newSigner(t)
	resp, err := f.token(t, "svc", grants.Request{GrantType: "client_credentials", DPoP: proof(t, key, "")})
	if err != nil {
		t.Fatal(err)
	}
	f.wantJKT(t, resp, key.Thumbprint())
}

// TestDPoPNonce: with tokens.dpop.nonce a proof must carry a nonce the
// broker issued within the nonce lifetime; any replica with the same
// key-encryption key accepts it.
func TestDPoPNonce(t *testing.T) {
	f := newFixtureWith(t, "", func(c *config.Config) { c.Tokens.DPoP.Nonce = true })
	sealer, err := tokens.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	audit := observe.NewAudit(slog.New(slog.DiscardHandler))
	g := grants.New(grants.Deps{Tokens: f.a, Sealer: sealer, Store: f.Store, Now: f.Clock.Now, Audit: audit})
	replica := grants.New(grants.Deps{Tokens: f.a, Sealer: sealer, Store: f.Store, Now: f.Clock.Now, Audit: audit})
	past := grants.New(grants.Deps{Tokens: f.a, Sealer: sealer, Store: f.Store, Now: func() time.Time { return f.Clock.Now().Add(-config.DefaultDPoPNonceLifetime - time.Second) }, Audit: audit})
	otherKEK, _ := tokens.NewSealer(bytes.Repeat([]byte{8}, 32))
	stranger := grants.New(grants.Deps{Tokens: f.a, Sealer: otherKEK, Store: f.Store, Now: f.Clock.Now, Audit: audit})
	svc := f.Client(t, "svc")
	key := newSigner(t)
	cc := func(nonce string) error {
		_, err := g.Token(context.Background(), f.Runtime, svc, grants.Request{GrantType: "client_credentials", DPoP: proof(t, key, nonce)})
		return err
	}
	wantCode(t, "no nonce", cc(""), oauth.ErrUseDPoPNonce)
	wantCode(t, "made-up nonce", cc("bm9uY2U"), oauth.ErrUseDPoPNonce)
	wantCode(t, "oversized nonce", cc(strings.Repeat("A", 200)), oauth.ErrUseDPoPNonce)
	wantCode(t, "expired nonce", cc(past.DPoPNonce(f.Runtime)), oauth.ErrUseDPoPNonce)
	wantCode(t, "another key-encryption key's nonce", cc(stranger.DPoPNonce(f.Runtime)), oauth.ErrUseDPoPNonce)
	nonce := replica.DPoPNonce(f.Runtime)
	if nonce == "" {
		t.Fatal("no nonce with tokens.dpop.nonce on")
	}
	if err := cc(nonce); err != nil {
		t.Fatalf("proof with another replica's nonce: %v", err)
	}
	future := grants.New(grants.Deps{Tokens: f.a, Sealer: sealer, Store: f.Store, Now: func() time.Time { return f.Clock.Now().Add(config.DefaultDPoPSkew + time.Minute) }, Audit: audit})
	wantCode(t, "nonce from beyond the skew ahead", cc(future.DPoPNonce(f.Runtime)), oauth.ErrUseDPoPNonce)
	if a, b := g.DPoPNonce(f.Runtime), g.DPoPNonce(f.Runtime); a == b {
		t.Errorf("two nonces are both %q, want each sealed afresh", a)
	}
	// Without the option no nonce is issued nor required.
	plain := newFixture(t)
	if n := plain.g.DPoPNonce(plain.Runtime); n != "" {
		t.Errorf("DPoPNonce with the option off = %q, want none", n)
	}
}

// TestDPoPDelegation: one of the broker's DPoP-bound access tokens is
// exchanged only with a proof of its key; the new token is bound too.
func TestDPoPDelegation(t *testing.T) {
	f := newFixtureWith(t, "", svcExchanges)
	key := newSigner(t)
	subject, err := f.token(t, "svc", grants.Request{GrantType: "client_credentials", DPoP: proof(t, key, "")})
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(s *dpop.Signer) (*tokens.Response, error) {
		req := grants.Request{GrantType: config.GrantTokenExchange, SubjectToken: subject.AccessToken, SubjectTokenType: oauth.TokenTypeAccessToken, Audience: []string{"billing.acme.com"}}
		if s != nil {
			req.DPoP = proof(t, s, "")
		}
		return f.token(t, "svc", req)
	}
	_, err = exchange(nil)
	wantCode(t, "bound subject token without a proof", err, oauth.ErrInvalidRequest)
	_, err = exchange(newSigner(t))
	wantCode(t, "bound subject token with another key", err, oauth.ErrInvalidRequest)
	resp, err := exchange(key)
	if err != nil {
		t.Fatal(err)
	}
	f.wantJKT(t, resp, key.Thumbprint())
}

// TestDPoPMalformedConfirmationRefused: an access token of the broker's
// keys whose cnf the broker cannot check (not an object, no jkt, an empty
// or non-string jkt) is invalid, never taken as a bearer token.
func TestDPoPMalformedConfirmationRefused(t *testing.T) {
	f := newFixture(t)
	svc := f.Client(t, "svc")
	now := f.Clock.Now().Unix()
	for _, cnf := range []string{`"x"`, `{}`, `{"jkt":""}`, `{"jkt":7}`, `null`, `{"x5t#S256":"abc"}`} {
		payload := fmt.Sprintf(`{"iss":%q,"sub":"svc","aud":"svc","client_id":"svc","exp":%d,"iat":%d,"jti":%q,"cnf":%s}`, runtimetest.Issuer, now+60, now, oauth.RandomToken(8), cnf)
		tok, err := f.Keys.Sign(svc.Alg, []byte(payload), tokens.TypAccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.a.CheckAccessToken(context.Background(), tok); !errors.Is(err, tokens.ErrInvalid) {
			t.Errorf("CheckAccessToken(cnf %s) = %v, want ErrInvalid", cnf, err)
		}
	}
}

// TestDPoPRefreshRetryKeepsTheBinding: the retry of a bound family's
// refresh (the response was lost) needs a proof of the family's key too,
// and its new access token is bound to it.
func TestDPoPRefreshRetryKeepsTheBinding(t *testing.T) {
	f := newFixture(t)
	sealer, err := tokens.NewSealer(bytes.Repeat([]byte{5}, 32))
	if err != nil {
		t.Fatal(err)
	}
	f.g = grants.New(grants.Deps{Tokens: f.a, Sealer: sealer, Store: f.Store, Now: f.Clock.Now, Audit: observe.NewAudit(slog.New(slog.DiscardHandler))})
	key := newSigner(t)
	resp, err := f.token(t, "app", grants.Request{GrantType: "authorization_code", Code: f.appCode(t), RedirectURI: "http://127.0.0.1:9999/cb", CodeVerifier: verifier, DPoP: proof(t, key, "")})
	if err != nil {
		t.Fatal(err)
	}
	refresh := func(s *dpop.Signer) (*tokens.Response, error) {
		req := grants.Request{GrantType: "refresh_token", RefreshToken: resp.RefreshToken}
		if s != nil {
			req.DPoP = proof(t, s, "")
		}
		return f.token(t, "app", req)
	}
	first, err := refresh(key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = refresh(newSigner(t))
	wantCode(t, "retry with another key", err, oauth.ErrInvalidGrant)
	_, err = refresh(nil)
	wantCode(t, "retry without a proof", err, oauth.ErrInvalidDPoPProof)
	retry, err := refresh(key)
	if err != nil {
		t.Fatalf("retry with the family's key: %v", err)
	}
	if retry.RefreshToken != first.RefreshToken {
		t.Errorf("retry answered another successor")
	}
	f.wantJKT(t, retry, key.Thumbprint())
}
