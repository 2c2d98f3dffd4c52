package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/jwks"
)

// Single logout with the upstream (the connector is the relying party):
//
//   - RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0):
//     LogoutRequest sends the browser to the upstream's
//     end_session_endpoint with id_token_hint (the raw ID token of the
//     sign-in, kept in its connector data), post_logout_redirect_uri (the
//     broker's /logout/{connector}), state and client_id. The upstream
//     sends the browser back there with state; HandleLogout reports it as
//     Returned.
//   - Back-channel logout (OpenID Connect Back-Channel Logout 1.0): the
//     upstream POSTs a logout_token to the same URL; HandleLogout validates
//     it as §2.6 says and reports it as Ended. Replay (one jti once) is the
//     broker's to check with ReplayID and ReplayUntil.
//
// An end_session_endpoint that is not https (http only on a loopback host)
// does not fail the connector: it is ignored (LogoutRequest answers
// ok=false), logged at WARN when the connector opens and reported by
// Warnings.

// Compile-time check of the contract.
var _ connectors.LogoutConnector = (*Connector)(nil)

const (
	// backChannelLogoutEvent is the member of a logout token's events
	// claim that makes it one (Back-Channel Logout 1.0 §2.4).
	backChannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"
	// maxLogoutBody caps the body of a request to the logout URL.
	maxLogoutBody = 64 << 10
	// maxLogoutTokenLifetime is the furthest in the future a logout
	// token's exp may be. The broker remembers its jti until exp, so this
	// bounds that memory; the specification recommends a lifetime of about
	// two minutes.
	maxLogoutTokenLifetime = 24 * time.Hour
	// maxKeptIDToken is the largest upstream ID token kept in the connector
	// data for id_token_hint. A larger one (an Entra token with many groups,
	// say) is not kept: LogoutRequest then answers ok=false.
	maxKeptIDToken = 16 << 10
)

// CodeInvalidLogout is the Code of a refused request to the logout URL that
// is not a logout token failing a check (wrong method, content type, size,
// missing or repeated parameters). A logout token that fails a check is
// CodeInvalidToken (CodeTokenExpired when past its exp).
const CodeInvalidLogout = "invalid_logout_request"

// setupLogout reads end_session_endpoint from the discovery document. One
// that is not https (http only for loopback) is ignored with a warning.
func (c *Connector) setupLogout() error {
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := c.provider.Claims(&meta); err != nil {
		return fmt.Errorf("oidc: discovery document: %w", err)
	}
	if meta.EndSession == "" {
		return nil
	}
	if err := checkURL(meta.EndSession); err != nil {
		c.endSessionWarning = fmt.Sprintf("the upstream's end_session_endpoint %q is ignored (it %v): the broker does not sign people out upstream", meta.EndSession, err)
		c.logger.Warn("oidc: end_session_endpoint ignored", "connector", c.id, "endpoint", meta.EndSession, "reason", err.Error())
		return nil
	}
	c.endSession = meta.EndSession
	return nil
}

// keepIDToken keeps the raw ID token of a sign-in as id's LogoutData, for
// id_token_hint, when the upstream has an end_session_endpoint the
// connector uses (and the token is not huge). The broker keeps it with
// the session only: refresh families do not carry it.
func (c *Connector) keepIDToken(id *connectors.Identity, raw string) {
	if c.endSession == "" || raw == "" || len(raw) > maxKeptIDToken {
		return
	}
	id.LogoutData = []byte(raw)
}

// sessionID is the sid claim, "" when absent or not a string.
func sessionID(claims map[string]any) string {
	sid, _ := claims["sid"].(string)
	return sid
}

// LogoutRequest returns the upstream's end_session_endpoint (its own query
// kept) with id_token_hint, post_logout_redirect_uri=logoutURL, state and
// client_id. It answers ok=false, and no error, when the upstream has no
// usable end_session_endpoint or id.LogoutData holds no ID token (a
// sign-in from before the endpoint was known).
func (c *Connector) LogoutRequest(ctx context.Context, id connectors.Identity, logoutURL, state string) (connectors.LoginRequest, bool, error) {
	if c.endSession == "" {
		return connectors.LoginRequest{}, false, nil
	}
	if logoutURL == "" {
		return connectors.LoginRequest{}, false, fmt.Errorf("oidc: %s: LogoutRequest needs a logout URL", c.id)
	}
	hint := string(id.LogoutData)
	if hint == "" {
		return connectors.LoginRequest{}, false, nil
	}
	u, err := url.Parse(c.endSession)
	if err != nil {
		return connectors.LoginRequest{}, false, fmt.Errorf("oidc: %s: end_session_endpoint: %w", c.id, err)
	}
	q := u.Query()
	q.Set("id_token_hint", hint)
	q.Set("post_logout_redirect_uri", logoutURL)
	q.Set("client_id", c.cfg.ClientID)
	if state != "" {
		q.Set("state", state)
	} else {
		q.Del("state")
	}
	u.RawQuery = q.Encode()
	return connectors.LoginRequest{RedirectURL: u.String()}, true, nil
}

