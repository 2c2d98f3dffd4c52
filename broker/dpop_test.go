package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/dpop"
)

func newDPoPSigner(t testing.TB) *dpop.Signer {
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

// mustProof is a proof of s for method and url, with ath of accessToken
// and nonce when they are not empty.
func mustProof(t testing.TB, s *dpop.Signer, method, url, accessToken, nonce string) string {
	t.Helper()
	p, err := s.Proof(method, url, accessToken, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tokenRequest is a POST /token with form, basic credentials when user is
// set, and one DPoP header per proof.
func tokenRequest(t testing.TB, issuer string, form url.Values, user, pass string, proofs ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return req
}

func decodeTokenResponse(t testing.TB, status int, header http.Header, body []byte) tokenResponse {
	t.Helper()
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("POST /token = %d with non-JSON body %q", status, body)
	}
	tr.status, tr.header = status, header
	return tr
}

// dpopToken posts a token request with DPoP proofs over HTTP.
func (h *harness) dpopToken(form url.Values, user, pass string, proofs ...string) tokenResponse {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(tokenRequest(h.t, h.issuer, form, user, pass, proofs...))
	if err != nil {
		h.t.Fatalf("POST /token: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return decodeTokenResponse(h.t, resp.StatusCode, resp.Header, body)
}

// dpopUserinfo calls GET /userinfo with `Authorization: <scheme> <token>` and
// one DPoP header per proof.
func (h *harness) dpopUserinfo(scheme, token string, proofs ...string) response {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.issuer+"/userinfo", nil)
	req.Header.Set("Authorization", scheme+" "+token)
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return h.newBrowser().do(req)
}

// cnfJKT is the cnf.jkt of an access token, read from its payload.
func cnfJKT(t *testing.T, at string) string {
	t.Helper()
	parts := strings.Split(at, ".")
	if len(parts) != 3 {
		t.Fatalf("access token %q is not a JWS", at)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Cnf.JKT
}

// dpopLogin signs alice in for app and redeems the code with a proof of
// key.
func (h *harness) dpopLogin(key *dpop.Signer) tokenResponse {
	h.t.Helper()
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appRedirect}, "client_id": {"app"}, "code_verifier": {p.verifier}}
	return h.dpopToken(form, "", "", mustProof(h.t, key, http.MethodPost, h.issuer+"/token", "", ""))
}

// TestDPoPFlow: code → DPoP-bound tokens, used at /userinfo with proofs,
// introspected with cnf, refreshed with the same key; discovery advertises
// the proof algorithms.
func TestDPoPFlow(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	key := newDPoPSigner(t)
	tr := h.dpopLogin(key)
	if tr.status != http.StatusOK || tr.TokenType != "DPoP" {
		t.Fatalf("token = %d %q %q, want 200 DPoP", tr.status, tr.TokenType, tr.Error)
	}
	if got := cnfJKT(t, tr.AccessToken); got != key.Thumbprint() {
		t.Fatalf("cnf.jkt = %q, want the key's thumbprint %q", got, key.Thumbprint())
	}
	ui := h.dpopUserinfo("DPoP", tr.AccessToken, mustProof(t, key, http.MethodGet, h.issuer+"/userinfo", tr.AccessToken, ""))
	if ui.status != http.StatusOK || !strings.Contains(ui.body, `"sub"`) {
		t.Fatalf("userinfo with DPoP = %d %s", ui.status, ui.body)
	}
	in := h.newBrowser().postForm(h.issuer+"/introspect", url.Values{"token": {tr.AccessToken}, "client_id": {"svc"}, "client_secret": {svcSecret}})
	var intro struct {
		Active    bool   `json:"active"`
		TokenType string `json:"token_type"`
		Cnf       struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal([]byte(in.body), &intro); err != nil || !intro.Active || intro.TokenType != "DPoP" || intro.Cnf.JKT != key.Thumbprint() {
		t.Errorf("introspect = %d %s, want active, token_type DPoP, cnf.jkt", in.status, in.body)
	}
	next := h.dpopToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {"app"}}, "", "", mustProof(t, key, http.MethodPost, h.issuer+"/token", "", ""))
	if next.status != http.StatusOK || next.TokenType != "DPoP" || cnfJKT(t, next.AccessToken) != key.Thumbprint() {
		t.Fatalf("refresh with the same key = %d %q %q", next.status, next.TokenType, next.Error)
	}
	disc := h.newBrowser().get(h.issuer + "/.well-known/openid-configuration")
	var d struct {
		Algs []string `json:"dpop_signing_alg_values_supported"`
	}
	if err := json.Unmarshal([]byte(disc.body), &d); err != nil || len(d.Algs) == 0 || d.Algs[0] != "ES256" {
		t.Errorf("discovery dpop_signing_alg_values_supported = %v (%v)", d.Algs, err)
	}
}

// TestDPoPUserinfoRefusals: a bound token is refused as a bearer token,
// with another key's proof, and with a proof that lacks or misstates ath,
// names another URL or method, or was used before.
func TestDPoPUserinfoRefusals(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	key, other := newDPoPSigner(t), newDPoPSigner(t)
	tr := h.dpopLogin(key)
	if tr.status != http.StatusOK {
		t.Fatalf("token = %d %s", tr.status, tr.Error)
	}
	at, ui := tr.AccessToken, h.issuer+"/userinfo"
	used := mustProof(t, key, http.MethodGet, ui, at, "")
	if r := h.dpopUserinfo("dpop", at, used); r.status != http.StatusOK {
		t.Fatalf("userinfo (scheme in lower case) = %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		name, scheme string
		proofs       []string
		code         string
	}{
		{"bound token as bearer", "Bearer", nil, "invalid_token"},
		{"bound token as bearer with a proof", "Bearer", []string{mustProof(t, key, http.MethodGet, ui, at, "")}, "invalid_token"},
		{"proof of another key", "DPoP", []string{mustProof(t, other, http.MethodGet, ui, at, "")}, "invalid_token"},
		{"no proof", "DPoP", nil, "invalid_dpop_proof"},
		{"missing ath", "DPoP", []string{mustProof(t, key, http.MethodGet, ui, "", "")}, "invalid_dpop_proof"},
		{"ath of another token", "DPoP", []string{mustProof(t, key, http.MethodGet, ui, tr.IDToken, "")}, "invalid_dpop_proof"},
		{"wrong htu", "DPoP", []string{mustProof(t, key, http.MethodGet, h.issuer+"/token", at, "")}, "invalid_dpop_proof"},
		{"wrong htm", "DPoP", []string{mustProof(t, key, http.MethodPost, ui, at, "")}, "invalid_dpop_proof"},
		{"replayed proof", "DPoP", []string{used}, "invalid_dpop_proof"},
		{"two proofs", "DPoP", []string{mustProof(t, key, http.MethodGet, ui, at, ""), mustProof(t, key, http.MethodGet, ui, at, "")}, "invalid_dpop_proof"},
	} {
		r := h.dpopUserinfo(tc.scheme, at, tc.proofs...)
		challenge := r.header.Get("WWW-Authenticate")
		if r.status != http.StatusUnauthorized || !strings.HasPrefix(challenge, "DPoP ") || !strings.Contains(challenge, `error="`+tc.code+`"`) || !strings.Contains(r.body, tc.code) {
			t.Errorf("%s: userinfo = %d, WWW-Authenticate %q, body %s; want 401 with a DPoP challenge, error %s", tc.name, r.status, challenge, r.body, tc.code)
		}
	}
	// An unbound token with the DPoP scheme is no DPoP token.
	bearer := h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {h.plainLogin().RefreshToken}, "client_id": {"app"}}, "", "")
	if r := h.dpopUserinfo("DPoP", bearer.AccessToken, mustProof(t, key, http.MethodGet, ui, bearer.AccessToken, "")); r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("unbound token with the DPoP scheme = %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r := h.dpopUserinfo("Bearer", bearer.AccessToken); r.status != http.StatusOK {
		t.Errorf("unbound token as bearer = %d %s", r.status, r.body)
	}
}

