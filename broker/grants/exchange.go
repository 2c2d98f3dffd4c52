package grants

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/connectors/workload"
	"github.com/fedbroker/fedbroker/mapping"
)

const (
	// maxActNesting bounds delegation chains (`act` inside `act`).
	maxActNesting = 5
	// maxSubjectTokenBytes caps a subject token.
	maxSubjectTokenBytes = 16 << 10
)

// exchangeError is RFC 8693 §2.2.2: an unacceptable subject token is
// invalid_request.
func exchangeError(format string, args ...any) *oauth.Error {
	return oauth.InvalidRequest(format, args...)
}

// Exchange is RFC 8693 token exchange: a workload's token from a trusted
// issuer, or one of the broker's own access tokens (delegation, with
// `act`), becomes an internal access token (or, where the client may, an ID
// token).
func (g *Grants) Exchange(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request) (*tokens.Response, error) {
	if cl.Public {
		return nil, oauth.UnauthorizedClient("token exchange needs an authenticated client")
	}
	if req.SubjectToken == "" || req.SubjectTokenType == "" {
		return nil, oauth.InvalidRequest("subject_token and subject_token_type are required")
	}
	if req.ActorToken != "" {
		return nil, oauth.InvalidRequest("actor_token is not supported")
	}
	switch req.SubjectTokenType {
	case oauth.TokenTypeJWT, oauth.TokenTypeIDToken, oauth.TokenTypeAccessToken:
	default:
		return nil, oauth.InvalidRequest("subject_token_type %q is not supported", req.SubjectTokenType)
	}
	requested := req.RequestedTokenType
	switch requested {
	case "", oauth.TokenTypeAccessToken:
		requested = oauth.TokenTypeAccessToken
	case oauth.TokenTypeIDToken:
		if !cl.AllowIDTokenExchange {
			return nil, oauth.InvalidRequest("this client may not request ID tokens by token exchange")
		}
	default:
		return nil, oauth.InvalidRequest("requested_token_type %q is not supported", requested)
	}
	aud, err := audiences(req, cl)
	if err != nil {
		return nil, err
	}
	for _, sc := range req.Scope {
		if !cl.AllowsScope(sc) || sc == "offline_access" {
			return nil, oauth.InvalidScope("scope %q is not allowed for this client", sc)
		}
	}
	if len(req.SubjectToken) > maxSubjectTokenBytes {
		return nil, exchangeError("subject_token is too large")
	}
	// The token is parsed and its claims decoded once; the unverified
	// issuer only chooses who verifies it.
	subject, err := workload.ParseSubject(req.SubjectToken)
	switch {
	case errors.Is(err, workload.ErrClaims):
		return nil, exchangeError("subject_token claims are malformed")
	case err != nil:
		return nil, exchangeError("subject_token is not a signed JWT with an accepted algorithm")
	}
	now := g.now()
	var grant storage.Grant
	if subject.Issuer() == g.tokens.Issuer() {
		if grant, err = g.delegate(ctx, cl, req, req.Scope); err != nil {
			return nil, err
		}
	} else if grant, err = g.fromWorkload(ctx, rt, cl, subject, req.Scope); err != nil {
		return nil, err
	}
	grant.DPoPJKT = req.dpopJKT
	resp := &tokens.Response{TokenType: "Bearer", Scope: strings.Join(grant.Scopes, " "), IssuedTokenType: requested}
	if requested == oauth.TokenTypeIDToken {
		grant.Scopes = append(grant.Scopes, "openid")
		if resp.AccessToken, err = g.tokens.IDToken(cl, grant, "", now); err != nil {
			return nil, err
		}
		resp.TokenType = "N_A"
		resp.ExpiresIn = int64(cl.IDTokenTTL.Seconds())
	} else {
		at, exp, err := g.tokens.AccessToken(cl, grant, aud, now)
		if err != nil {
			return nil, err
		}
		resp.AccessToken, resp.ExpiresIn = at, int64(exp.Sub(now).Seconds())
		resp.TokenType = tokenType(grant)
	}
	g.audit.Event("token_exchange", "client_id", cl.ID, "sub", grant.Subject, "source", grant.ConnectorID, "audience", strings.Join(aud, " "), "requested", requested)
	return resp, nil
}

// workloadRefusal is what the client is told about an unacceptable
// workload token: a fixed description per reason, never the verifier's
// own error text (which may name internal hosts or keys).
func workloadRefusal(err error) string {
	switch {
	case errors.Is(err, workload.ErrAudience):
		return "the subject token's audience is not accepted"
	case errors.Is(err, workload.ErrLifetime):
		return "the subject token lives longer than allowed"
	case errors.Is(err, workload.ErrMissingJTI):
		return "the subject token has no jti"
	case errors.Is(err, workload.ErrMissingClaim):
		return "the subject token lacks the subject claim"
	default:
		return "the subject token is not validly signed by its issuer, or has expired"
	}
}

