package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker/tokens"
)

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// TestRedirectURITricks: an unregistered redirect_uri never gets a redirect,
// only an error page.
func TestRedirectURITricks(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	tests := []struct {
		name, uri string
	}{
		{"case change", "http://127.0.0.1:9999/CB"},
		{"trailing slash", "http://127.0.0.1:9999/cb/"},
		{"added query", "http://127.0.0.1:9999/cb?x=1"},
		{"fragment", "http://127.0.0.1:9999/cb#frag"},
		{"userinfo", "http://evil.com@127.0.0.1:9999/cb"},
		{"other host", "http://evil.com:9999/cb"},
		{"https instead of http", "https://127.0.0.1:9999/cb"},
		{"other port on a non-loopback URI", "https://svc.example.com:8443/callback"},
		{"subdomain", "https://svc.example.com.evil.com/callback"},
		{"unregistered", "https://attacker.example/cb"},
		{"empty", ""},
		{"path traversal", "http://127.0.0.1:9999/cb/../evil"},
		{"encoded", "http://127.0.0.1:9999/%63b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := authParams(newPKCE())
			if strings.HasPrefix(tt.uri, "https://svc") {
				params.Set("client_id", "svc")
			}
			params.Set("redirect_uri", tt.uri)
			r := h.authorize(h.newBrowser(), params)
			if r.status != http.StatusBadRequest || r.location != nil {
				t.Fatalf("authorize(redirect_uri=%q) = %d Location %v, want 400 error page and no redirect", tt.uri, r.status, r.location)
			}
			if !strings.Contains(r.header.Get("Content-Type"), "text/html") || !strings.Contains(r.body, "not registered") {
				t.Errorf("want a readable HTML error page, got %q", r.body)
			}
		})
	}
	t.Run("loopback may vary its port", func(t *testing.T) {
		params := authParams(newPKCE())
		params.Set("redirect_uri", "http://127.0.0.1:4321/cb")
		r := h.authorize(h.newBrowser(), params)
		if r.status != http.StatusFound {
			t.Fatalf("loopback with another port = %d, want 302", r.status)
		}
	})
	t.Run("unknown client", func(t *testing.T) {
		params := authParams(newPKCE())
		params.Set("client_id", "mallory")
		if r := h.authorize(h.newBrowser(), params); r.status != http.StatusBadRequest || r.location != nil {
			t.Fatalf("unknown client = %d %v, want error page", r.status, r.location)
		}
	})
}

// TestAuthorizeErrorsGoBackToClient: once client and redirect_uri are valid,
// errors are redirected with state and iss.
func TestAuthorizeErrorsGoBackToClient(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	p := newPKCE()
	tests := []struct {
		name string
		set  map[string]string
		del  []string
		want string
	}{
		{"response_type token", map[string]string{"response_type": "token"}, nil, "unsupported_response_type"},
		{"PKCE missing for a public client", nil, []string{"code_challenge", "code_challenge_method"}, "invalid_request"},
		{"PKCE plain", map[string]string{"code_challenge_method": "plain", "code_challenge": p.verifier}, nil, "invalid_request"},
		{"PKCE method missing", nil, []string{"code_challenge_method"}, "invalid_request"},
		{"PKCE challenge malformed", map[string]string{"code_challenge": "short"}, nil, "invalid_request"},
		{"unknown scope", map[string]string{"scope": "openid admin"}, nil, "invalid_scope"},
		{"no openid", map[string]string{"scope": "email"}, nil, "invalid_scope"},
		{"prompt none and login", map[string]string{"prompt": "none login"}, nil, "invalid_request"},
		{"prompt none without session", map[string]string{"prompt": "none"}, nil, "login_required"},
		{"bad max_age", map[string]string{"max_age": "-3"}, nil, "invalid_request"},
		{"request object", map[string]string{"request": "x.y.z"}, nil, "request_not_supported"},
		{"unknown connector", map[string]string{"connector_id": "nope"}, nil, "invalid_request"},
		{"disallowed connector", map[string]string{"client_id": "other", "redirect_uri": "http://127.0.0.1:8888/cb", "connector_id": "backup"}, nil, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := authParams(p)
			for k, v := range tt.set {
				params.Set(k, v)
			}
			for _, k := range tt.del {
				params.Del(k)
			}
			r := h.authorize(h.newBrowser(), params)
			if r.status != http.StatusFound || r.location == nil {
				t.Fatalf("authorize = %d, want 302 back to the client; body %s", r.status, r.body)
			}
			q := r.location.Query()
			if q.Get("error") != tt.want || q.Get("state") != params.Get("state") || q.Get("iss") != h.issuer {
				t.Fatalf("redirect %v: error=%q state=%q iss=%q, want %q with state and iss", r.location, q.Get("error"), q.Get("state"), q.Get("iss"), tt.want)
			}
		})
	}
	t.Run("unknown parameters are ignored", func(t *testing.T) {
		params := authParams(p)
		params.Set("frobnicate", "1")
		if r := h.authorize(h.newBrowser(), params); r.status != http.StatusFound || r.location.Query().Get("error") != "" {
			t.Fatalf("unknown parameter: %d %v", r.status, r.location)
		}
	})
}

