// Package connectors holds the small contract every upstream connector
// implements. A connector signs a person (or a workload) in at one upstream
// identity provider and returns an Identity: the raw upstream claims plus a
// stable upstream subject. Connectors know nothing of the broker, its storage,
// its templates or its mappings. The package imports only the standard
// library and package problem, so that anything may import it cheaply.
package connectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/problem"
)

// Identity is what a connector returns after a successful upstream sign-in.
type Identity struct {
	// Subject is the stable upstream subject (never an email address unless
	// the upstream offers nothing better). Together with the connector id it
	// identifies one upstream account.
	Subject string
	// Claims are the raw upstream claims as JSON values (string, bool,
	// float64, []any, map[string]any). SAML attributes arrive as []any.
	Claims map[string]any
	// Sources holds data the connector fetched beyond the upstream token, for
	// example Microsoft Graph groups; it reaches the mapping as `sources`.
	Sources map[string]any
	// ConnectorData is opaque state the connector wants back on Refresh (an
	// upstream refresh token, say). The broker stores it encrypted, with
	// the SSO session and with every refresh family of the sign-in.
	ConnectorData []byte
	// LogoutData is opaque state the connector wants back on
	// LogoutRequest only (an upstream ID token for id_token_hint, a SAML
	// NameID and SessionIndex). The broker stores it encrypted with the SSO
	// session alone, never with refresh families; Refresh neither gets nor
	// returns it.
	LogoutData []byte
	// NoRefresh tells the broker not to issue a refresh token for this
	// sign-in: the upstream gave none and the connector's policy refuses
	// refreshes it cannot check upstream.
	NoRefresh bool
	// RefreshUntil, when not zero, is when the upstream session this
	// sign-in rests on ends: no broker refresh token of it may outlive it.
	RefreshUntil time.Time
	// ClaimsUnchanged, set by RefreshConnector.Refresh, says that the
	// upstream accepted the refresh for this account but sent no claims
	// (no ID token, no userinfo): the broker keeps what it mapped before,
	// and Claims and Sources are empty.
	ClaimsUnchanged bool
	// SessionID is the upstream's own id of the session this sign-in
	// started there (an OpenID provider's sid claim, a SAML
	// SessionIndex), "" when it gave none. The broker keeps it with its
	// own session, so that the upstream's logout can name it.
	SessionID string
}

// Scopes tells a connector what the downstream client asked for.
type Scopes struct {
	OfflineAccess bool // a refresh token was requested
	Groups        bool // group claims were requested
}

// CallbackConnector is a browser connector that redirects to the upstream
// and handles the upstream's redirect back to the broker.
type CallbackConnector interface {
	// LoginURL returns the upstream URL to send the browser to. callbackURL
	// is where the upstream must return; state must come back unchanged.
	// connState is opaque per-login state (PKCE verifier, nonce) that the
	// broker keeps with the auth request and hands back to HandleCallback.
	LoginURL(ctx context.Context, s Scopes, callbackURL, state string) (loginURL string, connState []byte, err error)
	// HandleCallback completes the sign-in from the upstream's redirect.
	HandleCallback(ctx context.Context, s Scopes, connState []byte, r *http.Request) (Identity, error)
}

// PasswordConnector checks a username and password itself; the broker
// renders the login form.
type PasswordConnector interface {
	// Prompt is the label of the username field ("Email", "Username").
	Prompt() string
	// Login returns ok=false (and a nil error) for wrong credentials. An
	// error means the check itself failed.
	Login(ctx context.Context, s Scopes, username, password string) (id Identity, ok bool, err error)
}

// POSTConnector is a browser connector whose upstream answers with an HTML
// form post (SAML HTTP-POST binding).
type POSTConnector interface {
	// LoginRequest returns either a redirect URL (HTTP-Redirect binding) or
	// an HTML form to post (HTTP-POST binding), plus opaque per-login state.
	LoginRequest(ctx context.Context, s Scopes, callbackURL, state string) (req LoginRequest, connState []byte, err error)
	// HandlePOST completes the sign-in from the upstream's form post.
	HandlePOST(ctx context.Context, s Scopes, connState []byte, r *http.Request) (Identity, error)
}

