package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// BackchannelLogoutEvent is the member of a Logout Token's events claim
// that makes it one (OpenID Connect Back-Channel Logout 1.0 §2.4).
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutTokenTypes are the typ header values of a Logout Token,
// compared case-insensitively (Back-Channel Logout 1.0 §2.4).
var logoutTokenTypes = []string{"logout+jwt", "application/logout+jwt"}

var (
	// ErrNotLogoutToken means a JWT presented as a Logout Token is another
	// kind of token: it has a nonce (an ID token), or its events claim
	// lacks the back-channel logout event with an object value.
	ErrNotLogoutToken = errors.New("verify: not a logout token")
	// ErrReplayed means a Logout Token with the same jti was accepted
	// before.
	ErrReplayed = errors.New("verify: token replayed")
)

// LogoutClaims are the verified claims of a Logout Token: the issuer says
// that the session SessionID of Subject has ended (either may be empty,
// never both). A *LogoutClaims returned by VerifyLogoutToken has passed
// every check; callers must not modify it.
type LogoutClaims struct {
	Issuer  string
	Subject string // sub; "" when the token names only a session
	// SessionID is sid: the issuer's session, as in the ID tokens it
	// issued ("" when the token names only a subject).
	SessionID string
	Audience  []string
	IssuedAt  time.Time
	Expiry    time.Time
	JTI       string
	// Raw holds every claim of the payload as decoded by encoding/json.
	Raw map[string]any
}

// VerifyLogoutToken checks a Logout Token (OpenID Connect Back-Channel
// Logout 1.0 §2.6) sent to the application's backchannel_logout_uri by
// the Verifier's issuer. The Verifier's audience must be the
// application's client id: the token's aud must contain it. It refuses,
// with an error wrapping one of the package's sentinel errors:
//   - a token that is not a compact JWS, or larger than MaxTokenSize, or
//     whose claims lack iss, iat, exp or jti, or both sub and sid, or
//     have the wrong JSON type (ErrMalformed);
//   - algorithms outside the allowlist ("none", HMAC) and bad signatures
//     (ErrInvalidSignature), keys the issuer does not publish (ErrUnknownKey);
//   - a typ header other than logout+jwt, when there is one (ErrWrongType);
//   - iss not exactly the issuer (ErrWrongIssuer), aud without the
//     audience (ErrWrongAudience);
//   - exp past, or iat (nbf) future, beyond the leeway (*ExpiredError,
//     ErrNotYetValid);
//   - a nonce claim, which only ID tokens have, and an events claim
//     without the back-channel logout event whose value is a JSON object
//     (ErrNotLogoutToken);
//   - a jti this Verifier accepted before (ErrReplayed). The replay cache
//     is the bounded in-memory one of DPoP proofs (WithDPoPReplayCache
//     sizes it): replicas of an application do not share it, unless they
//     share a ReplayStore (WithReplayStore; ErrReplayUnavailable when it
//     cannot answer).
//
// The caller then ends its sessions of Subject, or its session tied to
// SessionID, and answers 200 (Back-Channel Logout 1.0 §2.8);
// BackchannelLogoutHandler does that.
func (v *Verifier) VerifyLogoutToken(ctx context.Context, token string) (*LogoutClaims, error) {
	header, body, err := v.parseVerified(ctx, token)
	if err != nil {
		return nil, err
	}
	if typ, ok := header.ExtraHeaders[jose.HeaderType].(string); ok &&
		!slices.ContainsFunc(logoutTokenTypes, func(t string) bool { return strings.EqualFold(t, typ) }) {
		return nil, fmt.Errorf("%w: typ %q, want %q", ErrWrongType, typ, logoutTokenTypes[0])
	}
	c, err := decodeLogoutClaims(body)
	if err != nil {
		return nil, err
	}
	if err := v.checkClaims(&Claims{Issuer: c.Issuer, Audience: c.Audience, Expiry: c.Expiry, IssuedAt: c.IssuedAt, NotBefore: notBefore(c.Raw)}); err != nil {
		return nil, err
	}
	// Last, so that only a token that passed every other check is
	// remembered. It stops passing at exp plus the leeway, by the
	// Verifier's clock; the cache counts on the wall clock.
	left := c.Expiry.Add(v.leeway).Sub(v.now()) + time.Second
	switch used, err := v.seen(ctx, "logout+jwt", c.JTI, left); {
	case err != nil:
		return nil, err
	case used:
		return nil, fmt.Errorf("%w: jti %q", ErrReplayed, c.JTI)
	}
	return c, nil
}