// TestPKCEAtTokenEndpoint: wrong, missing and unexpected verifiers.
func TestPKCEAtTokenEndpoint(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	t.Run("wrong verifier", func(t *testing.T) {
		p := newPKCE()
		code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
		wantOAuthError(t, h.redeem(code, newPKCE()), 400, "invalid_grant")
	})
	t.Run("missing verifier", func(t *testing.T) {
		p := newPKCE()
		code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
		wantOAuthError(t, h.redeem(code, pkce{}), 400, "invalid_grant")
	})
	t.Run("verifier without challenge", func(t *testing.T) {
		params := url.Values{"client_id": {"svc"}, "redirect_uri": {svcRedirect}, "response_type": {"code"}, "scope": {"openid"}, "state": {"x"}}
		code, _ := h.login(h.newBrowser(), params, "alice", alicePassword)
		tr := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {svcRedirect}, "code_verifier": {newPKCE().verifier}}, "svc", svcSecret)
		wantOAuthError(t, tr, 400, "invalid_grant")
	})
	t.Run("redirect_uri differs at the token endpoint", func(t *testing.T) {
		p := newPKCE()
		code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
		tr := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://127.0.0.1:9999/other"}, "client_id": {"app"}, "code_verifier": {p.verifier}}, "", "")
		wantOAuthError(t, tr, 400, "invalid_grant")
	})
}

// TestCodeReplay: a code is redeemed once; the replay revokes the refresh
// family issued from it.
func TestCodeReplay(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	first := h.redeem(code, p)
	if first.status != 200 {
		t.Fatalf("first redeem = %d %s", first.status, first.Error)
	}
	wantOAuthError(t, h.redeem(code, p), 400, "invalid_grant")
	wantOAuthError(t, h.refresh(first.RefreshToken, "app"), 400, "invalid_grant")
}

// TestCodeWrongClient: a code issued to one client is useless to another.
func TestCodeWrongClient(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	tr := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appRedirect}, "client_id": {"other"}, "code_verifier": {p.verifier}}, "", "")
	wantOAuthError(t, tr, 400, "invalid_grant")
}

// TestConcurrentCodeRedemption: 20 parallel redemptions of one code, one
// success.
func TestConcurrentCodeRedemption(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tr := h.redeem(code, p); tr.status == 200 {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d redemptions succeeded, want exactly 1", ok)
	}
}

// TestRefreshReuseAndBinding: a rotated token revokes its family when it
// comes back; another client cannot use a refresh token.
func TestRefreshReuseAndBinding(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	tr := h.redeem(code, p)
	wantOAuthError(t, h.refresh(tr.RefreshToken, "other"), 400, "invalid_grant")
	next := h.refresh(tr.RefreshToken, "app")
	if next.status != 200 {
		t.Fatalf("refresh by its own client after a foreign attempt = %d %s", next.status, next.Error)
	}
	wantOAuthError(t, h.refresh(tr.RefreshToken, "app"), 400, "invalid_grant")
	wantOAuthError(t, h.refresh(next.RefreshToken, "app"), 400, "invalid_grant")
	if !strings.Contains(h.audit.String(), "refresh_reused") {
		t.Error("no refresh_reused audit event")
	}
}