// plainLogin signs alice in for app without DPoP.
func (h *harness) plainLogin() tokenResponse {
	h.t.Helper()
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	tr := h.redeem(code, p)
	if tr.status != http.StatusOK || tr.TokenType != "Bearer" {
		h.t.Fatalf("token without DPoP = %d %q %q", tr.status, tr.TokenType, tr.Error)
	}
	return tr
}

// svcCredentials lets svc use client_credentials.
func svcCredentials(c *config.Config) {
	for i := range c.Clients {
		if c.Clients[i].ID == "svc" {
			c.Clients[i].GrantTypes = []string{config.GrantAuthorizationCode, config.GrantRefreshToken, config.GrantClientCredentials}
		}
	}
}

var ccForm = url.Values{"grant_type": {"client_credentials"}}

// TestDPoPTokenEndpointRefusals: the RFC 9449 negatives at the token
// endpoint, each answered 400 with its OAuth error.
func TestDPoPTokenEndpointRefusals(t *testing.T) {
	h := newHarness(t, nil, nil, svcCredentials)
	key, other := newDPoPSigner(t), newDPoPSigner(t)
	tokenURL := h.issuer + "/token"
	replayed := mustProof(t, key, http.MethodPost, tokenURL, "", "")
	if tr := h.dpopToken(ccForm, "svc", svcSecret, replayed); tr.status != http.StatusOK || tr.TokenType != "DPoP" {
		t.Fatalf("client_credentials with DPoP = %d %q %q", tr.status, tr.TokenType, tr.Error)
	}
	for name, proofs := range map[string][]string{
		"wrong htm":    {mustProof(t, key, http.MethodGet, tokenURL, "", "")},
		"wrong htu":    {mustProof(t, key, http.MethodPost, h.issuer+"/userinfo", "", "")},
		"replayed jti": {replayed},
		"two headers":  {mustProof(t, key, http.MethodPost, tokenURL, "", ""), mustProof(t, key, http.MethodPost, tokenURL, "", "")},
		"oversized":    {strings.Repeat("A", 9<<10) + ".B.C"},
		"malformed":    {"a.b"},
	} {
		t.Run(name, func(t *testing.T) {
			wantOAuthError(t, h.dpopToken(ccForm, "svc", svcSecret, proofs...), http.StatusBadRequest, "invalid_dpop_proof")
		})
	}
	// A public client's family is bound: another key cannot refresh it.
	tr := h.dpopLogin(key)
	wantOAuthError(t, h.dpopToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {"app"}}, "", "", mustProof(t, other, http.MethodPost, tokenURL, "", "")), http.StatusBadRequest, "invalid_grant")
	wantOAuthError(t, h.dpopToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {"app"}}, "", ""), http.StatusBadRequest, "invalid_dpop_proof")
	// Stale: iat further in the past than the skew allows.
	stale := mustProof(t, key, http.MethodPost, tokenURL, "", "")
	h.clock.Advance(config.DefaultDPoPSkew + 5*time.Second)
	wantOAuthError(t, h.dpopToken(ccForm, "svc", svcSecret, stale), http.StatusBadRequest, "invalid_dpop_proof")
}

