// Package demo runs the whole fedbroker story on one machine with no
// internet: the broker, two upstream identity providers of different kinds,
// a demo web application that signs in through the broker, and a demo API
// that verifies the broker's access tokens locally.
package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/fedbroker/fedbroker/dpop"
	"github.com/fedbroker/fedbroker/verify"
)

// App is a small OpenID Connect client (authorization code + PKCE) that
// keeps a session of its own, shows the decoded internal tokens it
// received, calls the demo API with the access token, and signs out at the
// broker (RP-initiated logout). The broker tells it when a session it
// signed in with ends elsewhere (back-channel logout, POST
// /backchannel-logout): it ends its own session of that broker session,
// and its signed-in page, which asks GET /session every 1.5 s, says so.
// It holds a DPoP key (RFC 9449) and sends a
// proof of it with every token request, so that the broker binds the
// tokens to the key; it calls the API with a proof too, and shows that the
// same token without one is refused.
type App struct {
	issuer, clientID, baseURL, apiURL string
	log                               *slog.Logger
	client                            *http.Client
	// dpop signs the app's DPoP proofs; nil when no key could be made.
	dpop *dpop.Signer
	// tokenClient is client with DPoP proofs on token requests.
	tokenClient *http.Client
	// logoutTokens verifies the broker's logout tokens (aud: the app's
	// client id); nil: the app has no back-channel logout endpoint.
	logoutTokens *verify.Verifier
	// cookie is the name of the app's browser cookie. It carries a digest
	// of the app's URL: cookies do not keep ports apart, and the broker,
	// Contoso and Fabrikam set theirs on the same host.
	cookie string
	// skew is added to the clock and margin overrides tokenMargin, both
	// only in tests (atomic: they change while the app serves).
	skew, margin atomic.Int64

	once       sync.Once
	initErr    error
	provider   *oidc.Provider
	oauth      *oauth2.Config
	verifier   *oidc.IDTokenVerifier
	endSession string // end_session_endpoint, "" when the broker has none
	revocation string // revocation_endpoint, "" when the broker has none

	mu       sync.Mutex
	pending  map[string]pendingLogin // by state
	sessions map[string]*appSession  // by cookie value
	logouts  map[string]time.Time    // state of sign-outs sent to the broker
	// ended are the cookie values of sessions that a back-channel logout
	// ended, and when: the home page says so once.
	ended map[string]time.Time
}

type pendingLogin struct {
	verifier, nonce string
	// browser is the cookie value of the browser that started the sign-in:
	// a response carried to another browser (login CSRF) is refused.
	browser string
	created time.Time
}

// appSession is a signed-in browser: the tokens the app holds for it.
type appSession struct {
	created time.Time
	csrf    string // the sign-out form's token

	// sid is the broker's session (the ID token's sid claim): a
	// back-channel logout names it.
	sid string

	mu      sync.Mutex // serialises refreshes: the broker rotates refresh tokens
	subject string
	idToken string
	token   *oauth2.Token
}

const (
	pendingLifetime = 10 * time.Minute
	sessionLifetime = 12 * time.Hour
	// tokenMargin: a token with less left than this is refreshed before
	// it is used (shown, sent to the API or as id_token_hint).
	tokenMargin = 30 * time.Second
)