// HandleLogout tells what a request to the logout URL is:
//
//   - a POST (application/x-www-form-urlencoded, at most 64 KiB) with one
//     logout_token: a back-channel logout, validated by logoutToken;
//   - a GET, or such a POST without logout_token, with one state: the
//     browser back from the end_session_endpoint (Returned, Success);
//   - anything else: an error.
//
// When the caller has parsed the form already (r.PostForm set), it is
// used as it is, and the caller's size limit applies. Every refusal is a *connectors.UserError whose Message says why.
func (c *Connector) HandleLogout(ctx context.Context, r *http.Request, logoutURL string) (connectors.LogoutEvent, error) {
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if _, ok := q["logout_token"]; ok {
			return connectors.LogoutEvent{}, logoutRequestError("A logout_token must be sent with POST, in the request body.", fmt.Errorf("oidc: %s: logout_token in a GET query", c.id))
		}
		return c.returned(q["state"])
	case http.MethodPost:
	default:
		return connectors.LogoutEvent{}, logoutRequestError("The logout URL takes GET or POST only.", fmt.Errorf("oidc: %s: logout with method %s", c.id, r.Method))
	}

	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return connectors.LogoutEvent{}, logoutRequestError("A logout request must be application/x-www-form-urlencoded.", fmt.Errorf("oidc: %s: logout content type %q", c.id, r.Header.Get("Content-Type")))
	}
	if _, ok := r.URL.Query()["logout_token"]; ok {
		return connectors.LogoutEvent{}, logoutRequestError("A logout_token must be sent in the request body, not in the URL.", fmt.Errorf("oidc: %s: logout_token in the query", c.id))
	}
	if r.PostForm == nil {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(nil, r.Body, maxLogoutBody)
		}
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return connectors.LogoutEvent{}, logoutRequestError(fmt.Sprintf("The logout request is larger than %d KiB.", maxLogoutBody>>10), fmt.Errorf("oidc: %s: logout body: %w", c.id, err))
			}
			return connectors.LogoutEvent{}, logoutRequestError("The logout request's form is malformed.", fmt.Errorf("oidc: %s: logout form: %w", c.id, err))
		}
	}
	tokens, ok := r.PostForm["logout_token"]
	if !ok {
		return c.returned(r.Form["state"])
	}
	if len(tokens) != 1 || tokens[0] == "" {
		return connectors.LogoutEvent{}, logoutRequestError("A logout request must carry exactly one non-empty logout_token.", fmt.Errorf("oidc: %s: %d logout_token values", c.id, len(tokens)))
	}
	return c.logoutToken(ctx, tokens[0])
}

// returned is the browser back from the end_session_endpoint.
func (c *Connector) returned(states []string) (connectors.LogoutEvent, error) {
	if len(states) != 1 || states[0] == "" {
		return connectors.LogoutEvent{}, logoutRequestError("A logout request must carry either a logout_token (POST) or exactly one state.", fmt.Errorf("oidc: %s: logout return with %d state values", c.id, len(states)))
	}
	return connectors.LogoutEvent{Returned: true, State: states[0], Success: true}, nil
}

