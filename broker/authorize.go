package broker

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// pkceChallenge is the shape of an S256 code_challenge (RFC 7636 §4.2).
var pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// handleAuthorize is the authorization endpoint (OpenID Connect Core §3.1.2).
// Until the client and redirect_uri are known to be valid every error is an
// error page; after that, errors go back to the client with `iss`.
func (s *Server) handleAuthorize(c echo.Context) error {
	r := c.Request()
	if err := r.ParseForm(); err != nil {
		return badRequestPage(errInvalidRequest, "The sign-in request is malformed.")
	}
	form := r.Form
	if r.Method == http.MethodGet {
		form = r.URL.Query()
	}
	rt := s.rt.Load()
	for _, k := range []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "prompt", "max_age", "login_hint", "connector_id"} {
		if len(form[k]) > 1 {
			return badRequestPage(errInvalidRequest, "The sign-in request repeats the parameter "+k+".")
		}
	}
	clientID := form.Get("client_id")
	cl, ok := rt.clients[clientID]
	if !ok {
		s.auditEvent("authorize_rejected", "reason", "unknown client")
		return badRequestPage("invalid_client", "The application that sent you here is not registered with this sign-in service.")
	}
	redirectURI := form.Get("redirect_uri")
	if redirectURI == "" || !cl.matchRedirect(redirectURI) {
		s.auditEvent("authorize_rejected", "client_id", cl.ID, "reason", "redirect_uri not registered")
		return badRequestPage(errInvalidRequest, "The application asked to return you to an address it has not registered.")
	}
	state := form.Get("state")
	fail := func(code, desc string) error {
		return &redirectError{RedirectURI: redirectURI, State: state, Code: code, Description: desc}
	}
	if form.Get("request") != "" {
		return fail(errRequestNotSupported, "request objects are not supported")
	}
	if form.Get("request_uri") != "" {
		return fail(errRequestURINotSupported, "request_uri is not supported")
	}
	if rtype := form.Get("response_type"); rtype != "code" {
		return fail(errUnsupportedResponseType, "only response_type=code is supported")
	}
	if !cl.grants["authorization_code"] {
		return fail(errUnauthorizedClient, "the client may not use the authorization code flow")
	}
	if rm := form.Get("response_mode"); rm != "" && rm != "query" {
		return fail(errInvalidRequest, "only response_mode=query is supported")
	}
	scopes := strings.Fields(form.Get("scope"))
	if !slices.Contains(scopes, "openid") {
		return fail(errInvalidScope, "the openid scope is required")
	}
	for _, sc := range scopes {
		if !cl.scopes[sc] {
			return fail(errInvalidScope, "scope "+strconv.Quote(sc)+" is not allowed for this client")
		}
	}
	scopes = dedupe(scopes)

	challenge := form.Get("code_challenge")
	method := form.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		return fail(errInvalidRequest, "code_challenge_method without code_challenge")
	case challenge == "" && cl.Public:
		return fail(errInvalidRequest, "PKCE is required: send code_challenge with code_challenge_method=S256")
	case challenge != "" && method != "S256":
		return fail(errInvalidRequest, "code_challenge_method must be S256")
	case challenge != "" && !pkceChallenge.MatchString(challenge):
		return fail(errInvalidRequest, "code_challenge is not a valid S256 challenge")
	}

	prompt := strings.Fields(form.Get("prompt"))
	if slices.Contains(prompt, "none") && len(prompt) > 1 {
		return fail(errInvalidRequest, "prompt=none cannot be combined with other values")
	}
	maxAge := -1
	if v := form.Get("max_age"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fail(errInvalidRequest, "max_age must be a non-negative integer")
		}
		maxAge = n
	}
	nonce := form.Get("nonce")
	if len(nonce) > 512 || len(state) > 2048 {
		return fail(errInvalidRequest, "state or nonce is too long")
	}
	loginHint := form.Get("login_hint")

	var forced *connector
	if id := form.Get("connector_id"); id != "" {
		conn, ok := rt.connectors[id]
		if !ok || !cl.allowsConnector(id) {
			return fail(errInvalidRequest, "unknown or disallowed connector_id")
		}
		forced = conn
	} else if loginHint != "" {
		forced = rt.routeByHint(cl, loginHint)
	}

	req := storage.AuthRequest{
		ID:                  randomToken(24),
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
		Expiry:              s.now().Add(rt.tokens.AuthRequest),
	}

	// Single sign-on: a live session answers without asking again, unless
	// the client forces a fresh login or the session is too old.
	if !slices.Contains(prompt, "login") {
		sess, ok, err := s.currentSession(c)
		if err != nil {
			return err
		}
		fresh := ok && (maxAge < 0 || s.now().Sub(sess.AuthTime) <= secondsDur(maxAge))
		if fresh && cl.allowsConnector(sess.ConnectorID) && (forced == nil || forced.id == sess.ConnectorID) {
			if _, live := rt.connectors[sess.ConnectorID]; live {
				return s.issueCodeFromSession(c, rt, cl, req, sess)
			}
		}
	}
	if slices.Contains(prompt, "none") {
		return fail(errLoginRequired, "the user is not signed in")
	}

	req.BrowserBinding = storage.Hash(s.sessions.browserID(c))
	req.ConnectorState = nil
	if forced != nil {
		req.ConnectorID = forced.id
	}
	if err := s.store.CreateAuthRequest(c.Request().Context(), req); err != nil {
		return err
	}
	s.metrics.authorize(cl.ID)
	target := s.paths.login + "?req=" + url.QueryEscape(req.ID)
	if forced != nil {
		target = s.paths.login + "/" + url.PathEscape(forced.id) + "?req=" + url.QueryEscape(req.ID)
	} else if avail := rt.connectorsFor(cl); len(avail) == 1 {
		target = s.paths.login + "/" + url.PathEscape(avail[0].id) + "?req=" + url.QueryEscape(req.ID)
	}
	return c.Redirect(redirectStatus(c), target)
}

// redirectStatus is 303 after a POST (so the browser does not re-post) and
// 302 otherwise.
func redirectStatus(c echo.Context) int {
	if c.Request().Method == http.MethodPost {
		return http.StatusSeeOther
	}
	return http.StatusFound
}

func dedupe(xs []string) []string {
	seen := make(map[string]bool, len(xs))
	out := xs[:0:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