// UnsolicitedConnector is a POSTConnector that may accept a response no
// sign-in of the broker started (SAML IdP-initiated login, from an IdP
// portal tile). When a response names no pending auth request, the broker
// asks UnsolicitedTarget where such a sign-in goes; when ok, it calls
// HandlePOST with empty connState (the connector then accepts only an
// unsolicited response, with every other check) and finishes the sign-in
// as if clientID had asked for scopes at redirectURI, without state, nonce
// or PKCE. The broker checks the target against the client's
// configuration and refuses public clients.
type UnsolicitedConnector interface {
	UnsolicitedTarget() (clientID, redirectURI string, scopes []string, ok bool)
}

// LoginRequest is the start of a POSTConnector sign-in: exactly one of
// RedirectURL or (PostURL, Fields) is set.
type LoginRequest struct {
	RedirectURL string
	PostURL     string
	Fields      map[string]string
}

// RefreshConnector asks the upstream again when the broker refreshes a token,
// so that a user disabled upstream can no longer refresh.
type RefreshConnector interface {
	Refresh(ctx context.Context, s Scopes, id Identity) (Identity, error)
}

// TokenVerifier verifies an upstream token presented directly to the broker
// (token exchange) and returns the identity it vouches for.
type TokenVerifier interface {
	VerifyToken(ctx context.Context, token string) (Identity, error)
}

// LogoutConnector takes part in single logout with its upstream. It is
// optional; a connector without it signs nobody out upstream.
//
// Both directions meet at one URL per connector, the broker's
// /logout/{connector} (logoutURL below): the upstream sends the browser
// back there after a logout the broker started, and sends its own logout
// notices there (an OpenID provider's back-channel logout_token, a SAML
// IdP's LogoutRequest).
type LogoutConnector interface {
	// LogoutRequest starts ending the upstream session of a sign-in: id is
	// what the sign-in's Identity carried (Subject, SessionID,
	// ConnectorData). It returns where to send the browser (a redirect, or
	// a form to post), and ok=false when there is nothing to end upstream
	// (no logout endpoint, no upstream session known). The upstream must
	// send the browser back to logoutURL with state unchanged.
	LogoutRequest(ctx context.Context, id Identity, logoutURL, state string) (req LoginRequest, ok bool, err error)
	// HandleLogout takes a request to logoutURL and says what it is: the
	// browser back from a LogoutRequest (Returned, with its state), or the
	// upstream's notice that a session ended there (Ended). An error is a
	// request that is not a valid one of those (a forged, replayed-as-other,
	// expired or malformed message); a *UserError says why in words.
	HandleLogout(ctx context.Context, r *http.Request, logoutURL string) (LogoutEvent, error)
}

// LogoutEvent is what HandleLogout found in a request.
type LogoutEvent struct {
	// Returned is set when the browser came back from a LogoutRequest;
	// State is the state given to it. Success is false when the upstream
	// said the logout failed there (the broker still ends its own session).
	Returned bool
	State    string
	Success  bool

	// Ended is set when the upstream says one of its sessions ended: the
	// broker ends its sessions of that upstream account (Subject) or
	// upstream session (SessionID); either may be empty, not both.
	Ended     bool
	Subject   string
	SessionID string
	// ReplayID and ReplayUntil, when ReplayID is set, identify the
	// message for replay detection (a logout_token's jti, a
	// LogoutRequest's ID): the broker refuses a second message with the
	// same ReplayID from this connector before ReplayUntil.
	ReplayID    string
	ReplayUntil time.Time
	// Reply, for a notice the browser brought (SAML), is the answer to
	// send the browser back to the upstream with (a LogoutResponse); nil
	// for a back-channel notice, which the broker answers 200.
	Reply *LoginRequest
}

// MetadataHandler is implemented by connectors that publish metadata under
// their own path (SAML SP metadata).
type MetadataHandler interface {
	Metadata(ctx context.Context) (contentType string, body []byte, err error)
}

// Connector is an opened connector. It implements exactly one of the
// sign-in interfaces, CallbackConnector, PasswordConnector or POSTConnector,
// which decides how the broker drives a sign-in; SignInKind tells which.
// It may also implement any of the optional capabilities RefreshConnector,
// TokenVerifier, MetadataHandler, HealthChecker and io.Closer, which the
// broker discovers with a type assertion.
type Connector interface{}

