package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
)

// TypLogoutToken is the typ header of a Logout Token (OpenID Connect
// Back-Channel Logout 1.0 §2.4).
const TypLogoutToken = "logout+jwt"

// BackchannelLogoutEvent is the member of a Logout Token's events claim
// that makes it one (Back-Channel Logout 1.0 §2.4).
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutTokenTTL is how long a Logout Token is accepted after it is
// minted. Each delivery attempt mints a new one.
const LogoutTokenTTL = 2 * time.Minute

// logoutTokenClaims are the claims of a Logout Token: never a nonce, so
// that an RP can never take it for an ID token (nor the other way round).
type logoutTokenClaims struct {
	Issuer   string              `json:"iss"`
	Subject  string              `json:"sub,omitempty"`
	Audience string              `json:"aud"`
	IssuedAt int64               `json:"iat"`
	Expiry   int64               `json:"exp"`
	JTI      string              `json:"jti"`
	Events   map[string]struct{} `json:"events"`
	SID      string              `json:"sid,omitempty"`
}

// LogoutToken signs a Logout Token for cl (OpenID Connect Back-Channel
// Logout 1.0 §2.4) saying that subject's broker session sid ended: typ
// logout+jwt, iss, aud (the client id), iat, exp (now plus
// LogoutTokenTTL), a fresh jti, the back-channel logout event, sub, and
// sid when known; never a nonce. It is signed with the client's
// algorithm. A client that registered backchannel_logout_session_required
// gets an error instead of a token without sid.
func (a *Authority) LogoutToken(cl *runtime.Client, subject, sid string, now time.Time) (string, error) {
	if subject == "" && sid == "" {
		return "", errors.New("tokens: logout token: neither subject nor session")
	}
	if sid == "" && cl.BackchannelLogoutSessionRequired {
		return "", fmt.Errorf("tokens: logout token: client %s requires sid and the session has none", cl.ID)
	}
	payload, err := encodeClaims(logoutTokenClaims{
		Issuer:   a.issuer,
		Subject:  subject,
		Audience: cl.ID,
		IssuedAt: now.Unix(),
		Expiry:   now.Add(LogoutTokenTTL).Unix(),
		JTI:      oauth.RandomToken(16),
		Events:   map[string]struct{}{BackchannelLogoutEvent: {}},
		SID:      sid,
	}, nil)
	if err != nil {
		return "", err
	}
	tok, err := a.keys.Sign(cl.Alg, payload, TypLogoutToken)
	if err != nil {
		return "", fmt.Errorf("tokens: sign logout token: %w", err)
	}
	return tok, nil
}

// revokedSessionNamespace holds the sid of ended SSO sessions, until the
// last access token issued from such a session expires.
const revokedSessionNamespace = "revoked_session"

// EndedSessions is the storage MarkSeen namespace in which RevokeSession
// records an ended session's sid: what a storage.GrantStore reads to
// refuse a code of an ended session in the same step that consumes it
// (storage.Redemption.EndedSessions).
const EndedSessions = revokedSessionNamespace

// RevokeSession makes CheckAccessToken (introspection, userinfo,
// delegation) refuse every access token whose sid claim is sid, remembered
// until `until` (at least the expiry of the last such token). Ending a
// session calls it; revoking a session twice is harmless, and "" revokes
// nothing.
func (a *Authority) RevokeSession(ctx context.Context, sid string, until time.Time) error {
	if sid == "" {
		return nil
	}
	_, err := a.store.MarkSeen(ctx, revokedSessionNamespace, sid, until)
	return err
}

// SessionRevoked reports whether RevokeSession revoked sid: the session
// ended. The code and refresh grants may use it to refuse a grant of an
// ended session.
func (a *Authority) SessionRevoked(ctx context.Context, sid string) (bool, error) {
	if sid == "" {
		return false, nil
	}
	// A past `until` only asks.
	notRevoked, err := a.store.MarkSeen(ctx, revokedSessionNamespace, sid, time.Time{})
	return !notRevoked, err
}
