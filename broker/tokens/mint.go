package tokens

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/jwa"
)

// Response is the token endpoint's answer to one grant (RFC 6749 §5.1).
type Response struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	IDToken      string `json:"id_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// IssuedTokenType is set for token exchange (RFC 8693 §2.2.1).
	IssuedTokenType string `json:"issued_token_type,omitempty"`
}

// Typ header values of the broker's tokens.
const (
	TypAccessToken = "at+jwt" // RFC 9068 §2.1
	TypIDToken     = "JWT"
)

// TokenTypeDPoP is the token_type of a DPoP-bound access token (RFC 9449
// §5).
const TokenTypeDPoP = "DPoP"

// AccessToken signs an RFC 9068 access token of grant g for cl, for the
// given audiences, and returns it with its expiry. g.FamilyRef, when set,
// becomes its FamilyClaim; g.DPoPJKT, when set, its cnf.jkt (RFC 9449
// §6.1).
func (a *Authority) AccessToken(cl *runtime.Client, g storage.Grant, audiences []string, now time.Time) (string, time.Time, error) {
	if msg := config.SubjectProblem(cl.Profile, g.Subject); msg != "" {
		return "", time.Time{}, oauth.InvalidGrant("%s", msg)
	}
	exp := now.Add(cl.AccessTokenTTL)
	claims := accessTokenClaims{
		Issuer:   a.issuer,
		Subject:  g.Subject,
		ClientID: cl.ID,
		Expiry:   exp.Unix(),
		IssuedAt: now.Unix(),
		JTI:      oauth.RandomToken(16),
		Scope:    strings.Join(g.Scopes, " "),
		SID:      g.SessionID,
		Family:   g.FamilyRef,
	}
	if !g.AuthTime.IsZero() {
		claims.AuthTime = g.AuthTime.Unix()
	}
	if g.DPoPJKT != "" {
		claims.Cnf = &confirmation{JKT: g.DPoPJKT}
	}
	// Only token exchange sets act (mappings cannot: it is reserved).
	if act, ok := g.AccessTokenClaims["act"].(map[string]any); ok {
		claims.Act = act
	}
	bp := payloadPool.Get().(*[]byte)
	defer payloadPool.Put(bp)
	payload, err := appendAccessToken((*bp)[:0], &claims, audiences, g.AccessTokenClaims, g.Scopes)
	*bp = payload
	if err != nil {
		return "", time.Time{}, err
	}
	tok, err := a.keys.SignCompact(cl.Alg, payload, TypAccessToken)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("tokens: sign access token: %w", err)
	}
	return tok, exp, nil
}

// IDToken signs an ID token of grant g for cl. accessToken, when set, gives
// at_hash.
func (a *Authority) IDToken(cl *runtime.Client, g storage.Grant, accessToken string, now time.Time) (string, error) {
	if msg := config.SubjectProblem(cl.Profile, g.Subject); msg != "" {
		return "", oauth.InvalidGrant("%s", msg)
	}
	claims := idTokenClaims{
		Issuer:   a.issuer,
		Subject:  g.Subject,
		Audience: cl.ID,
		AZP:      cl.ID,
		Expiry:   now.Add(cl.IDTokenTTL).Unix(),
		IssuedAt: now.Unix(),
		Nonce:    g.Nonce,
		SID:      g.SessionID,
		AMR:      g.AMR,
	}
	if !g.AuthTime.IsZero() {
		claims.AuthTime = g.AuthTime.Unix()
	}
	if accessToken != "" {
		claims.AtHash = jwa.LeftHash(cl.Alg, accessToken)
	}
	bp := payloadPool.Get().(*[]byte)
	defer payloadPool.Put(bp)
	payload, err := appendIDToken((*bp)[:0], &claims, g.IDTokenClaims, g.Scopes)
	*bp = payload
	if err != nil {
		return "", err
	}
	tok, err := a.keys.SignCompact(cl.Alg, payload, TypIDToken)
	if err != nil {
		return "", fmt.Errorf("tokens: sign id token: %w", err)
	}
	return tok, nil
}

// Issue mints the access token of g for the client's own audiences and,
// with the openid scope, its ID token.
func (a *Authority) Issue(cl *runtime.Client, g storage.Grant, now time.Time) (*Response, error) {
	at, exp, err := a.AccessToken(cl, g, cl.Audiences, now)
	if err != nil {
		return nil, err
	}
	resp := &Response{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(exp.Sub(now).Seconds()), Scope: strings.Join(g.Scopes, " ")}
	if g.DPoPJKT != "" {
		resp.TokenType = TokenTypeDPoP
	}
	if slices.Contains(g.Scopes, "openid") {
		if resp.IDToken, err = a.IDToken(cl, g, at, now); err != nil {
			return nil, err
		}
	}
	return resp, nil
}