// TestBrowserBinding: a login page or callback opened in another browser is
// refused, as is a forged CSRF token.
func TestBrowserBinding(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	br := h.newBrowser()
	params := authParams(newPKCE())
	params.Set("connector_id", "local")
	r := h.authorize(br, params)
	if r.status != http.StatusFound {
		t.Fatalf("authorize = %d", r.status)
	}
	other := h.newBrowser()
	if page := other.get(r.location.String()); page.status != http.StatusBadRequest || !strings.Contains(page.body, "another browser") {
		t.Fatalf("login page from another browser = %d, want 400 page", page.status)
	}
	page := br.get(r.location.String())
	req := reqField.FindStringSubmatch(page.body)[1]
	bad := br.postForm(h.issuer+"/login/local", url.Values{"req": {req}, "csrf": {"forged"}, "login": {"alice"}, "password": {alicePassword}})
	if bad.status != http.StatusBadRequest || bad.location != nil {
		t.Fatalf("forged csrf = %d %v, want 400", bad.status, bad.location)
	}
	if cb := br.get(h.issuer + "/callback/local?state=" + req); cb.status != http.StatusBadRequest {
		t.Fatalf("callback for a password connector = %d, want 400", cb.status)
	}
}

// TestLoginRateLimit: repeated wrong passwords for one user are throttled.
func TestLoginRateLimit(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	br := h.newBrowser()
	params := authParams(newPKCE())
	params.Set("connector_id", "local")
	r := h.authorize(br, params)
	var last response
	for range 8 {
		last = h.passwordLogin(br, r.location, "alice", "wrong")
	}
	if last.status != http.StatusTooManyRequests {
		t.Fatalf("8th wrong password = %d, want 429", last.status)
	}
	if strings.Contains(h.audit.String(), "wrong\"") {
		t.Error("a password reached the audit log")
	}
}

