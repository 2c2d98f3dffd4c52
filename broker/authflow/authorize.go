package authflow

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// authorizeParams may each appear once.
var authorizeParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "prompt", "max_age", "login_hint", "connector_id", "dpop_jkt"}

// Bounds on what /authorize accepts. Every value stored with a pending
// auth request is bounded by one of them (or is one of a few known
// values), so a stored request is a few KiB at most.
const (
	// maxClientIDLen and maxRedirectURILen are checked before the client
	// is trusted: over them the person gets an error page.
	maxClientIDLen    = 255
	maxRedirectURILen = 2048
	// maxStateLen: a longer state, or one with a character outside VSCHAR
	// (%x20-7E, RFC 6749 Appendix A), gets an error page too, never a
	// redirect that carries it.
	maxStateLen = 2048
	// Over these the client gets invalid_request (invalid_scope for scope)
	// back at its redirect_uri.
	maxNonceLen       = 512
	maxLoginHintLen   = 256
	maxPromptLen      = 128
	maxAgeDigits      = 9 // up to 999999999 s, about 31 years
	maxScopeLen       = 1024
	maxScopes         = 32
	maxConnectorIDLen = 128
)

// knownPrompts are the prompt values of OpenID Connect Core §3.1.2.1.
// Other values are ignored and not stored: OAuth ignores what it does not
// understand (RFC 6749 §3.1), and none of them may weaken a sign-in.
var knownPrompts = []string{"none", "login", "consent", "select_account"}

// validState reports whether state may be sent back to the client: at most
// maxStateLen characters, each VSCHAR.
func validState(state string) bool {
	if len(state) > maxStateLen {
		return false
	}
	for i := 0; i < len(state); i++ {
		if state[i] < 0x20 || state[i] > 0x7e {
			return false
		}
	}
	return true
}

// validText reports whether s is UTF-8 without control characters.
func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// parseMaxAge parses max_age: ASCII digits only, at most maxAgeDigits.
func parseMaxAge(v string) (int, bool) {
	if v == "" || len(v) > maxAgeDigits {
		return 0, false
	}
	n := 0
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
		n = n*10 + int(v[i]-'0')
	}
	return n, true
}

// Authorize is the authorization endpoint (OpenID Connect Core §3.1.2).
// Until the client and redirect_uri are known to be valid every error is an
// error page; after that, errors go back to the client with `iss`. A live
// SSO session answers at once; otherwise the auth request is stored and the
// browser goes on to the chooser, or straight to the one connector it may
// use.
func (f *Flow) Authorize(ctx context.Context, rt *runtime.Runtime, form url.Values, b Browser) (Result, error) {
	v, err := f.validateAuthorize(rt, form)
	if err != nil {
		return Result{}, err
	}
	return f.authorizeValid(ctx, rt, v, b)
}

// checkedAuthorize is an authorization request that passed
// validateAuthorize.
type checkedAuthorize struct {
	client *runtime.Client
	// req is the auth request to store, without its ID, expiry and
	// browser binding.
	req    storage.AuthRequest
	prompt []string
	forced *runtime.Connector
}

