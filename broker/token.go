package broker

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// pkceVerifier is the shape of a code_verifier (RFC 7636 §4.1).
var pkceVerifier = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// handleToken is the token endpoint (RFC 6749 §3.2).
func (s *Server) handleToken(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, 64<<10)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return invalidRequest("the body must be application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		return invalidRequest("the body could not be parsed")
	}
	if len(r.URL.Query()) > 0 {
		return invalidRequest("parameters must be sent in the body, not the query")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 && k != "resource" && k != "audience" {
			return invalidRequest("parameter %s is repeated", k)
		}
	}
	rt := s.rt.Load()
	cl, err := s.authenticateClient(c, rt)
	if err != nil {
		return err
	}
	grant := r.PostForm.Get("grant_type")
	var resp *issued
	switch grant {
	case "authorization_code":
		if err := requireClientGrant(cl, grant); err != nil {
			return err
		}
		resp, err = s.codeGrant(c, rt, cl)
	case "refresh_token":
		if err := requireClientGrant(cl, grant); err != nil {
			return err
		}
		resp, err = s.refreshGrant(c, rt, cl)
	case grantTokenExchange:
		if err := requireClientGrant(cl, grant); err != nil {
			return err
		}
		resp, err = s.tokenExchangeGrant(c, rt, cl)
	case "client_credentials":
		if err := requireClientGrant(cl, grant); err != nil {
			return err
		}
		resp, err = s.clientCredentialsGrant(c, rt, cl)
	case "":
		return invalidRequest("grant_type is required")
	default:
		return newOAuthError(http.StatusBadRequest, errUnsupportedGrantType, "grant_type %q is not supported", grant)
	}
	if err != nil {
		return err
	}
	s.metrics.token(grant)
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	return c.JSON(http.StatusOK, resp)
}

// codeGrant redeems an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6).
// A code is redeemed once; a replayed code revokes the refresh family that
// its first redemption started.
func (s *Server) codeGrant(c echo.Context, rt *runtime, cl *client) (*issued, error) {
	ctx := c.Request().Context()
	form := c.Request().PostForm
	code := form.Get("code")
	if code == "" || len(code) > 128 {
		return nil, invalidRequest("code is required")
	}
	ac, err := s.store.ConsumeCode(ctx, code)
	switch {
	case errors.Is(err, storage.ErrAlreadyUsed):
		now := s.now()
		if rerr := s.store.RevokeFamily(ctx, ac.FamilyID, now.Add(rt.tokens.RefreshAbsolute)); rerr != nil {
			s.log.Error("revoke family of replayed code", "client_id", cl.ID, "err", rerr)
			return nil, rerr
		}
		s.auditEvent("code_replayed", "client_id", cl.ID, "code_client_id", ac.ClientID, "sub", ac.Grant.Subject)
		return nil, invalidGrant("the code was already used; tokens issued from it are revoked")
	case errors.Is(err, storage.ErrNotFound):
		return nil, invalidGrant("the code is invalid or expired")
	case err != nil:
		return nil, err
	}
	now := s.now()
	if !ac.Expiry.After(now) {
		return nil, invalidGrant("the code is invalid or expired")
	}
	if ac.ClientID != cl.ID {
		s.auditEvent("code_wrong_client", "client_id", cl.ID, "code_client_id", ac.ClientID)
		return nil, invalidGrant("the code was issued to another client")
	}
	if form.Get("redirect_uri") != ac.RedirectURI {
		return nil, invalidGrant("redirect_uri does not match the authorization request")
	}
	verifier := form.Get("code_verifier")
	switch {
	case ac.CodeChallenge == "" && verifier != "":
		return nil, invalidGrant("code_verifier sent but no code_challenge was")
	case ac.CodeChallenge != "":
		if verifier == "" {
			return nil, invalidGrant("code_verifier is required")
		}
		if !pkceVerifier.MatchString(verifier) {
			return nil, invalidGrant("code_verifier is malformed")
		}
		sum := sha256.Sum256([]byte(verifier))
		if !constantTimeEqual(base64.RawURLEncoding.EncodeToString(sum[:]), ac.CodeChallenge) {
			return nil, invalidGrant("code_verifier does not match code_challenge")
		}
	}
	if _, ok := rt.connectors[ac.Grant.ConnectorID]; !ok {
		return nil, invalidGrant("the sign-in method of this code was removed")
	}
	resp, err := s.issueTokens(cl, ac.Grant, now)
	if err != nil {
		return nil, err
	}
	if slices.Contains(ac.Grant.Scopes, "offline_access") && cl.grants["refresh_token"] {
		token := ac.FamilyID + "." + randomToken(32)
		fam := storage.RefreshFamily{
			ID:             ac.FamilyID,
			Grant:          ac.Grant,
			CreatedAt:      now,
			LastUsed:       now,
			IdleExpiry:     minTime(now.Add(rt.tokens.RefreshIdle), now.Add(rt.tokens.RefreshAbsolute)),
			AbsoluteExpiry: now.Add(rt.tokens.RefreshAbsolute),
		}
		switch err := s.store.CreateRefresh(ctx, fam, token); {
		case errors.Is(err, storage.ErrNotFound):
			// A replay of this code raced this redemption and revoked the
			// family first: this (first) redemption still answers, but
			// without a refresh token.
			s.auditEvent("refresh_not_issued", "client_id", cl.ID, "sub", ac.Grant.Subject, "reason", "code replayed during redemption")
		case errors.Is(err, storage.ErrAlreadyExists):
			return nil, invalidGrant("the code was already used")
		case err != nil:
			return nil, err
		default:
			resp.RefreshToken = token
		}
	}
	s.auditEvent("token", "grant_type", "authorization_code", "client_id", cl.ID, "sub", ac.Grant.Subject, "connector", ac.Grant.ConnectorID)
	return resp, nil
}

// issueTokens mints the access token and, with the openid scope, the ID
// token of a grant.
func (s *Server) issueTokens(cl *client, g storage.Grant, now time.Time) (*issued, error) {
	at, exp, err := s.mintAccessToken(cl, g, cl.Audiences, now)
	if err != nil {
		return nil, err
	}
	resp := &issued{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(exp.Sub(now).Seconds()), Scope: strings.Join(g.Scopes, " ")}
	if slices.Contains(g.Scopes, "openid") {
		if resp.IDToken, err = s.mintIDToken(cl, g, at, now); err != nil {
			return nil, err
		}
	}
	return resp, nil
}