// NewApp returns the demo app for the broker at issuer. baseURL is where
// the app itself is served; its callback is baseURL + "/callback" and its
// post-logout redirect URI baseURL + "/". The app makes its DPoP key, an
// ECDSA P-256 key that lives as long as the app.
func NewApp(issuer, clientID, baseURL, apiURL string, client *http.Client, log *slog.Logger) *App {
	sum := sha256.Sum256([]byte(baseURL))
	a := &App{
		issuer: issuer, clientID: clientID, baseURL: baseURL, apiURL: apiURL, client: client, log: log,
		tokenClient: client,
		cookie:      "demo_app_" + hex.EncodeToString(sum[:3]),
		pending:     make(map[string]pendingLogin),
		sessions:    make(map[string]*appSession),
		logouts:     make(map[string]time.Time),
		ended:       make(map[string]time.Time),
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err == nil {
		a.dpop, err = dpop.NewSigner(key)
	}
	if err != nil {
		log.Warn("demo app: no DPoP key: tokens will be bearer tokens", "err", err)
	}
	return a
}

// now is the app's clock.
func (a *App) now() time.Time { return time.Now().Add(time.Duration(a.skew.Load())) }

// refreshMargin is how close to its expiry a token is refreshed.
func (a *App) refreshMargin() time.Duration {
	if m := a.margin.Load(); m != 0 {
		return time.Duration(m)
	}
	return tokenMargin
}

func (a *App) init(ctx context.Context) error {
	a.once.Do(func() {
		ctx = oidc.ClientContext(ctx, a.client)
		a.provider, a.initErr = oidc.NewProvider(ctx, a.issuer)
		if a.initErr != nil {
			return
		}
		var meta struct {
			EndSession string `json:"end_session_endpoint"`
			Revocation string `json:"revocation_endpoint"`
		}
		if a.initErr = a.provider.Claims(&meta); a.initErr != nil {
			return
		}
		a.endSession, a.revocation = meta.EndSession, meta.Revocation
		if a.dpop != nil {
			c := *a.client
			base := c.Transport
			if base == nil {
				base = http.DefaultTransport
			}
			c.Transport = &dpopTransport{base: base, signer: a.dpop, tokenURL: a.provider.Endpoint().TokenURL}
			a.tokenClient = &c
		}
		a.oauth = &oauth2.Config{
			ClientID:    a.clientID,
			Endpoint:    a.provider.Endpoint(),
			RedirectURL: a.baseURL + "/callback",
			Scopes:      []string{oidc.ScopeOpenID, "profile", "email", "groups", oidc.ScopeOfflineAccess},
		}
		a.verifier = a.provider.Verifier(&oidc.Config{ClientID: a.clientID, Now: a.now})
	})
	return a.initErr
}

// Handler serves the app: / (home: the tokens when signed in), /login,
// /callback, /logout, /session (is this browser still signed in?),
// /session.js (the signed-in page's script that asks) and, with a logout
// token verifier, /backchannel-logout.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.home)
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("GET /callback", a.callback)
	mux.HandleFunc("POST /logout", a.logout)
	mux.HandleFunc("GET /session", a.sessionStatus)
	mux.HandleFunc("GET /session.js", serveSessionScript)
	if a.logoutTokens != nil {
		mux.Handle("/backchannel-logout", a.logoutTokens.BackchannelLogoutHandler(a.endSessions))
	}
	return mux
}

// home shows the tokens of a signed-in browser, else the sign-in button
// (with a note when the broker has just sent the browser back from
// signing out).
func (a *App) home(w http.ResponseWriter, r *http.Request) {
	if s := a.session(r); s != nil {
		a.showTokens(w, r, s)
		return
	}
	data := map[string]any{"Issuer": a.issuer}
	if id := a.cookieValue(r); id != "" {
		a.mu.Lock()
		_, ended := a.ended[id]
		delete(a.ended, id)
		a.mu.Unlock()
		data["Ended"] = ended
	}
	if st := r.URL.Query().Get("state"); st != "" {
		a.mu.Lock()
		_, ok := a.logouts[st]
		delete(a.logouts, st)
		a.mu.Unlock()
		data["SignedOut"] = ok
	}
	render(w, http.StatusOK, homePage, data)
}

func (a *App) login(w http.ResponseWriter, r *http.Request) {
	if err := a.init(r.Context()); err != nil {
		a.fail(w, "The broker's discovery document could not be read", err)
		return
	}
	browser := a.browserID(w, r)
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	a.mu.Lock()
	a.expire()
	a.pending[state] = pendingLogin{verifier: verifier, nonce: nonce, browser: browser, created: a.now()}
	a.mu.Unlock()
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if c := r.URL.Query().Get("connector_id"); c != "" {
		opts = append(opts, oauth2.SetAuthURLParam("connector_id", c))
	}
	http.Redirect(w, r, a.oauth.AuthCodeURL(state, opts...), http.StatusFound)
}

