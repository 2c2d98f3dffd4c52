package broker

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/mapping"
)

// Token types of RFC 8693 §3.
const (
	tokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	tokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	tokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	grantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	maxActNesting        = 5
)

// exchangeError is RFC 8693 §2.2.2: an unacceptable subject token is
// invalid_request.
func exchangeError(format string, args ...any) *oauthError {
	return newOAuthError(http.StatusBadRequest, errInvalidRequest, format, args...)
}

// tokenExchangeGrant is RFC 8693 token exchange: a workload's token from a
// trusted issuer, or one of our own access tokens (delegation, with `act`),
// becomes an internal access token (or, where the client may, an ID token).
func (s *Server) tokenExchangeGrant(c echo.Context, rt *runtime, cl *client) (*issued, error) {
	if cl.Public {
		return nil, newOAuthError(http.StatusBadRequest, errUnauthorizedClient, "token exchange needs an authenticated client")
	}
	form := c.Request().PostForm
	subjectToken := form.Get("subject_token")
	subjectType := form.Get("subject_token_type")
	if subjectToken == "" || subjectType == "" {
		return nil, invalidRequest("subject_token and subject_token_type are required")
	}
	if form.Get("actor_token") != "" {
		return nil, invalidRequest("actor_token is not supported")
	}
	switch subjectType {
	case tokenTypeJWT, tokenTypeIDToken, tokenTypeAccessToken:
	default:
		return nil, invalidRequest("subject_token_type %q is not supported", subjectType)
	}
	requested := form.Get("requested_token_type")
	switch requested {
	case "", tokenTypeAccessToken:
		requested = tokenTypeAccessToken
	case tokenTypeIDToken:
		if !cl.AllowIDTokenExchange {
			return nil, invalidRequest("this client may not request ID tokens by token exchange")
		}
	default:
		return nil, invalidRequest("requested_token_type %q is not supported", requested)
	}
	aud, err := requestedAudiences(form["audience"], form["resource"], cl.Audiences)
	if err != nil {
		return nil, err
	}
	scopes := dedupe(strings.Fields(form.Get("scope")))
	for _, sc := range scopes {
		if !cl.scopes[sc] || sc == "offline_access" {
			return nil, newOAuthError(http.StatusBadRequest, errInvalidScope, "scope %q is not allowed for this client", sc)
		}
	}
	if len(subjectToken) > 16<<10 {
		return nil, exchangeError("subject_token is too large")
	}
	parsed, err := jwt.ParseSigned(subjectToken, asymmetricAlgs)
	if err != nil {
		return nil, exchangeError("subject_token is not a signed JWT with an accepted algorithm")
	}
	var unverified jwt.Claims
	if err := parsed.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, exchangeError("subject_token claims are malformed")
	}
	now := s.now()
	var g storage.Grant
	if unverified.Issuer == s.issuer {
		g, err = s.delegate(c, cl, subjectToken, subjectType, scopes)
	} else {
		g, err = s.fromWorkload(c, rt, cl, unverified.Issuer, subjectToken, scopes)
	}
	if err != nil {
		return nil, err
	}
	resp := &issued{TokenType: "Bearer", Scope: strings.Join(g.Scopes, " "), IssuedTokenType: requested}
	if requested == tokenTypeIDToken {
		g.Scopes = append(g.Scopes, "openid")
		if resp.AccessToken, err = s.mintIDToken(cl, g, "", now); err != nil {
			return nil, err
		}
		resp.TokenType = "N_A"
		resp.ExpiresIn = int64(cl.idTTL.Seconds())
	} else {
		at, exp, err := s.mintAccessToken(cl, g, aud, now)
		if err != nil {
			return nil, err
		}
		resp.AccessToken, resp.ExpiresIn = at, int64(exp.Sub(now).Seconds())
	}
	s.auditEvent("token_exchange", "client_id", cl.ID, "sub", g.Subject, "source", g.ConnectorID, "audience", strings.Join(aud, " "), "requested", requested)
	return resp, nil
}

