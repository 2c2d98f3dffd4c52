package tokens

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/fedbroker/fedbroker/mapping"
)

// scopeClaims names the standard claims each scope releases (OpenID Connect
// Core §5.4). Claims not listed here are released with openid.
var scopeClaims = map[string]string{
	"name": "profile", "family_name": "profile", "given_name": "profile", "middle_name": "profile",
	"nickname": "profile", "preferred_username": "profile", "profile": "profile", "picture": "profile",
	"website": "profile", "gender": "profile", "birthdate": "profile", "zoneinfo": "profile",
	"locale": "profile", "updated_at": "profile",
	"email": "email", "email_verified": "email",
	"groups": "groups", "roles": "groups",
}

// Releasable filters mapped claims by the granted scopes. Claims the broker
// sets itself (mapping.IsReservedClaim, FamilyClaim) are never released
// from a mapping.
func Releasable(claims map[string]any, scopes []string) map[string]any {
	if len(claims) == 0 {
		return nil
	}
	out := make(map[string]any, len(claims))
	for k, v := range claims {
		if mapping.IsReservedClaim(k) || k == FamilyClaim {
			continue
		}
		if need, ok := scopeClaims[k]; ok && !slices.Contains(scopes, need) {
			continue
		}
		out[k] = v
	}
	return out
}

// idTokenClaims are the registered claims of an ID token.
type idTokenClaims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience string   `json:"aud"`
	AZP      string   `json:"azp"`
	Expiry   int64    `json:"exp"`
	IssuedAt int64    `json:"iat"`
	AuthTime int64    `json:"auth_time,omitempty"`
	Nonce    string   `json:"nonce,omitempty"`
	AtHash   string   `json:"at_hash,omitempty"`
	SID      string   `json:"sid,omitempty"`
	AMR      []string `json:"amr,omitempty"`
}

// accessTokenClaims are the registered claims of an RFC 9068 access token.
// appendAccessToken takes the audiences apart and leaves Audience alone;
// encodeClaims needs it set (one audience as a JSON string, several as an
// array).
type accessTokenClaims struct {
	Issuer   string          `json:"iss"`
	Subject  string          `json:"sub"`
	Audience json.RawMessage `json:"aud"`
	ClientID string          `json:"client_id"`
	Expiry   int64           `json:"exp"`
	IssuedAt int64           `json:"iat"`
	JTI      string          `json:"jti"`
	Scope    string          `json:"scope,omitempty"`
	AuthTime int64           `json:"auth_time,omitempty"`
	SID      string          `json:"sid,omitempty"`
	Act      map[string]any  `json:"act,omitempty"`
	// Family is FamilyClaim.
	Family string `json:"fb_fam,omitempty"`
	// Cnf binds the token to a DPoP key (RFC 9449 §6.1).
	Cnf *confirmation `json:"cnf,omitempty"`
}

// confirmation is the cnf claim of a DPoP-bound access token:
// {"jkt": "<RFC 7638 thumbprint>"}.
type confirmation struct {
	JKT string `json:"jkt"`
}

// encodeClaims encodes the registered claims struct and appends the extra
// (already filtered) claims to the same JSON object. Encoding a struct is
// several times cheaper than encoding a map of everything; the access and
// ID tokens use the one-pass encoder of encode.go instead, which writes
// the same JSON.
func encodeClaims(registered any, extra map[string]any) ([]byte, error) {
	base, err := json.Marshal(registered)
	if err != nil {
		return nil, fmt.Errorf("tokens: encode claims: %w", err)
	}
	if len(extra) == 0 {
		return base, nil
	}
	more, err := json.Marshal(extra)
	if err != nil {
		return nil, fmt.Errorf("tokens: encode claims: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(base) + len(more))
	buf.Write(base[:len(base)-1])
	buf.WriteByte(',')
	buf.Write(more[1:])
	return buf.Bytes(), nil
}