func (a *App) callback(w http.ResponseWriter, r *http.Request) {
	if err := a.init(r.Context()); err != nil {
		a.fail(w, "The broker's discovery document could not be read", err)
		return
	}
	q := r.URL.Query()
	a.mu.Lock()
	p, ok := a.pending[q.Get("state")]
	delete(a.pending, q.Get("state"))
	a.mu.Unlock()
	if !ok || p.browser == "" || p.browser != a.cookieValue(r) {
		a.fail(w, "This answer does not belong to a sign-in this browser started (unknown or reused state): start the sign-in again", nil)
		return
	}
	if q.Get("iss") != a.issuer {
		a.fail(w, "The authorization response came from an unexpected issuer", fmt.Errorf("iss %q", q.Get("iss")))
		return
	}
	if e := q.Get("error"); e != "" {
		a.refused(w, e, q.Get("error_description"))
		return
	}
	ctx := oidc.ClientContext(r.Context(), a.tokenClient)
	tok, err := a.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		a.fail(w, "The code could not be exchanged for tokens", err)
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := a.verifier.Verify(ctx, rawID)
	if err != nil {
		a.fail(w, "The ID token did not verify", err)
		return
	}
	if idt.Nonce != p.nonce {
		a.fail(w, "The ID token's nonce does not match", nil)
		return
	}
	// A new cookie value for the signed-in browser: a value set before the
	// sign-in (perhaps planted by another site on this host) never becomes
	// a session.
	id := randomString()
	a.mu.Lock()
	a.expire()
	old := a.sessions[p.browser]
	delete(a.sessions, p.browser)
	var sid struct {
		SID string `json:"sid"`
	}
	_ = idt.Claims(&sid) // "" when the broker sent none: only a logout naming the subject ends it
	a.sessions[id] = &appSession{created: a.now(), csrf: randomString(), sid: sid.SID, subject: idt.Subject, idToken: rawID, token: tok}
	a.mu.Unlock()
	a.setCookie(w, id, sessionLifetime)
	if old != nil {
		// Signed in again: the tokens of the session this one replaces
		// are of no more use.
		old.mu.Lock()
		a.revoke(r.Context(), old.token.RefreshToken)
		old.mu.Unlock()
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// showTokens renders the signed-in home page: the decoded tokens, the raw
// access token with a curl line for the demo API, and the API's answer.
func (a *App) showTokens(w http.ResponseWriter, r *http.Request, s *appSession) {
	if err := a.init(r.Context()); err != nil {
		a.fail(w, "The broker's discovery document could not be read", err)
		return
	}
	subject, rawID, tok, refreshErr := a.fresh(r.Context(), s)
	if refreshErr != nil {
		a.log.Warn("demo app: refresh", "err", refreshErr)
	}
	bound := isDPoP(tok.TokenType) && a.dpop != nil
	api := a.callAPIWith(r.Context(), tok.AccessToken, bound)
	var stolen apiCall
	if bound {
		stolen = a.callAPIWith(r.Context(), tok.AccessToken, false)
	}
	appJKT := ""
	if a.dpop != nil {
		appJKT = a.dpop.Thumbprint()
	}
	whoami := a.apiURL + "/whoami"
	render(w, http.StatusOK, tokensPage, map[string]any{
		"Issuer":         a.issuer,
		"Subject":        subject,
		"IDToken":        decodeJWT(rawID),
		"AccessToken":    decodeJWT(tok.AccessToken),
		"RawAccessToken": tok.AccessToken,
		"AccessExpiry":   tok.Expiry.Format("15:04:05 MST"),
		"Curl":           a.curlLine(tok.AccessToken, tok.TokenType),
		"HasRefresh":     tok.RefreshToken != "",
		"RefreshFailed":  refreshErr != nil,
		"APIStatus":      api.Status,
		"APIBody":        api.Body,
		"TokenType":      tok.TokenType,
		"HasDPoPKey":     a.dpop != nil,
		"Bound":          bound,
		"CnfJKT":         jwtCnfJKT(tok.AccessToken),
		"AppJKT":         appJKT,
		"Stolen":         stolen,
		"APIURL":         whoami,
		"CSRF":           s.csrf,
	})
}

// fresh returns the session's tokens, refreshed first when the access token
// or the ID token is about to expire and there is a refresh token. On a
// failed refresh it returns the tokens as they were, and the error.
func (a *App) fresh(ctx context.Context, s *appSession) (subject, idToken string, tok *oauth2.Token, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, margin := a.now(), a.refreshMargin()
	if s.token.RefreshToken == "" || (s.token.Expiry.Sub(now) > margin && jwtExpiry(s.idToken).Sub(now) > margin) {
		return s.subject, s.idToken, s.token, nil
	}
	ctx = oidc.ClientContext(ctx, a.tokenClient)
	next, err := a.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: s.token.RefreshToken}).Token()
	if err != nil {
		return s.subject, s.idToken, s.token, err
	}
	rawID, _ := next.Extra("id_token").(string)
	idt, err := a.verifier.Verify(ctx, rawID)
	switch {
	case err != nil:
		err = fmt.Errorf("the refreshed ID token did not verify: %w", err)
	case idt.Subject != s.subject:
		err = fmt.Errorf("the refreshed ID token is of %q, not %q", idt.Subject, s.subject)
	}
	if err != nil {
		// The refresh token was rotated: keep the new one, and the
		// access token, which the API checks on its own.
		s.token = next
		return s.subject, s.idToken, s.token, err
	}
	s.token, s.idToken = next, rawID
	return s.subject, s.idToken, s.token, nil
}

