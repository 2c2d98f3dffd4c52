package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// maxTokenBytes caps a token presented to the broker.
const maxTokenBytes = 16 << 10

// ErrInvalid means a token is not a live token of this issuer: malformed,
// not signed by a published key, of the wrong type, from another issuer,
// expired, or revoked. It never says which.
var ErrInvalid = errors.New("tokens: invalid, expired or revoked token")

// Claims is a verified token of this issuer.
type Claims struct {
	// Raw holds every claim as decoded JSON.
	Raw      map[string]any
	Subject  string
	ClientID string // client_id (access tokens)
	Audience []string
	Scopes   []string
	JTI      string
	Expiry   time.Time
	// FamilyRef is the token's FamilyClaim: the refresh family it
	// descends from (access tokens; "" when none).
	FamilyRef string
	// JKT is the token's cnf.jkt: the thumbprint of the DPoP key it is
	// bound to (RFC 9449 §6.1); "" for a bearer token.
	JKT string
}

// check is the one check of the broker's own tokens: size, a signature by
// a published key, the typ header, the issuer, a subject, and expiry.
func (a *Authority) check(token, typ string) (*Claims, error) {
	return a.checkExpired(token, typ, 0)
}

// checkExpired is check that also accepts a token expired less than
// grace ago.
func (a *Authority) checkExpired(token, typ string, grace time.Duration) (*Claims, error) {
	if token == "" || len(token) > maxTokenBytes {
		return nil, ErrInvalid
	}
	payload, got, err := a.keys.Verify(token)
	if err != nil || !strings.EqualFold(got, typ) {
		return nil, ErrInvalid
	}
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, ErrInvalid
	}
	c := &Claims{Raw: raw}
	iss, _ := raw["iss"].(string)
	c.Subject, _ = raw["sub"].(string)
	c.ClientID, _ = raw["client_id"].(string)
	c.JTI, _ = raw["jti"].(string)
	scope, _ := raw["scope"].(string)
	c.Scopes = strings.Fields(scope)
	exp, ok := raw["exp"].(float64)
	c.Expiry = time.Unix(int64(exp), 0)
	switch aud := raw["aud"].(type) {
	case string:
		c.Audience = []string{aud}
	case []any:
		for _, x := range aud {
			if s, ok := x.(string); ok {
				c.Audience = append(c.Audience, s)
			}
		}
	}
	if iss != a.issuer || c.Subject == "" || !ok || !c.Expiry.After(a.now().Add(-grace)) {
		return nil, ErrInvalid
	}
	if cnf, present := raw["cnf"]; present {
		m, _ := cnf.(map[string]any)
		if c.JKT, _ = m["jkt"].(string); c.JKT == "" {
			// A confirmation the broker cannot check is never ignored.
			return nil, ErrInvalid
		}
	}
	return c, nil
}

// revokedNamespace holds the jti of access tokens revoked through /revoke,
// until they expire.
const revokedNamespace = "revoked_at"

// CheckAccessToken verifies one of the broker's own access tokens: a
// signature by a published key, typ at+jwt, issuer, subject, jti, expiry,
// that it was not revoked through /revoke, and that its refresh family
// (FamilyClaim) was not revoked — by /revoke of a refresh token of the
// family, reuse of a rotated refresh token, a replayed code, or an
// upstream refusing to refresh (RevokeFamily) — nor its SSO session ended
// (sid, RevokeSession), and that it was issued in
// storage's current epoch (see issuedBeforeEpoch). It fails with ErrInvalid,
// or with a storage error when revocation cannot be checked (never reading
// an outage as "valid"). Introspection, userinfo and delegation go through
// here; services that verify tokens locally (verify/) do not see
// revocations at all and accept a revoked token until its exp.
func (a *Authority) CheckAccessToken(ctx context.Context, token string) (*Claims, error) {
	c, err := a.check(token, TypAccessToken)
	if err != nil {
		return nil, err
	}
	if c.JTI == "" {
		return nil, ErrInvalid
	}
	// Revoked through /revoke? (A past `until` only asks.)
	notRevoked, err := a.store.MarkSeen(ctx, revokedNamespace, c.JTI, time.Time{})
	if err != nil {
		return nil, err
	}
	if !notRevoked || a.issuedBeforeEpoch(c) {
		return nil, ErrInvalid
	}
	if ref, ok := c.Raw[FamilyClaim]; ok {
		s, _ := ref.(string)
		if s == "" {
			return nil, ErrInvalid
		}
		revoked, err := a.familyRevoked(ctx, s)
		if err != nil {
			return nil, err
		}
		if revoked {
			return nil, ErrInvalid
		}
		c.FamilyRef = s
	}
	// Issued from an SSO session that has ended (RevokeSession)?
	if sid, ok := c.Raw["sid"]; ok {
		s, _ := sid.(string)
		if s == "" {
			return nil, ErrInvalid
		}
		revoked, err := a.SessionRevoked(ctx, s)
		if err != nil {
			return nil, err
		}
		if revoked {
			return nil, ErrInvalid
		}
	}
	return c, nil
}

// issuedBeforeEpoch reports whether the token may have been issued before
// storage's current epoch began (storage.Storage.Since): then a revocation
// of it, or of its family, may be among what storage lost, so it is
// refused. iat has whole seconds, so a token of the second the epoch began
// in is refused unless the epoch began on that second (a new store).
// Checked after a storage call, which is when a loss is noticed.
func (a *Authority) issuedBeforeEpoch(c *Claims) bool {
	since := a.store.Since()
	if since.IsZero() {
		return false
	}
	iat, ok := c.Raw["iat"].(float64)
	return !ok || time.Unix(int64(iat), 0).Before(since)
}

// IDTokenHintGrace is how long after its exp an ID token is still taken
// as an id_token_hint: RP-Initiated Logout 1.0 §2 asks the OP to accept
// expired ID tokens of a current or recent session (an application signs
// a person out long after the ID token's few minutes).
const IDTokenHintGrace = 24 * time.Hour

// CheckIDTokenHint verifies an ID token of this issuer (an id_token_hint),
// expired less than IDTokenHintGrace ago at most, and returns the client
// it was issued to.
func (a *Authority) CheckIDTokenHint(hint string) (clientID string, err error) {
	c, err := a.checkExpired(hint, TypIDToken, IDTokenHintGrace)
	if err != nil {
		return "", err
	}
	if len(c.Audience) != 1 || c.Audience[0] == "" {
		return "", ErrInvalid
	}
	if _, isString := c.Raw["aud"].(string); !isString {
		return "", ErrInvalid
	}
	return c.Audience[0], nil
}