// TestIDTokenHint: logout redirects only with a genuine, unexpired ID token
// for the client that registered the URI.
func TestIDTokenHint(t *testing.T) {
	clk := newClock()
	h := newHarness(t, nil, clk, nil)
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	tr := h.redeem(code, p)
	if tr.status != 200 {
		t.Fatal(tr.Error)
	}
	hdr := jwtHeader(t, tr.IDToken)
	kid, _ := hdr["kid"].(string)
	_, payload, _ := strings.Cut(tr.IDToken, ".")
	payload, _, _ = strings.Cut(payload, ".")

	// alg none
	noneHdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"` + kid + `"}`))
	algNone := noneHdr + "." + payload + "."

	// HS256 keyed with the public key (PEM and JWK bytes)
	var set jose.JSONWebKeySet
	body, _ := h.keys.JWKS()
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	var hs []string
	for _, k := range set.Keys {
		if k.KeyID != kid {
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(k.Key)
		if err != nil {
			t.Fatal(err)
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		jwkBytes, _ := k.MarshalJSON()
		for _, secret := range [][]byte{pemBytes, jwkBytes} {
			sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := b64(payload)
			obj, err := sig.Sign(raw)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := obj.CompactSerialize()
			hs = append(hs, s)
		}
		if _, ok := k.Key.(*ecdsa.PublicKey); !ok {
			t.Fatalf("default key is %T, want ECDSA", k.Key)
		}
	}
	if len(hs) == 0 {
		t.Fatal("active kid not in JWKS")
	}

	// an ID token for another client
	p2 := newPKCE()
	params := url.Values{"client_id": {"other"}, "redirect_uri": {"http://127.0.0.1:8888/cb"}, "response_type": {"code"}, "scope": {"openid"}, "state": {"s"}, "code_challenge": {p2.challenge}, "code_challenge_method": {"S256"}}
	code2, _ := h.login(h.newBrowser(), params, "bob", bobPassword)
	other := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code2}, "redirect_uri": {"http://127.0.0.1:8888/cb"}, "client_id": {"other"}, "code_verifier": {p2.verifier}}, "", "")
	if other.status != 200 {
		t.Fatal(other.Error)
	}

	tests := []struct{ name, hint string }{
		{"alg none", algNone},
		{"HS256 with the public key as PEM", hs[0]},
		{"HS256 with the public key as JWK", hs[1]},
		{"another client's token", other.IDToken},
		{"an access token", tr.AccessToken},
		{"garbage", "a.b.c"},
		{"missing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.newBrowser().get(h.issuer + "/logout?" + url.Values{"id_token_hint": {tt.hint}, "post_logout_redirect_uri": {appLogout}}.Encode())
			if r.location != nil {
				t.Fatalf("logout redirected to %v with a bad hint", r.location)
			}
			if r.status != http.StatusBadRequest {
				t.Fatalf("logout = %d, want 400", r.status)
			}
		})
	}
	// An ID token expired a while ago is still a hint (RP-Initiated
	// Logout 1.0 §2: the app signs out long after its ID token's
	// minutes); one expired more than a day ago is not.
	t.Run("recently expired", func(t *testing.T) {
		clk.Advance(6 * time.Minute)
		r := h.newBrowser().get(h.issuer + "/logout?" + url.Values{"id_token_hint": {tr.IDToken}, "post_logout_redirect_uri": {appLogout}}.Encode())
		if r.location == nil || r.location.String() != appLogout {
			t.Fatalf("logout with a recently expired hint = %d %v, want a redirect to %s", r.status, r.location, appLogout)
		}
	})
	t.Run("expired long ago", func(t *testing.T) {
		clk.Advance(tokens.IDTokenHintGrace)
		r := h.newBrowser().get(h.issuer + "/logout?" + url.Values{"id_token_hint": {tr.IDToken}, "post_logout_redirect_uri": {appLogout}}.Encode())
		if r.location != nil || r.status != http.StatusBadRequest {
			t.Fatalf("logout with a hint expired a day ago = %d %v, want 400 and no redirect", r.status, r.location)
		}
	})
	t.Run("unregistered post_logout_redirect_uri", func(t *testing.T) {
		r := h.newBrowser().get(h.issuer + "/logout?" + url.Values{"id_token_hint": {other.IDToken}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode())
		if r.location != nil {
			t.Fatalf("redirected to %v", r.location)
		}
	})
	_ = context.Background
}

// TestDiscoveryAndJWKS: discovery matches what is served; JWKS is cacheable.
func TestDiscoveryAndJWKS(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	resp, err := http.Get(h.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if d["issuer"] != h.issuer || d["authorization_response_iss_parameter_supported"] != true {
		t.Fatalf("discovery = %v", d)
	}
	methods, _ := json.Marshal(d["code_challenge_methods_supported"])
	if string(methods) != `["S256"]` {
		t.Errorf("code_challenge_methods_supported = %s, want only S256", methods)
	}
	resp, err = http.Get(h.issuer + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Errorf("JWKS Cache-Control = %q, want max-age", cc)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(h.issuer + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
		}
	}
	resp, err = http.Get(h.issuer + "/no-such-page")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("unknown path = %d %s, want a 404 page", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestTokenEndpointMalformed: hostile request shapes get OAuth errors, never
// a 500.
func TestTokenEndpointMalformed(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	post := func(ct, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, h.issuer+"/token", strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	tests := []struct {
		name, ct, body string
		status         int
		code           string
	}{
		{"json body", "application/json", `{"grant_type":"authorization_code"}`, 400, "invalid_request"},
		{"oversized", "application/x-www-form-urlencoded", "client_id=app&x=" + strings.Repeat("a", 100<<10), 400, "invalid_request"},
		{"repeated grant_type", "application/x-www-form-urlencoded", "grant_type=authorization_code&grant_type=refresh_token&client_id=app", 400, "invalid_request"},
		{"no grant_type", "application/x-www-form-urlencoded", "client_id=app", 400, "invalid_request"},
		{"bad escape", "application/x-www-form-urlencoded", "client_id=%zz", 400, "invalid_request"},
		{"huge code", "application/x-www-form-urlencoded", "client_id=app&grant_type=authorization_code&code=" + strings.Repeat("c", 4000), 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := post(tt.ct, tt.body)
			if status != tt.status || code != tt.code {
				t.Fatalf("POST /token = %d %q, want %d %q", status, code, tt.status, tt.code)
			}
		})
	}
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