// Sign-in kinds, as SignInKind reports them.
const (
	KindCallback = "callback" // CallbackConnector
	KindPassword = "password" // PasswordConnector
	KindPOST     = "post"     // POSTConnector
)

// SignInKind reports which sign-in interface c implements. It returns an
// error when c implements none of them, or more than one, because the broker
// could then not tell how to sign a person in with it.
func SignInKind(c Connector) (string, error) {
	var kinds []string
	if _, ok := c.(CallbackConnector); ok {
		kinds = append(kinds, KindCallback)
	}
	if _, ok := c.(PasswordConnector); ok {
		kinds = append(kinds, KindPassword)
	}
	if _, ok := c.(POSTConnector); ok {
		kinds = append(kinds, KindPOST)
	}
	switch len(kinds) {
	case 1:
		return kinds[0], nil
	case 0:
		return "", fmt.Errorf("connectors: %T implements no sign-in interface (CallbackConnector, PasswordConnector or POSTConnector)", c)
	}
	return "", fmt.Errorf("connectors: %T implements more than one sign-in interface (%s)", c, strings.Join(kinds, ", "))
}

// HealthChecker is implemented by connectors that can probe their upstream
// (fetch its discovery document, say) without signing anyone in.
type HealthChecker interface {
	// CheckHealth returns nil when the upstream answers as expected, or an
	// error that says what failed. It must not change the connector's state.
	CheckHealth(ctx context.Context) error
}

// StatusReporter is implemented by connectors that have something to tell
// operators beyond whether the upstream answers (an upstream that issues no
// refresh tokens, say).
type StatusReporter interface {
	// Warnings returns what an operator should act on, empty when all is
	// well. It must be cheap and must not call the upstream.
	Warnings() []string
}

// ReplayCache remembers the ids of messages that must be accepted only once
// (SAML assertion ids). The broker's storage implements it, shared by every
// replica.
type ReplayCache interface {
	// MarkSeen records id in namespace until `until` and reports whether it
	// was new (true) or seen before (false), atomically across every user of
	// the cache. An error means nothing can be said; the caller must then
	// refuse the message.
	MarkSeen(ctx context.Context, namespace, id string, until time.Time) (bool, error)
}

// Config is one connector type's configuration. The broker decodes the
// connector's `config:` YAML block into it, validates it and opens it.
type Config interface {
	// Validate returns every problem, each with its path relative to the
	// connector's `config` block ("users[2].password_hash").
	Validate() []problem.Problem
	// Open builds the connector from a Config that Validate accepted. id is
	// the connector's id in config. The result implements exactly one
	// sign-in interface (see Connector).
	Open(ctx context.Context, id string, opts Options) (Connector, error)
}

// Options are the dependencies the broker hands every connector.
type Options struct {
	Logger     *slog.Logger
	HTTPClient *http.Client
	Now        func() time.Time
	// CallbackURL is the broker's callback URL for this connector.
	CallbackURL string
	// BaseURL is the broker's issuer URL.
	BaseURL string
	// ReplayCache remembers accepted one-time messages. Connectors that must
	// refuse a replayed message (SAML) refuse to open without one.
	ReplayCache ReplayCache
}

// UserError is an upstream sign-in failure whose message may be shown to the
// person signing in. Code is a short machine-readable reason for the audit log.
type UserError struct {
	Code    string // access_denied, upstream_error, invalid_response, ...
	Message string // safe to show on the error page
	Err     error  // the cause, logged, never shown
}

func (e *UserError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *UserError) Unwrap() error { return e.Err }

// Errors a UserError's cause wraps to say whose failure it is; the broker
// answers the person with a status to match. A UserError that wraps none of
// them means the response that came back with the browser is unacceptable
// (forged, expired, replayed, mismatched).
var (
	// ErrUnavailable: the upstream could not be reached (down, slow, 5xx).
	ErrUnavailable = errors.New("upstream unavailable")
	// ErrUpstream: the upstream answered, but with an error of its own (a
	// rejected client, a failed API call): not the person's doing.
	ErrUpstream = errors.New("upstream failed")
	// ErrRefused: the upstream, or a rule of the connector, refused this
	// person (access denied, a domain or tenant not allowed, an unverified
	// email).
	ErrRefused = errors.New("sign-in refused")
)