// logout signs the browser out: the app forgets its session at once, then
// sends the browser to the broker's end_session_endpoint (RP-initiated
// logout) with the ID token as id_token_hint, the registered
// post_logout_redirect_uri (the home page) and a state. With a valid hint
// of the browser's own broker session the broker ends it at once and sends
// the browser back here; an ID token close to expiry is refreshed first.
// Without a valid hint (no refresh token, or the refresh failed) the broker
// asks for confirmation and then shows its own "signed out" page: it may
// only redirect with a valid hint.
func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		a.failSignOut(w, http.StatusBadRequest, "The sign-out request is malformed", err)
		return
	}
	id := a.cookieValue(r)
	a.mu.Lock()
	s := a.sessions[id]
	if s != nil && r.PostForm.Get("csrf") != s.csrf {
		a.mu.Unlock()
		a.failSignOut(w, http.StatusForbidden, "The sign-out form has expired or was not made by this app: you are still signed in.", nil)
		return
	}
	delete(a.sessions, id)
	a.mu.Unlock()
	a.setCookie(w, "", -1)
	if s == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if err := a.init(r.Context()); err != nil || a.endSession == "" {
		// Nothing to sign out of at the broker, or no way to: the app's
		// session is gone, which is all the app can do.
		a.log.Warn("demo app: no end_session_endpoint: signed out of the app only", "err", err)
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	_, hint, tok, err := a.fresh(r.Context(), s)
	if err != nil {
		a.log.Warn("demo app: refresh for id_token_hint", "err", err)
	}
	a.revoke(r.Context(), tok.RefreshToken)

	q := url.Values{"client_id": {a.clientID}}
	if hint != "" && jwtExpiry(hint).After(a.now()) {
		state := randomString()
		a.mu.Lock()
		a.expire()
		a.logouts[state] = a.now()
		a.mu.Unlock()
		q.Set("id_token_hint", hint)
		q.Set("post_logout_redirect_uri", a.baseURL+"/")
		q.Set("state", state)
	}
	target, err := url.Parse(a.endSession)
	if err != nil {
		a.failSignOut(w, http.StatusBadGateway, "The broker's end_session_endpoint is not a URL: you are signed out of the app only", err)
		return
	}
	target.RawQuery = q.Encode()
	http.Redirect(w, r, target.String(), http.StatusSeeOther)
}

