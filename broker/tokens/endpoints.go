package tokens

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// IsRefreshToken reports whether token has the shape of the broker's
// refresh tokens, "<family>.<secret>" (never three JWT segments).
func IsRefreshToken(token string) bool {
	fam, _, ok := strings.Cut(token, ".")
	return ok && fam != "" && len(token) <= 256 && strings.Count(token, ".") == 1
}

// Inactive is the introspection answer for anything that is not a live
// token of this issuer.
var Inactive = map[string]any{"active": false}

// introspected are the access token claims introspection returns.
var introspected = []string{"iss", "sub", "aud", "client_id", "scope", "exp", "iat", "nbf", "jti", "auth_time", "act", "groups", "roles", "email"}

// Introspect is token introspection (RFC 7662) for the authenticated client
// cl. Anything that is not a live token of this issuer — expired, revoked,
// foreign, malformed, another client's refresh token — is Inactive; only a
// storage failure is an error, so an outage never reads as "active".
func (a *Authority) Introspect(ctx context.Context, cl *runtime.Client, token string) (map[string]any, error) {
	if IsRefreshToken(token) {
		fam, err := a.store.GetRefresh(ctx, token)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return Inactive, nil
		case err != nil:
			return nil, err
		}
		if fam.Grant.ClientID != cl.ID || !fam.IdleExpiry.After(a.now()) {
			return Inactive, nil
		}
		exp := fam.Expiry()
		out := map[string]any{
			"active":     true,
			"token_type": "refresh_token",
			"client_id":  fam.Grant.ClientID,
			"sub":        fam.Grant.Subject,
			"scope":      strings.Join(fam.Grant.Scopes, " "),
			"exp":        exp.Unix(),
			"iat":        fam.LastUsed.Unix(),
			"iss":        a.issuer,
		}
		if fam.Grant.DPoPJKT != "" {
			out["cnf"] = map[string]any{"jkt": fam.Grant.DPoPJKT}
		}
		return out, nil
	}
	at, err := a.CheckAccessToken(ctx, token)
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return Inactive, nil
		}
		return nil, err
	}
	out := map[string]any{"active": true, "token_type": "Bearer"}
	if at.JKT != "" {
		// RFC 9449 §6.2: the resource server checks proofs against it.
		out["token_type"], out["cnf"] = TokenTypeDPoP, map[string]any{"jkt": at.JKT}
	}
	for _, k := range introspected {
		if v, ok := at.Raw[k]; ok {
			out[k] = v
		}
	}
	a.audit.Event("introspect", "client_id", cl.ID, "token_client_id", at.ClientID, "sub", at.Subject)
	return out, nil
}

// Revoke is token revocation (RFC 7009) by the authenticated client cl.
// Revoking a refresh token revokes its whole family and the access tokens
// issued from it (RFC 7009 §2.1; RevokeFamily); revoking an access token
// makes introspection, userinfo and token exchange refuse it until it
// expires (it does not revoke its family). Another client's token, or an
// unknown one, is silently ignored so revocation reveals nothing; only a
// storage failure is an error.
func (a *Authority) Revoke(ctx context.Context, cl *runtime.Client, token string) error {
	if IsRefreshToken(token) {
		fam, err := a.store.GetRefresh(ctx, token)
		switch {
		case err == nil && fam.Grant.ClientID == cl.ID:
			if err := a.RevokeFamily(ctx, fam.ID, fam.AbsoluteExpiry); err != nil {
				return err
			}
			a.audit.Event("revoke", "client_id", cl.ID, "sub", fam.Grant.Subject, "family", FamilyRef(fam.ID))
		case err == nil, errors.Is(err, storage.ErrNotFound):
		default:
			return err
		}
		return nil
	}
	if strings.Count(token, ".") != 2 {
		return nil
	}
	at, err := a.CheckAccessToken(ctx, token)
	switch {
	case err == nil && at.ClientID == cl.ID:
		if _, err := a.store.MarkSeen(ctx, revokedNamespace, at.JTI, at.Expiry.Add(time.Minute)); err != nil {
			return err
		}
		a.audit.Event("revoke", "client_id", cl.ID, "sub", at.Subject, "token_type", "access_token")
	case err != nil && !errors.Is(err, ErrInvalid):
		return err
	}
	return nil
}

// ErrInsufficientScope means the access token lacks the openid scope.
var ErrInsufficientScope = errors.New("tokens: the openid scope is required")

// Userinfo answers the UserInfo endpoint (OpenID Connect Core §5.3) from
// the claims of a live access token with the openid scope, presented as a
// bearer token: UserinfoBound with no key, so a DPoP-bound token is
// ErrKeyBinding (RFC 9449 §7.1).
func (a *Authority) Userinfo(ctx context.Context, token string) (map[string]any, error) {
	return a.UserinfoBound(ctx, token, "")
}

// ErrKeyBinding means an access token was presented otherwise than its
// DPoP binding (cnf.jkt, RFC 9449 §6.1) demands: a bound token as a bearer
// token, a proof of another key, or a proof with a token bound to none.
var ErrKeyBinding = errors.New("tokens: the access token is not presented with the key it is bound to")

// UserinfoBound is Userinfo for a token presented with a verified DPoP
// proof of the key whose thumbprint is jkt, or as a bearer token when jkt
// is "": the token's cnf.jkt must be exactly jkt, else ErrKeyBinding.
func (a *Authority) UserinfoBound(ctx context.Context, token, jkt string) (map[string]any, error) {
	at, err := a.CheckAccessToken(ctx, token)
	if err != nil {
		return nil, err
	}
	if at.JKT != jkt {
		return nil, ErrKeyBinding
	}
	if !slices.Contains(at.Scopes, "openid") {
		return nil, ErrInsufficientScope
	}
	out := map[string]any{"sub": at.Subject}
	for k, v := range Releasable(at.Raw, at.Scopes) {
		out[k] = v
	}
	return out, nil
}