// fromWorkload verifies a token from a trusted workload issuer the client is
// allowed to exchange, and maps it.
func (s *Server) fromWorkload(c echo.Context, rt *runtime, cl *client, iss, token string, scopes []string) (storage.Grant, error) {
	var w *workloadIssuer
	for _, id := range cl.Workloads {
		if cand, ok := rt.workloads[id]; ok && cand.verifier.Issuer() == iss {
			w = cand
			break
		}
	}
	if w == nil {
		s.auditEvent("token_exchange_rejected", "client_id", cl.ID, "reason", "issuer not trusted for this client")
		return storage.Grant{}, exchangeError("the subject token's issuer is not trusted for this client")
	}
	ctx := c.Request().Context()
	id, err := w.verifier.VerifyToken(ctx, token)
	if err != nil {
		s.auditEvent("token_exchange_rejected", "client_id", cl.ID, "workload", w.id, "reason", err.Error())
		return storage.Grant{}, exchangeError("the subject token is not acceptable: %s", strings.TrimPrefix(err.Error(), "workload: "))
	}
	if w.verifier.OneTimeJTI() {
		jti, _ := id.Claims["jti"].(string)
		exp, _ := id.Claims["exp"].(float64)
		fresh, err := s.store.MarkSeen(ctx, "jti:"+w.id, jti, time.Unix(int64(exp), 0).Add(time.Minute))
		if err != nil {
			return storage.Grant{}, err
		}
		if !fresh {
			s.auditEvent("token_exchange_rejected", "client_id", cl.ID, "workload", w.id, "reason", "jti replayed")
			return storage.Grant{}, exchangeError("the subject token was already used")
		}
	}
	res, err := w.mapping.Evaluate(ctx, mapping.Input{ConnectorID: w.id, ConnectorType: "workload", UpstreamSubject: id.Subject, Claims: id.Claims})
	var rej *mapping.Rejection
	switch {
	case errors.As(err, &rej):
		s.auditEvent("token_exchange_rejected", "client_id", cl.ID, "workload", w.id, "upstream_sub", id.Subject, "rule", rej.Rule, "message", rej.Message)
		return storage.Grant{}, exchangeError("refused by policy: %s", rej.Message)
	case err != nil:
		s.log.Warn("workload mapping failed", "workload", w.id, "err", err)
		return storage.Grant{}, exchangeError("refused by policy")
	}
	return storage.Grant{ClientID: cl.ID, Subject: res.Subject, Scopes: scopes, ConnectorID: w.id, UpstreamSubject: id.Subject,
		IDTokenClaims: res.IDToken, AccessTokenClaims: res.AccessToken}, nil
}

// delegate exchanges one of our own access tokens for another audience; the
// new token names the requesting client as actor (`act`), nested under any
// earlier actors, up to maxActNesting deep. Scopes never widen.
func (s *Server) delegate(c echo.Context, cl *client, token, typ string, scopes []string) (storage.Grant, error) {
	if typ != tokenTypeAccessToken && typ != tokenTypeJWT {
		return storage.Grant{}, exchangeError("our own tokens are exchanged as access tokens")
	}
	at, err := s.verifyAccessToken(c, token)
	if err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			return storage.Grant{}, err
		}
		return storage.Grant{}, exchangeError("the subject token is not a valid access token of this issuer")
	}
	if len(scopes) == 0 {
		scopes = slices.DeleteFunc(slices.Clone(at.scopes), func(sc string) bool { return !cl.scopes[sc] || sc == "offline_access" })
	}
	for _, sc := range scopes {
		if !slices.Contains(at.scopes, sc) {
			return storage.Grant{}, newOAuthError(http.StatusBadRequest, errInvalidScope, "scope %q is not in the subject token", sc)
		}
	}
	act := map[string]any{"sub": cl.ID}
	depth := 1
	if prev, ok := at.raw["act"].(map[string]any); ok {
		for p := prev; p != nil; depth++ {
			next, _ := p["act"].(map[string]any)
			p = next
		}
		if depth > maxActNesting {
			return storage.Grant{}, exchangeError("delegation is nested too deep")
		}
		act["act"] = prev
	}
	claims := make(map[string]any)
	for k, v := range at.raw {
		if !reservedClaims[k] {
			claims[k] = v
		}
	}
	claims["act"] = act
	return storage.Grant{ClientID: cl.ID, Subject: at.sub, Scopes: scopes, ConnectorID: "delegation", AccessTokenClaims: claims}, nil
}
