package authflow

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// authorizeParams may each appear once.
var authorizeParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "prompt", "max_age", "login_hint", "connector_id"}

// Authorize is the authorization endpoint (OpenID Connect Core §3.1.2).
// Until the client and redirect_uri are known to be valid every error is an
// error page; after that, errors go back to the client with `iss`. A live
// SSO session answers at once; otherwise the auth request is stored and the
// browser goes on to the chooser, or straight to the one connector it may
// use.
func (f *Flow) Authorize(ctx context.Context, rt *runtime.Runtime, form url.Values, b Browser) (Result, error) {
	for _, k := range authorizeParams {
		if len(form[k]) > 1 {
			return Result{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-in request repeats the parameter "+k+".")
		}
	}
	cl, ok := rt.Client(form.Get("client_id"))
	if !ok {
		f.audit.Event("authorize_rejected", "reason", "unknown client")
		return Result{}, oauth.BadRequestPage(oauth.ErrInvalidClient, "The application that sent you here is not registered with this sign-in service.")
	}
	redirectURI := form.Get("redirect_uri")
	if redirectURI == "" || !cl.MatchRedirect(redirectURI) {
		f.audit.Event("authorize_rejected", "client_id", cl.ID, "reason", "redirect_uri not registered")
		return Result{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The application asked to return you to an address it has not registered.")
	}
	state := form.Get("state")
	fail := func(code, desc string) error {
		return &oauth.RedirectError{RedirectURI: redirectURI, State: state, Code: code, Description: desc}
	}
	if form.Get("request") != "" {
		return Result{}, fail(oauth.ErrRequestNotSupported, "request objects are not supported")
	}
	if form.Get("request_uri") != "" {
		return Result{}, fail(oauth.ErrRequestURINotSupported, "request_uri is not supported")
	}
	if form.Get("response_type") != "code" {
		return Result{}, fail(oauth.ErrUnsupportedResponseType, "only response_type=code is supported")
	}
	if !cl.AllowsGrant(config.GrantAuthorizationCode) {
		return Result{}, fail(oauth.ErrUnauthorizedClient, "the client may not use the authorization code flow")
	}
	if rm := form.Get("response_mode"); rm != "" && rm != "query" {
		return Result{}, fail(oauth.ErrInvalidRequest, "only response_mode=query is supported")
	}
	scopes := strings.Fields(form.Get("scope"))
	if !slices.Contains(scopes, "openid") {
		return Result{}, fail(oauth.ErrInvalidScope, "the openid scope is required")
	}
	for _, sc := range scopes {
		if !cl.AllowsScope(sc) {
			return Result{}, fail(oauth.ErrInvalidScope, "scope "+strconv.Quote(sc)+" is not allowed for this client")
		}
	}
	scopes = oauth.Dedupe(scopes)

	challenge := form.Get("code_challenge")
	method := form.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		return Result{}, fail(oauth.ErrInvalidRequest, "code_challenge_method without code_challenge")
	case challenge == "" && cl.Public:
		return Result{}, fail(oauth.ErrInvalidRequest, "PKCE is required: send code_challenge with code_challenge_method=S256")
	case challenge != "" && method != oauth.PKCEMethodS256:
		return Result{}, fail(oauth.ErrInvalidRequest, "code_challenge_method must be S256")
	case challenge != "" && !oauth.ValidChallenge(challenge):
		return Result{}, fail(oauth.ErrInvalidRequest, "code_challenge is not a valid S256 challenge")
	}

	prompt := strings.Fields(form.Get("prompt"))
	if slices.Contains(prompt, "none") && len(prompt) > 1 {
		return Result{}, fail(oauth.ErrInvalidRequest, "prompt=none cannot be combined with other values")
	}
	maxAge := -1
	if v := form.Get("max_age"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return Result{}, fail(oauth.ErrInvalidRequest, "max_age must be a non-negative integer")
		}
		maxAge = n
	}
	nonce := form.Get("nonce")
	if len(nonce) > 512 || len(state) > 2048 {
		return Result{}, fail(oauth.ErrInvalidRequest, "state or nonce is too long")
	}
	loginHint := form.Get("login_hint")

	var forced *runtime.Connector
	if id := form.Get("connector_id"); id != "" {
		conn, ok := rt.Connector(id)
		if !ok || !cl.AllowsConnector(id) {
			return Result{}, fail(oauth.ErrInvalidRequest, "unknown or disallowed connector_id")
		}
		forced = conn
	} else if loginHint != "" {
		forced = rt.RouteByHint(cl, loginHint)
	}

	req := storage.AuthRequest{
		ID:                  oauth.RandomToken(24),
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
		Expiry:              f.now().Add(rt.Tokens.AuthRequest),
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
				return f.codeFromSession(ctx, rt, cl, req, sess)
			}
		}
	}
	if slices.Contains(prompt, "none") {
		return Result{}, fail(oauth.ErrLoginRequired, "the user is not signed in")
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