// fromWorkload verifies a token from a trusted workload issuer the client
// is allowed to exchange, and maps it.
func (g *Grants) fromWorkload(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, subject *workload.Subject, scopes []string) (storage.Grant, error) {
	iss := subject.Issuer()
	var w *runtime.Workload
	for _, id := range cl.Workloads {
		if cand, ok := rt.Workload(id); ok && cand.Issuer == iss {
			w = cand
			break
		}
	}
	if w == nil {
		g.audit.Event("token_exchange_rejected", "client_id", cl.ID, "reason", "issuer not trusted for this client")
		return storage.Grant{}, exchangeError("the subject token's issuer is not trusted for this client")
	}
	v, err := w.Open(ctx)
	if err != nil {
		g.log.Warn("workload issuer unavailable", "workload", w.ID, "err", err)
		return storage.Grant{}, unavailable()
	}
	id, err := v.VerifySubject(ctx, subject)
	if err != nil {
		g.audit.Event("token_exchange_rejected", "client_id", cl.ID, "workload", w.ID, "reason", err.Error())
		return storage.Grant{}, exchangeError("%s", workloadRefusal(err))
	}
	if v.OneTimeJTI() {
		jti, _ := id.Claims["jti"].(string)
		exp, _ := id.Claims["exp"].(float64)
		fresh, err := g.store.MarkSeen(ctx, "jti:"+w.ID, jti, time.Unix(int64(exp), 0).Add(time.Minute))
		if err != nil {
			return storage.Grant{}, err
		}
		if !fresh {
			g.audit.Event("token_exchange_rejected", "client_id", cl.ID, "workload", w.ID, "reason", "jti replayed")
			return storage.Grant{}, exchangeError("the subject token was already used")
		}
	}
	res, err := w.Mapping.Evaluate(ctx, mapping.Input{ConnectorID: w.ID, ConnectorType: "workload", UpstreamSubject: id.Subject, Claims: id.Claims})
	var rej *mapping.Rejection
	switch {
	case errors.As(err, &rej):
		g.audit.Event("token_exchange_rejected", "client_id", cl.ID, "workload", w.ID, "upstream_sub", id.Subject, "rule", rej.Rule, "message", rej.Message)
		return storage.Grant{}, exchangeError("refused by policy: %s", rej.Message)
	case err != nil:
		g.log.Warn("workload mapping failed", "workload", w.ID, "err", err)
		return storage.Grant{}, exchangeError("refused by policy")
	}
	return storage.Grant{ClientID: cl.ID, Subject: res.Subject, Scopes: scopes, ConnectorID: w.ID, UpstreamSubject: id.Subject,
		IDTokenClaims: res.IDToken, AccessTokenClaims: res.AccessToken}, nil
}

// delegate exchanges one of the broker's own access tokens for another
// audience; the new token names the requesting client as actor (`act`),
// nested under any earlier actors, up to maxActNesting deep. Scopes never
// widen. The subject token must have been issued to the client
// (client_id) or be addressed to it (aud names its id), unless the client
// has delegate_any_audience. The new token stays in the subject token's
// refresh family: revoking the family revokes it too.
func (g *Grants) delegate(ctx context.Context, cl *runtime.Client, req Request, scopes []string) (storage.Grant, error) {
	if typ := req.SubjectTokenType; typ != oauth.TokenTypeAccessToken && typ != oauth.TokenTypeJWT {
		return storage.Grant{}, exchangeError("our own tokens are exchanged as access tokens")
	}
	at, err := g.tokens.CheckAccessToken(ctx, req.SubjectToken)
	if err != nil {
		if !errors.Is(err, tokens.ErrInvalid) {
			return storage.Grant{}, err
		}
		return storage.Grant{}, exchangeError("the subject token is not a valid access token of this issuer")
	}
	if err := dpopSubject(at.Raw, req); err != nil {
		return storage.Grant{}, err
	}
	if !cl.DelegateAnyAudience && at.ClientID != cl.ID && !slices.Contains(at.Audience, cl.ID) {
		g.audit.Event("token_exchange_rejected", "client_id", cl.ID, "token_client_id", at.ClientID, "sub", at.Subject, "reason", "subject token neither issued to nor addressed to the client")
		return storage.Grant{}, exchangeError("the subject token was not issued to this client nor addressed to it")
	}
	if len(scopes) == 0 {
		scopes = slices.DeleteFunc(slices.Clone(at.Scopes), func(sc string) bool { return !cl.AllowsScope(sc) || sc == "offline_access" })
	}
	for _, sc := range scopes {
		if !slices.Contains(at.Scopes, sc) {
			return storage.Grant{}, oauth.InvalidScope("scope %q is not in the subject token", sc)
		}
	}
	act := map[string]any{"sub": cl.ID}
	depth := 1
	if prev, ok := at.Raw["act"].(map[string]any); ok {
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
	for k, v := range at.Raw {
		if !mapping.IsReservedClaim(k) {
			claims[k] = v
		}
	}
	claims["act"] = act
	// The subject token's session goes with it, so that ending that
	// session (single logout) revokes the delegated token too.
	sid, _ := at.Raw["sid"].(string)
	return storage.Grant{ClientID: cl.ID, Subject: at.Subject, Scopes: scopes, ConnectorID: "delegation", AccessTokenClaims: claims, FamilyRef: at.FamilyRef, SessionID: sid}, nil
}
