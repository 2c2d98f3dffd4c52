package broker

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"slices"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// reservedClaims are set by the broker only; mapped claims never override
// them.
var reservedClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true, "jti": true,
	"auth_time": true, "nonce": true, "azp": true, "at_hash": true, "c_hash": true, "sid": true,
	"amr": true, "acr": true, "scope": true, "client_id": true, "act": true, "cnf": true, "typ": true,
}

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

// releasable filters mapped claims by the granted scopes.
func releasable(claims map[string]any, scopes []string) map[string]any {
	if len(claims) == 0 {
		return nil
	}
	out := make(map[string]any, len(claims))
	for k, v := range claims {
		if reservedClaims[k] {
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
}

// issued is the token response of one grant.
type issued struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	IDToken      string `json:"id_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// IssuedTokenType is set for token exchange (RFC 8693 §2.2.1).
	IssuedTokenType string `json:"issued_token_type,omitempty"`
}

// mintAccessToken signs an RFC 9068 access token for grant.
func (s *Server) mintAccessToken(cl *client, g storage.Grant, audiences []string, now time.Time) (string, time.Time, error) {
	exp := now.Add(cl.accessTTL)
	aud, err := encodeAudience(audiences)
	if err != nil {
		return "", time.Time{}, err
	}
	claims := accessTokenClaims{
		Issuer:   s.issuer,
		Subject:  g.Subject,
		Audience: aud,
		ClientID: cl.ID,
		Expiry:   exp.Unix(),
		IssuedAt: now.Unix(),
		JTI:      randomToken(16),
		Scope:    strings.Join(g.Scopes, " "),
		SID:      g.SessionID,
	}
	if !g.AuthTime.IsZero() {
		claims.AuthTime = g.AuthTime.Unix()
	}
	// Only token exchange sets act (mappings cannot: it is reserved).
	if act, ok := g.AccessTokenClaims["act"].(map[string]any); ok {
		claims.Act = act
	}
	payload, err := encodeClaims(claims, releasable(g.AccessTokenClaims, g.Scopes))
	if err != nil {
		return "", time.Time{}, err
	}
	tok, err := s.keys.Sign(cl.alg, payload, "at+jwt")
	if err != nil {
		return "", time.Time{}, fmt.Errorf("broker: sign access token: %w", err)
	}
	return tok, exp, nil
}

// mintIDToken signs an ID token for grant. accessToken, when set, gives
// at_hash.
func (s *Server) mintIDToken(cl *client, g storage.Grant, accessToken string, now time.Time) (string, error) {
	claims := idTokenClaims{
		Issuer:   s.issuer,
		Subject:  g.Subject,
		Audience: cl.ID,
		AZP:      cl.ID,
		Expiry:   now.Add(cl.idTTL).Unix(),
		IssuedAt: now.Unix(),
		Nonce:    g.Nonce,
		SID:      g.SessionID,
		AMR:      g.AMR,
	}
	if !g.AuthTime.IsZero() {
		claims.AuthTime = g.AuthTime.Unix()
	}
	alg := cl.alg
	if accessToken != "" {
		claims.AtHash = tokenHash(alg, accessToken)
	}
	payload, err := encodeClaims(claims, releasable(g.IDTokenClaims, g.Scopes))
	if err != nil {
		return "", err
	}
	tok, err := s.keys.Sign(alg, payload, "JWT")
	if err != nil {
		return "", fmt.Errorf("broker: sign id token: %w", err)
	}
	return tok, nil
}

// encodeClaims encodes the registered claims struct and appends the extra
// (already filtered) claims to the same JSON object. Encoding a struct is
// several times cheaper than encoding a map of everything.
func encodeClaims(registered any, extra map[string]any) ([]byte, error) {
	base, err := json.Marshal(registered)
	if err != nil {
		return nil, fmt.Errorf("broker: encode claims: %w", err)
	}
	if len(extra) == 0 {
		return base, nil
	}
	more, err := json.Marshal(extra)
	if err != nil {
		return nil, fmt.Errorf("broker: encode claims: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(base) + len(more))
	buf.Write(base[:len(base)-1])
	buf.WriteByte(',')
	buf.Write(more[1:])
	return buf.Bytes(), nil
}

func encodeAudience(aud []string) (json.RawMessage, error) {
	if len(aud) == 1 {
		return json.Marshal(aud[0])
	}
	return json.Marshal(aud)
}

// tokenHash is at_hash (OpenID Connect Core §3.1.3.6): the left half of the
// hash of the token, with the hash that matches the signing algorithm.
func tokenHash(alg, token string) string {
	var h hash.Hash
	switch alg {
	case "EdDSA":
		h = sha512.New()
	case "ES384", "RS384", "PS384":
		h = sha512.New384()
	case "ES512", "RS512", "PS512":
		h = sha512.New()
	default:
		h = sha256.New()
	}
	h.Write([]byte(token))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}