// TestDPoPRequiredOverHTTP: require_dpop refuses a token request without
// a proof.
func TestDPoPRequiredOverHTTP(t *testing.T) {
	h := newHarness(t, nil, nil, func(c *config.Config) {
		svcCredentials(c)
		for i := range c.Clients {
			c.Clients[i].RequireDPoP = true
		}
	})
	wantOAuthError(t, h.dpopToken(ccForm, "svc", svcSecret), http.StatusBadRequest, "invalid_dpop_proof")
	if tr := h.dpopToken(ccForm, "svc", svcSecret, mustProof(t, newDPoPSigner(t), http.MethodPost, h.issuer+"/token", "", "")); tr.status != http.StatusOK || tr.TokenType != "DPoP" {
		t.Errorf("require_dpop with a proof = %d %q %q", tr.status, tr.TokenType, tr.Error)
	}
}

// TestDPoPNonceOverHTTP: with tokens.dpop.nonce, a proof without the
// nonce is use_dpop_nonce with a DPoP-Nonce header; the same request with
// that nonce succeeds, and the answer carries the next nonce.
func TestDPoPNonceOverHTTP(t *testing.T) {
	h := newHarness(t, nil, nil, func(c *config.Config) {
		svcCredentials(c)
		c.Tokens.DPoP.Nonce = true
	})
	key := newDPoPSigner(t)
	first := h.dpopToken(ccForm, "svc", svcSecret, mustProof(t, key, http.MethodPost, h.issuer+"/token", "", ""))
	wantOAuthError(t, first, http.StatusBadRequest, "use_dpop_nonce")
	nonce := first.header.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("use_dpop_nonce without a DPoP-Nonce header")
	}
	ok := h.dpopToken(ccForm, "svc", svcSecret, mustProof(t, key, http.MethodPost, h.issuer+"/token", "", nonce))
	if ok.status != http.StatusOK || ok.TokenType != "DPoP" || ok.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("with the nonce = %d %q %q, DPoP-Nonce %q", ok.status, ok.TokenType, ok.Error, ok.header.Get("DPoP-Nonce"))
	}
}

// TestDPoPReplayOnAnotherReplica: a second Server on the same store
// refuses a proof the first accepted.
func TestDPoPReplayOnAnotherReplica(t *testing.T) {
	var cfg *config.Config
	h := newHarness(t, nil, nil, func(c *config.Config) { svcCredentials(c); cfg = c })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	km, err := keys.New(ctx, h.store, keys.Options{Algorithm: cfg.Signing.Algorithm, Algorithms: cfg.Signing.Algorithms, MaxTokenLifetime: 5 * time.Minute, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	replica, err := New(ctx, cfg, Options{Storage: h.store, Keys: km, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	p := mustProof(t, newDPoPSigner(t), http.MethodPost, h.issuer+"/token", "", "")
	if tr := h.dpopToken(ccForm, "svc", svcSecret, p); tr.status != http.StatusOK {
		t.Fatalf("first use = %d %q", tr.status, tr.Error)
	}
	rec := httptest.NewRecorder()
	replica.Handler().ServeHTTP(rec, tokenRequest(t, h.issuer, ccForm, "svc", svcSecret, p))
	wantOAuthError(t, decodeTokenResponse(t, rec.Code, rec.Header(), rec.Body.Bytes()), http.StatusBadRequest, "invalid_dpop_proof")
}