// logoutToken validates a back-channel logout token (Back-Channel Logout
// 1.0 §2.6): a compact JWS in an allowed algorithm (never none or HMAC),
// typ absent, logout+jwt or JWT (see checkLogoutType), signed by a key of
// the upstream's JWKS, iss, aud (the client id) and exp checked by the
// ID token verifier, iat present and not in the future, exp at most
// maxLogoutTokenLifetime ahead, events with the back-channel logout member
// whose value is a JSON object, no nonce (so no ID token passes for a
// logout token), jti, and sub or sid.
//
// A connector whose Extension derives the subject (Subject) or checks the
// issuer itself (DiscoveryIssuer) refuses logout tokens: their sub is not
// the broker's upstream subject, or their iss could not be checked here.
func (c *Connector) logoutToken(ctx context.Context, raw string) (connectors.LogoutEvent, error) {
	if c.ext.Subject != nil || c.ext.DiscoveryIssuer != "" {
		return connectors.LogoutEvent{}, logoutRequestError("This connector does not accept back-channel logout.", fmt.Errorf("oidc: %s: back-channel logout with an extension that derives the subject or checks the issuer itself", c.id))
	}
	jws, err := jwks.ParseCompact(raw, c.algs)
	if err != nil {
		return connectors.LogoutEvent{}, logoutTokenError("The logout token is not a compact JWS signed with an allowed algorithm.", fmt.Errorf("oidc: %s: logout token: %w", c.id, err))
	}
	if err := checkLogoutType(jws.Signatures[0].Header); err != nil {
		return connectors.LogoutEvent{}, logoutTokenError("The logout token's typ header must be logout+jwt.", fmt.Errorf("oidc: %s: logout token: %w", c.id, err))
	}
	payload, err := c.keys.VerifySignature(ctx, raw)
	if err != nil {
		if errors.Is(err, connectors.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			return connectors.LogoutEvent{}, signatureError(err) // upstream_unavailable
		}
		return connectors.LogoutEvent{}, logoutTokenError("The logout token is not signed by a key of the identity provider.", fmt.Errorf("oidc: %s: logout token: %w", c.id, err))
	}
	// The ID token verifier checks iss, aud and exp. It does not look at
	// nonce: the checks below refuse one.
	tok, err := c.checkedVerify(ctx, raw, payload)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return connectors.LogoutEvent{}, userError(CodeTokenExpired, "The logout token has expired.", fmt.Errorf("oidc: %s: logout token: %w", c.id, err))
		}
		return connectors.LogoutEvent{}, logoutTokenError("The logout token's iss, aud or exp is wrong, or one of its claims has the wrong type.", fmt.Errorf("oidc: %s: logout token: %w", c.id, err))
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return connectors.LogoutEvent{}, logoutTokenError("The logout token's claims are unreadable.", fmt.Errorf("oidc: %s: logout token claims: %w", c.id, err))
	}
	fail := func(msg, why string) (connectors.LogoutEvent, error) {
		return connectors.LogoutEvent{}, logoutTokenError(msg, fmt.Errorf("oidc: %s: logout token: %s", c.id, why))
	}
	if _, ok := claims["nonce"]; ok {
		return fail("The logout token must not have a nonce claim (is it an ID token?).", "nonce present")
	}
	if !isBackChannelEvent(claims["events"]) {
		return fail("The logout token must have an events claim whose "+backChannelLogoutEvent+" member is a JSON object.", "no back-channel logout event")
	}
	now := c.now()
	if tok.IssuedAt.IsZero() {
		return fail("The logout token has no iat claim.", "iat missing")
	}
	if tok.IssuedAt.After(now.Add(issuedAtLeeway)) {
		return fail("The logout token is issued in the future.", "iat "+tok.IssuedAt.UTC().Format(time.RFC3339))
	}
	if tok.Expiry.IsZero() {
		return fail("The logout token has no exp claim.", "exp missing")
	}
	if tok.Expiry.After(now.Add(maxLogoutTokenLifetime)) {
		return fail(fmt.Sprintf("The logout token's exp is more than %s ahead.", maxLogoutTokenLifetime), "exp "+tok.Expiry.UTC().Format(time.RFC3339))
	}
	jti, ok := stringClaim(claims, "jti")
	if !ok || jti == "" {
		return fail("The logout token has no jti claim.", "jti missing or not a string")
	}
	sid, sidOK := stringClaim(claims, "sid")
	if _, present := claims["sid"]; present && !sidOK {
		return fail("The logout token's sid claim is not a string.", "sid not a string")
	}
	if tok.Subject == "" && sid == "" {
		return fail("The logout token has neither a sub nor a sid claim.", "no sub and no sid")
	}
	return connectors.LogoutEvent{
		Ended:       true,
		Subject:     tok.Subject,
		SessionID:   sid,
		ReplayID:    jti,
		ReplayUntil: tok.Expiry,
	}, nil
}

// checkLogoutType accepts a logout token's typ header when absent,
// logout+jwt (Back-Channel Logout 1.0 §2.4, with or without the
// "application/" prefix, RFC 7515 §4.1.9) or JWT, case-insensitively.
// JWT is accepted because widely deployed providers type every token so
// (Keycloak before version 25); the nonce and events checks are what keep
// an ID token or another JWT from passing as a logout token. Any other
// explicit type (at+jwt, secevent+jwt, ...) names another kind of token
// and is refused.
func checkLogoutType(h jose.Header) error {
	v, ok := h.ExtraHeaders[jose.HeaderType]
	if !ok {
		return nil
	}
	typ, isString := v.(string)
	if !isString {
		return fmt.Errorf("typ header is not a string")
	}
	t := strings.ToLower(typ)
	t = strings.TrimPrefix(t, "application/")
	if t == "logout+jwt" || t == "jwt" {
		return nil
	}
	return fmt.Errorf("typ header %q", typ)
}

// isBackChannelEvent reports whether events (raw JSON) is an object with
// the back-channel logout member, and that member's value is an object.
func isBackChannelEvent(events json.RawMessage) bool {
	var members map[string]json.RawMessage
	if !isObject(events) || json.Unmarshal(events, &members) != nil {
		return false
	}
	ev, ok := members[backChannelLogoutEvent]
	var obj map[string]json.RawMessage
	return ok && isObject(ev) && json.Unmarshal(ev, &obj) == nil
}

// isObject reports whether raw JSON starts an object (null does not).
func isObject(raw json.RawMessage) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// stringClaim reads a string claim; ok is false when absent or not a string.
func stringClaim(claims map[string]json.RawMessage, name string) (string, bool) {
	raw, present := claims[name]
	if !present {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// logoutRequestError is a refused request to the logout URL.
func logoutRequestError(msg string, err error) error {
	return userError(CodeInvalidLogout, msg, err)
}

// logoutTokenError is a logout token that failed a check.
func logoutTokenError(msg string, err error) error {
	return userError(CodeInvalidToken, msg, err)
}