// decodeLogoutClaims decodes a verified payload and makes the checks of
// Back-Channel Logout 1.0 §2.6 steps 3-5 that need no configuration.
func decodeLogoutClaims(body []byte) (*LogoutClaims, error) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	c := &LogoutClaims{Raw: raw}
	var missing, wrong []string
	str := func(name string, dst *string) {
		switch v := raw[name].(type) {
		case string:
			*dst = v
		case nil:
		default:
			wrong = append(wrong, name)
		}
	}
	date := func(name string, dst *time.Time) {
		switch v := raw[name].(type) {
		case float64:
			*dst = time.Unix(int64(v), 0)
		case nil:
			missing = append(missing, name)
		default:
			wrong = append(wrong, name)
		}
	}
	str("iss", &c.Issuer)
	str("sub", &c.Subject)
	str("sid", &c.SessionID)
	str("jti", &c.JTI)
	date("iat", &c.IssuedAt)
	date("exp", &c.Expiry)
	switch aud := raw["aud"].(type) {
	case nil:
	case string:
		c.Audience = []string{aud}
	case []any:
		for _, x := range aud {
			s, ok := x.(string)
			if !ok {
				wrong = append(wrong, "aud")
				break
			}
			c.Audience = append(c.Audience, s)
		}
	default:
		wrong = append(wrong, "aud")
	}
	if _, ok := raw["nbf"]; ok && notBefore(raw).IsZero() {
		wrong = append(wrong, "nbf")
	}
	if len(wrong) > 0 {
		return nil, fmt.Errorf("%w: claims of the wrong type: %s", ErrMalformed, strings.Join(wrong, ", "))
	}
	// An ID token (it may carry sid and sub too) is never a logout token.
	if _, ok := raw["nonce"]; ok {
		return nil, fmt.Errorf("%w: it has a nonce", ErrNotLogoutToken)
	}
	events, _ := raw["events"].(map[string]any)
	if _, ok := events[BackchannelLogoutEvent].(map[string]any); !ok {
		return nil, fmt.Errorf("%w: events has no %s object", ErrNotLogoutToken, BackchannelLogoutEvent)
	}
	if c.Issuer == "" {
		missing = append(missing, "iss")
	}
	if c.JTI == "" {
		missing = append(missing, "jti")
	}
	if c.Subject == "" && c.SessionID == "" {
		missing = append(missing, "sub or sid")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing claims %s", ErrMalformed, strings.Join(missing, ", "))
	}
	return c, nil
}

// notBefore returns the nbf claim, zero when absent or not a number.
func notBefore(raw map[string]any) time.Time {
	if n, ok := raw["nbf"].(float64); ok {
		return time.Unix(int64(n), 0)
	}
	return time.Time{}
}

// maxLogoutRequestBytes caps the body of a back-channel logout request.
const maxLogoutRequestBytes = 64 << 10

// BackchannelLogoutHandler returns the handler of the application's
// backchannel_logout_uri (OpenID Connect Back-Channel Logout 1.0 §2.5,
// §2.8): it takes the logout_token of a POSTed form, verifies it with
// VerifyLogoutToken and calls end with its claims, which ends the
// application's sessions of the subject or session it names. It answers
// 200 when end returns nil; 400 with {"error":"invalid_request"} to a
// request without a valid logout token; 500 when end fails and 503 when
// the ReplayStore cannot answer, so that the broker retries with a new
// token. Every answer has Cache-Control: no-store.
func (v *Verifier) BackchannelLogoutHandler(end func(ctx context.Context, c *LogoutClaims) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		bad := func(desc string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": desc})
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
			bad("the request is not a form")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxLogoutRequestBytes)
		if err := r.ParseForm(); err != nil {
			bad("the form cannot be read")
			return
		}
		tokens := r.PostForm["logout_token"]
		if len(tokens) != 1 {
			bad("exactly one logout_token is required")
			return
		}
		c, err := v.VerifyLogoutToken(r.Context(), tokens[0])
		if errors.Is(err, ErrReplayUnavailable) {
			http.Error(w, "logout cannot be checked now", http.StatusServiceUnavailable)
			return
		}
		if err != nil {
			bad("the logout token is invalid")
			return
		}
		if err := end(r.Context(), c); err != nil {
			http.Error(w, "logout failed", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}
