package testidp

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func (p *IdP) discovery(w http.ResponseWriter, r *http.Request) {
	u := p.srv.URL
	p.mu.Lock()
	advertiseIss := p.issParam.Advertise
	scopes := p.scopes
	endSession := p.endSession
	p.mu.Unlock()
	if scopes == nil {
		scopes = []string{"openid", "profile", "email", "offline_access"}
	}
	doc := map[string]any{
		"issuer":                                p.Issuer(),
		"authorization_endpoint":                u + "/authorize",
		"token_endpoint":                        u + "/token",
		"userinfo_endpoint":                     u + "/userinfo",
		"jwks_uri":                              u + "/keys",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(p.opts.Algorithm)},
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      scopes,
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
	}
	if advertiseIss {
		doc["authorization_response_iss_parameter_supported"] = true
	}
	if endSession {
		doc["end_session_endpoint"] = u + "/end_session"
		doc["backchannel_logout_supported"] = true
		doc["backchannel_logout_session_supported"] = true
	}
	writeJSON(w, http.StatusOK, doc)
}

func (p *IdP) jwks(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.keyFetches++
	var set jose.JSONWebKeySet
	for _, k := range p.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, set)
}

// authorize approves the login user at once and redirects back with a code,
// or with error=... when configured or when the request is invalid.
func (p *IdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect := q.Get("redirect_uri")
	ru, err := url.Parse(redirect)
	if err != nil || !ru.IsAbs() || q.Get("client_id") != p.opts.ClientID {
		http.Error(w, "invalid client_id or redirect_uri", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastAuthorize = q
	back := func(v url.Values) {
		v.Set("state", q.Get("state"))
		ru.RawQuery = p.withIss(v).Encode()
		http.Redirect(w, r, ru.String(), http.StatusFound)
	}
	fail := func(code, desc string) { back(url.Values{"error": {code}, "error_description": {desc}}) }

	switch {
	case p.authzErr != "":
		fail(p.authzErr, "configured error")
		return
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only code")
		return
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		fail("invalid_request", "PKCE S256 required")
		return
	}
	u, ok := p.users[p.login]
	if !ok || u.disabled {
		fail("access_denied", "no such user or user disabled")
		return
	}
	code := randString(16)
	p.codes[code] = &grant{
		sub: u.Subject, nonce: q.Get("nonce"), redirectURI: redirect,
		challenge: q.Get("code_challenge"), scope: p.grantedScope(q),
		expires: p.opts.Now().Add(time.Minute),
	}
	back(url.Values{"code": {code}})
}

func (p *IdP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "bad form")
		return
	}
	if r.PostForm.Get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		p.jwtBearer(w, r)
		return
	}
	if why := p.authenticateClient(r); why != "" {
		oauthError(w, http.StatusUnauthorized, "invalid_client", why)
		return
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tokenErr != "" {
		oauthError(w, p.tokenStatus, p.tokenErr, "configured error")
		return
	}
	now := p.opts.Now()
	var g *grant
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		code := r.PostForm.Get("code")
		g = p.codes[code]
		delete(p.codes, code)
		if g == nil || now.After(g.expires) || g.redirectURI != r.PostForm.Get("redirect_uri") {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown, used or expired code")
			return
		}
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
			return
		}
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		g = p.refresh[rt]
		delete(p.refresh, rt)
		if g == nil {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown refresh token")
			return
		}
		g = &grant{sub: g.sub, scope: g.scope} // no nonce on refresh
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "")
		return
	}
	u, ok := p.users[g.sub]
	if !ok || u.disabled {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "user disabled")
		return
	}
	idToken, err := p.signIDToken(u, g, now)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	at := randString(16)
	p.access[at] = &grant{sub: g.sub, scope: g.scope, expires: now.Add(p.opts.TokenLifetime)}
	resp := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   int(p.opts.TokenLifetime.Seconds()),
		"id_token":     idToken,
	}
	if p.noRefreshIDToken && r.PostForm.Get("grant_type") == "refresh_token" {
		delete(resp, "id_token")
	}
	if hasScope(g.scope, "offline_access") {
		rt := randString(16)
		p.refresh[rt] = g
		resp["refresh_token"] = rt
	}
	writeJSON(w, http.StatusOK, resp)
}

// signIDToken builds and signs u's ID token; p.mu is held.
func (p *IdP) signIDToken(u *userState, g *grant, now time.Time) (string, error) {
	claims := map[string]any{}
	maps.Copy(claims, u.Claims)
	if _, ok := claims["iss"]; !ok {
		claims["iss"] = p.issuer
	}
	claims["sub"] = u.Subject
	claims["aud"] = p.opts.ClientID
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(p.opts.TokenLifetime).Unix()
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	t := p.tamper
	if t.WrongNonce {
		claims["nonce"] = "not-" + g.nonce
	}
	if t.Expired {
		claims["iat"] = now.Add(-2 * time.Hour).Unix()
		claims["exp"] = now.Add(-time.Hour).Unix()
	}
	if t.WrongAud {
		claims["aud"] = "another-client"
	}
	for k, v := range t.ExtraClaims {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	k := p.keys[0]
	switch {
	case t.ForeignKey:
		k = signingKey{kid: k.kid, key: p.foreign.key, alg: p.foreign.alg}
	case t.UnknownKid:
		k = p.foreign
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), k.kid))
	if err != nil {
		return "", fmt.Errorf("testidp: signer: %w", err)
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

func (p *IdP) userinfo(w http.ResponseWriter, r *http.Request) {
	g, ok := p.bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u, ok := p.users[g.sub]
	if !ok || u.disabled {
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return
	}
	claims := map[string]any{}
	maps.Copy(claims, u.Claims)
	maps.Copy(claims, u.UserinfoClaims)
	delete(claims, "iss")
	claims["sub"] = u.Subject
	writeJSON(w, http.StatusOK, claims)
}

// bearer returns the grant behind the request's bearer access token.
func (p *IdP) bearer(r *http.Request) (*grant, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.access[tok]
	if !ok || p.opts.Now().After(g.expires) {
		return nil, false
	}
	return g, true
}

func hasScope(scope, want string) bool {
	for s := range strings.FieldsSeq(scope) {
		if s == want {
			return true
		}
	}
	return false
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
