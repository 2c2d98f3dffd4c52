// Package grants answers the token endpoint: the request is parsed once
// into a Request, its client authenticated by the caller, then one grant
// runs — authorization code, refresh token, RFC 8693 token exchange or
// client credentials — and returns the token response. Nothing here
// touches HTTP.
package grants

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// Request is a token request's parameters (RFC 6749 §4.1.3, §6, §4.4; RFC
// 8693 §2.1; RFC 8707), each read once from the form.
type Request struct {
	GrantType string
	// authorization_code
	Code, RedirectURI, CodeVerifier string
	// refresh_token
	RefreshToken string
	// Scope is the requested scope, split and deduplicated; nil when the
	// parameter was absent or empty.
	Scope []string
	// Audience and Resource may repeat.
	Audience, Resource []string
	// token exchange
	SubjectToken, SubjectTokenType, ActorToken, RequestedTokenType string
	// DPoP are the values of the request's DPoP headers (RFC 9449 §4.1).
	DPoP []string
	// dpopJKT is the thumbprint of the key of the verified DPoP proof,
	// set by Token (see BoundKey).
	dpopJKT string
	// DeviceCode is the device_code of the device grant (RFC 8628 §3.4).
	DeviceCode string
}

// repeatable are the parameters that may appear more than once.
var repeatable = map[string]bool{"audience": true, "resource": true}

// ParseRequest reads a token request's form (already parsed from the body).
// A parameter sent twice is invalid_request, except audience and resource.
func ParseRequest(form url.Values) (Request, error) {
	for k, v := range form {
		if len(v) > 1 && !repeatable[k] {
			return Request{}, oauth.InvalidRequest("parameter %s is repeated", k)
		}
	}
	return Request{
		GrantType:          form.Get("grant_type"),
		Code:               form.Get("code"),
		RedirectURI:        form.Get("redirect_uri"),
		CodeVerifier:       form.Get("code_verifier"),
		RefreshToken:       form.Get("refresh_token"),
		Scope:              oauth.Dedupe(strings.Fields(form.Get("scope"))),
		Audience:           form["audience"],
		Resource:           form["resource"],
		SubjectToken:       form.Get("subject_token"),
		SubjectTokenType:   form.Get("subject_token_type"),
		ActorToken:         form.Get("actor_token"),
		RequestedTokenType: form.Get("requested_token_type"),
		DeviceCode:         form.Get("device_code"),
	}, nil
}

// Grants runs the grants of the token endpoint.
type Grants struct {
	tokens *tokens.Authority
	sealer *tokens.Sealer
	store  storage.Storage
	now    func() time.Time
	audit  observe.Audit
	log    *slog.Logger
	nonces *dpopNonces
}

// Deps are the grants' dependencies; all are required but Now and Logger.
type Deps struct {
	Tokens *tokens.Authority
	Sealer *tokens.Sealer
	Store  storage.Storage
	Now    func() time.Time
	Audit  observe.Audit
	Logger *slog.Logger
}

// New returns the grants.
func New(deps Deps) *Grants {
	g := &Grants{tokens: deps.Tokens, sealer: deps.Sealer, store: deps.Store, now: deps.Now, audit: deps.Audit, log: deps.Logger}
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.nonces = newDPoPNonces(deps.Sealer)
	return g
}

// Token runs the grant req asks for, for the authenticated client cl.
// Protocol failures are *oauth.Error; anything else is an internal or
// storage error for the caller's error writer.
func (g *Grants) Token(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request) (*tokens.Response, error) {
	var run func(context.Context, *runtime.Runtime, *runtime.Client, Request) (*tokens.Response, error)
	switch req.GrantType {
	case config.GrantAuthorizationCode:
		run = g.Code
	case config.GrantRefreshToken:
		run = g.Refresh
	case config.GrantTokenExchange:
		run = g.Exchange
	case config.GrantClientCredentials:
		run = g.ClientCredentials
	case config.GrantDeviceCode:
		run = g.DeviceCode
	case "":
		return nil, oauth.InvalidRequest("grant_type is required")
	default:
		return nil, oauth.NewError(400, oauth.ErrUnsupportedGrantType, "grant_type %q is not supported", req.GrantType)
	}
	if !cl.AllowsGrant(req.GrantType) {
		return nil, oauth.UnauthorizedClient("the client may not use grant_type %s", req.GrantType)
	}
	req, err := g.checkDPoP(ctx, rt, cl, req)
	if err != nil {
		return nil, err
	}
	return run(ctx, rt, cl, req)
}

// audiences resolves the audience and resource parameters (RFC 8693 §2.1,
// RFC 8707) against what cl may ask for; none asked means all the client's
// audiences.
func audiences(req Request, cl *runtime.Client) ([]string, error) {
	asked := append(append([]string(nil), req.Audience...), req.Resource...)
	if len(asked) == 0 {
		return cl.Audiences, nil
	}
	asked = oauth.Dedupe(asked)
	for _, a := range asked {
		if !slices.Contains(cl.Audiences, a) {
			return nil, oauth.NewError(400, oauth.ErrInvalidTarget, "audience %q is not allowed for this client", a)
		}
	}
	return asked, nil
}