// validateAuthorize checks an authorization request as the authorization
// endpoint does, storing nothing: the client and redirect_uri first (an
// error page until both are known), then everything else (an error for
// the client's redirect_uri). The pushed authorization request endpoint
// checks pushed requests with it too.
func (f *Flow) validateAuthorize(rt *runtime.Runtime, form url.Values) (checkedAuthorize, error) {
	for _, k := range authorizeParams {
		if len(form[k]) > 1 {
			return checkedAuthorize{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-in request repeats the parameter "+k+".")
		}
	}
	clientID := form.Get("client_id")
	cl, ok := rt.Client(clientID)
	if !ok || len(clientID) > maxClientIDLen {
		f.audit.Event("authorize_rejected", "reason", "unknown client")
		return checkedAuthorize{}, oauth.BadRequestPage(oauth.ErrInvalidClient, "The application that sent you here is not registered with this sign-in service.")
	}
	redirectURI := form.Get("redirect_uri")
	if redirectURI == "" || len(redirectURI) > maxRedirectURILen || !cl.MatchRedirect(redirectURI) {
		f.audit.Event("authorize_rejected", "client_id", cl.ID, "reason", "redirect_uri not registered")
		return checkedAuthorize{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The application asked to return you to an address it has not registered.")
	}
	// The state goes back in every redirect from here on: one that is too
	// long or not VSCHAR is refused with a page before any redirect error.
	state := form.Get("state")
	if !validState(state) {
		f.audit.Event("authorize_rejected", "client_id", cl.ID, "reason", "state too long or not printable ASCII")
		return checkedAuthorize{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The application sent a state value that is too long or contains characters that are not allowed.")
	}
	fail := func(code, desc string) error {
		return &oauth.RedirectError{RedirectURI: redirectURI, State: state, Code: code, Description: desc}
	}
	if form.Get("request") != "" {
		return checkedAuthorize{}, fail(oauth.ErrRequestNotSupported, "request objects are not supported")
	}
	if form.Get("request_uri") != "" {
		return checkedAuthorize{}, fail(oauth.ErrRequestURINotSupported, "request_uri is not supported")
	}
	if form.Get("response_type") != "code" {
		return checkedAuthorize{}, fail(oauth.ErrUnsupportedResponseType, "only response_type=code is supported")
	}
	if !cl.AllowsGrant(config.GrantAuthorizationCode) {
		return checkedAuthorize{}, fail(oauth.ErrUnauthorizedClient, "the client may not use the authorization code flow")
	}
	if rm := form.Get("response_mode"); rm != "" && rm != "query" {
		return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "only response_mode=query is supported")
	}
	rawScope := form.Get("scope")
	if len(rawScope) > maxScopeLen {
		return checkedAuthorize{}, fail(oauth.ErrInvalidScope, "scope is too long")
	}
	scopes := strings.Fields(rawScope)
	if len(scopes) > maxScopes {
		return checkedAuthorize{}, fail(oauth.ErrInvalidScope, "scope has too many values")
	}
	if !slices.Contains(scopes, "openid") {
		return checkedAuthorize{}, fail(oauth.ErrInvalidScope, "the openid scope is required")
	}
	for _, sc := range scopes {
		if !cl.AllowsScope(sc) {
			return checkedAuthorize{}, fail(oauth.ErrInvalidScope, "scope "+strconv.Quote(sc)+" is not allowed for this client")
		}
	}
	scopes = oauth.Dedupe(scopes)

	challenge := form.Get("code_challenge")
	method := form.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "code_challenge_method without code_challenge")
	case challenge == "" && cl.Public:
		return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "PKCE is required: send code_challenge with code_challenge_method=S256")
	case challenge != "" && method != oauth.PKCEMethodS256:
		return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "code_challenge_method must be S256")
	case challenge != "" && !oauth.ValidChallenge(challenge):
		return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "code_challenge is not a valid S256 challenge")
	}

	rawPrompt := form.Get("prompt")
	if len(rawPrompt) > maxPromptLen {
		return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "prompt is too long")
	}
	promptValues := strings.Fields(rawPrompt)
	if slices.Contains(promptValues, "none") && len(promptValues) > 1 {
		return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "prompt=none cannot be combined with other values")
	}
	// Only known values are kept; unknown ones are ignored.
	var prompt []string
	for _, p := range promptValues {
		if slices.Contains(knownPrompts, p) && !slices.Contains(prompt, p) {
			prompt = append(prompt, p)
		}
	}
	maxAge := -1
	if v := form.Get("max_age"); v != "" {
		n, ok := parseMaxAge(v)
		if !ok {
			return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "max_age must be a non-negative integer of at most 9 digits")
		}
		maxAge = n
	}
	nonce := form.Get("nonce")
	if len(nonce) > maxNonceLen || !utf8.ValidString(nonce) {
		return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "nonce is too long or not UTF-8")
	}
	loginHint := form.Get("login_hint")
	if len(loginHint) > maxLoginHintLen || !validText(loginHint) {
		return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "login_hint is too long or contains control characters")
	}

	// dpop_jkt (RFC 9449 §10) binds the code to a DPoP key: the token
	// endpoint redeems it only with a proof of that key. It is a SHA-256
	// JWK thumbprint, base64url without padding.
	jkt := form.Get("dpop_jkt")
	if jkt != "" && !isThumbprint(jkt) {
		return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "dpop_jkt is not a base64url SHA-256 JWK thumbprint")
	}

	var forced *runtime.Connector
	if id := form.Get("connector_id"); id != "" {
		conn, ok := rt.Connector(id)
		if !ok || len(id) > maxConnectorIDLen || !cl.AllowsConnector(id) {
			return checkedAuthorize{}, fail(oauth.ErrInvalidRequest, "unknown or disallowed connector_id")
		}
		forced = conn
	} else if loginHint != "" {
		forced = rt.RouteByHint(cl, loginHint)
	}

	req := storage.AuthRequest{
		ClientID:            cl.ID,
		RedirectURI:         redirectURI,
		Scopes:              scopes,
		State:               state,
		Nonce:               nonce,
		CodeChallenge:       challenge,
		CodeChallengeMethod: method,
		Prompt:              strings.Join(prompt, " "),
		MaxAge:              maxAge,
		LoginHint:           loginHint,
		DPoPJKT:             jkt,
	}
	return checkedAuthorize{client: cl, req: req, prompt: prompt, forced: forced}, nil
}