// revoke revokes a refresh token at the broker (RFC 7009), so that it
// does not outlive the sign-out. It is best effort: a failure is logged.
func (a *App) revoke(ctx context.Context, refreshToken string) {
	if refreshToken == "" || a.revocation == "" {
		return
	}
	form := url.Values{"token": {refreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {a.clientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.revocation, strings.NewReader(form.Encode()))
	if err != nil {
		a.log.Warn("demo app: revoke", "err", err)
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := a.client.Do(req)
	if err != nil {
		a.log.Warn("demo app: revoke", "err", err)
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		a.log.Warn("demo app: revoke", "status", resp.Status)
	}
}

// session returns the browser's signed-in session, or nil.
func (a *App) session(r *http.Request) *appSession {
	id := a.cookieValue(r)
	if id == "" {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sessions[id]
	if s != nil && a.now().Sub(s.created) > sessionLifetime {
		delete(a.sessions, id)
		return nil
	}
	return s
}

// browserID returns the browser's cookie value, setting a new one when it
// has none.
func (a *App) browserID(w http.ResponseWriter, r *http.Request) string {
	if v := a.cookieValue(r); v != "" {
		return v
	}
	v := randomString()
	a.setCookie(w, v, sessionLifetime)
	return v
}

func (a *App) cookieValue(r *http.Request) string {
	c, err := r.Cookie(a.cookie)
	if err != nil || len(c.Value) > 64 {
		return ""
	}
	return c.Value
}

// setCookie sets the app's cookie; a negative maxAge clears it.
func (a *App) setCookie(w http.ResponseWriter, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: a.cookie, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(a.baseURL, "https:")}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge.Seconds())
	}
	http.SetCookie(w, c)
}

// expire drops pending sign-ins, sign-outs and sessions past their time.
// a.mu is held.
func (a *App) expire() {
	now := a.now()
	for k, p := range a.pending {
		if now.Sub(p.created) > pendingLifetime {
			delete(a.pending, k)
		}
	}
	for k, t := range a.logouts {
		if now.Sub(t) > pendingLifetime {
			delete(a.logouts, k)
		}
	}
	for k, s := range a.sessions {
		if now.Sub(s.created) > sessionLifetime {
			delete(a.sessions, k)
		}
	}
	for k, t := range a.ended {
		if now.Sub(t) > sessionLifetime {
			delete(a.ended, k)
		}
	}
}

// endSessions ends the app's sessions that a verified logout token names
// (OpenID Connect Back-Channel Logout 1.0 §2.7): the one of the broker
// session sid, or, when the token names only a subject, every session of
// that subject. The tokens they held are forgotten: the broker has revoked
// them already. A token that names no session of the app is not an error.
func (a *App) endSessions(_ context.Context, c *verify.LogoutClaims) error {
	a.mu.Lock()
	a.expire()
	n := 0
	for id, s := range a.sessions {
		if (c.SessionID == "" || s.sid == c.SessionID) && (c.Subject == "" || s.subject == c.Subject) {
			delete(a.sessions, id)
			a.ended[id] = a.now()
			n++
		}
	}
	a.mu.Unlock()
	a.log.Info("demo app: back-channel logout", "sub", c.Subject, "sid", c.SessionID, "sessions_ended", n)
	return nil
}

// sessionStatus answers GET /session: whether the browser is still signed
// in ({"active":true}), for the signed-in page's script.
func (a *App) sessionStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]bool{"active": a.session(r) != nil})
}

// jwtExpiry reads a JWT's exp claim without verifying anything (the zero
// time when there is none).
func jwtExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var c struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil {
		return time.Time{}
	}
	n, err := c.Exp.Int64()
	if err != nil {
		return time.Time{}
	}
	return time.Unix(n, 0)
}

func randomString() string {
	sum := sha256.Sum256([]byte(oauth2.GenerateVerifier()))
	return base64.RawURLEncoding.EncodeToString(sum[:18])
}