// authorizeValid answers a validated authorization request: from the SSO
// session, or by storing it and sending the browser on to sign in.
func (f *Flow) authorizeValid(ctx context.Context, rt *runtime.Runtime, v checkedAuthorize, b Browser) (Result, error) {
	cl, req, prompt, maxAge, forced := v.client, v.req, v.prompt, v.req.MaxAge, v.forced
	req.ID = oauth.RandomToken(24)
	req.Expiry = f.now().Add(rt.Tokens.AuthRequest)
	fail := func(code, desc string) error {
		return &oauth.RedirectError{RedirectURI: req.RedirectURI, State: req.State, Code: code, Description: desc}
	}

	// Single sign-on: a live session answers without asking again, unless
	// the client forces a fresh login or the session is too old.
	if !slices.Contains(prompt, "login") {
		sess, ok, err := f.currentSession(ctx, b)
		if err != nil {
			return Result{}, err
		}
		fresh := ok && (maxAge < 0 || f.now().Sub(sess.AuthTime) <= time.Duration(maxAge)*time.Second)
		if fresh && cl.AllowsConnector(sess.ConnectorID) && (forced == nil || forced.ID == sess.ConnectorID) {
			if _, live := rt.Connector(sess.ConnectorID); live {
				// The session signs into cl too from now on: its end tells
				// cl (single logout). A session ended meanwhile (a logout
				// elsewhere) signs in afresh.
				err := f.store.TouchSession(ctx, sess.ID, cl.ID, f.now())
				if err == nil {
					return f.codeFromSession(ctx, rt, cl, req, sess)
				}
				if !isNotFound(err) {
					return Result{}, err
				}
			}
		}
	}
	if slices.Contains(prompt, "none") {
		return Result{}, fail(oauth.ErrLoginRequired, "the user is not signed in")
	}

	// Each client address may keep only so many sign-ins pending. Callers
	// outside HTTP that name no address are not limited; HandleAuthorize
	// always names one.
	if b.RemoteIP != "" && !f.pending.take(b.RemoteIP) {
		f.audit.Event("authorize_throttled", "client_id", cl.ID, "remote", b.RemoteIP)
		return Result{}, errTooManyPending
	}
	var res Result
	req.BrowserBinding = storage.Hash(b.ensureID(&res))
	if forced != nil {
		req.ConnectorID = forced.ID
	}
	if err := f.store.CreateAuthRequest(ctx, req); err != nil {
		return Result{}, err
	}
	f.metrics.Authorize(cl.ID)
	res.Redirect = f.chooserURL(req.ID)
	if forced != nil {
		res.Redirect = f.loginURL(forced.ID, req.ID)
	} else if avail := rt.ConnectorsFor(cl); len(avail) == 1 {
		res.Redirect = f.loginURL(avail[0].ID, req.ID)
	}
	return res, nil
}

func (f *Flow) chooserURL(reqID string) string {
	return f.login + "?req=" + url.QueryEscape(reqID)
}

func (f *Flow) loginURL(connID, reqID string) string {
	return f.login + "/" + url.PathEscape(connID) + "?req=" + url.QueryEscape(reqID)
}

// currentSession returns the live SSO session of this browser, if any. A
// storage failure is an error, never "no session".
func (f *Flow) currentSession(ctx context.Context, b Browser) (storage.Session, bool, error) {
	if b.SessionID == "" {
		return storage.Session{}, false, nil
	}
	sess, err := f.store.GetSession(ctx, b.SessionID)
	if err != nil {
		if isNotFound(err) {
			return storage.Session{}, false, nil
		}
		return storage.Session{}, false, err
	}
	if !sess.Expiry.After(f.now()) {
		return storage.Session{}, false, nil
	}
	return sess, true, nil
}

// isThumbprint reports whether s is a base64url (unpadded) SHA-256 digest,
// the form of a JWK thumbprint (RFC 7638) in dpop_jkt.
func isThumbprint(s string) bool {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == sha256.Size
}
